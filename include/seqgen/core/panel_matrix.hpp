// A copy of a weight matrix laid out for products with a few vectors, y = W x + b, where reading W
// is the whole cost: decoding one token at a time reads every weight once per token.
//
// W (rows, cols) is cut into panels of 16 rows, and each panel is stored column after column:
//   data[(p·cols + j)·16 + i] = W(16p + i, j)        i < 16; the last panel is padded with zeros
// A product then reads memory front to back in one stream, 16 rows of a column per load, which the
// hardware prefetcher follows at full speed. Eigen's column-major matrix-vector product reads
// W's columns as `rows`-strided pieces instead, and the same product runs about 1.5× slower on
// AVX-512 when W lives in L3.
//
// Kernel: two panels at a time, each with two partial sums (even and odd columns), keep four
// independent multiply-add chains in flight. The sums are added in a different order from Eigen's,
// so results agree with W * x to rounding, not bit for bit.
#pragma once

#include <Eigen/Core>
#include <algorithm>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/tensor.hpp"

namespace seqgen {

template <typename Scalar>
class PanelMatrix {
 public:
  static constexpr Index kPanel = 16;

  PanelMatrix() = default;
  explicit PanelMatrix(const ConstMatRef<Scalar>& W) { assign(W); }

  void assign(const ConstMatRef<Scalar>& W) {
    rows_ = W.rows();
    cols_ = W.cols();
    data_.assign(panels() * cols_ * kPanel, Scalar(0));
    for (Index p = 0; p < panels(); ++p) {
      const Index height = std::min(kPanel, rows_ - p * kPanel);
      for (Index j = 0; j < cols_; ++j)
        for (Index i = 0; i < height; ++i) data_[(p * cols_ + j) * kPanel + i] = W(p * kPanel + i, j);
    }
  }

  Index rows() const { return rows_; }
  Index cols() const { return cols_; }
  Index panels() const { return (rows_ + kPanel - 1) / kPanel; }

  // For the rows of panels [p0, p1):  y = W x + bias, or y += W x + bias when accumulating.
  // x: (cols, N)   y: (rows, N)   bias: (rows), or null for none.
  // Each call writes only its panels' rows of y, so threads may share y with disjoint panel ranges.
  void multiply(const ConstMatRef<Scalar>& x, MatRef<Scalar> y, const Scalar* bias, bool accumulate, Index p0,
                Index p1) const {
    check<ShapeError>(x.rows() == cols_ && y.rows() == rows_ && y.cols() == x.cols(), "PanelMatrix: a (", rows_, ", ",
                      cols_, ") matrix cannot take x (", x.rows(), ", ", x.cols(), ") into y (", y.rows(), ", ",
                      y.cols(), ")");
    check<ShapeError>(0 <= p0 && p0 <= p1 && p1 <= panels(), "PanelMatrix: panels [", p0, ", ", p1,
                      ") are outside [0, ", panels(), ")");
    Panel sum[2];
    for (Index n = 0; n < x.cols(); ++n) {
      for (Index p = p0; p < p1; p += 2) {
        const int count = p + 1 < p1 ? 2 : 1;
        if (count == 2) {
          sum_panels<2>(p, x.col(n).data(), sum);
        } else {
          sum_panels<1>(p, x.col(n).data(), sum);
        }
        for (int c = 0; c < count; ++c) {
          const Index r0 = (p + c) * kPanel, height = std::min(kPanel, rows_ - r0);
          auto out = y.col(n).segment(r0, height);
          if (accumulate) {
            out += sum[c].head(height).matrix();
          } else {
            out = sum[c].head(height).matrix();
          }
          if (bias) out += Eigen::Map<const Vec<Scalar>>(bias + r0, height);
        }
      }
    }
  }

 private:
  using Panel = Eigen::Array<Scalar, kPanel, 1>;

  Index rows_ = 0, cols_ = 0;
  std::vector<Scalar, Eigen::aligned_allocator<Scalar>> data_;

  // sum[c] = rows of panel p + c times x, for c < Count.
  template <int Count>
  void sum_panels(Index p, const Scalar* x, Panel* sum) const {
    Panel even[Count], odd[Count];
    const Scalar* w[Count];
    for (int c = 0; c < Count; ++c) {
      even[c].setZero();
      odd[c].setZero();
      w[c] = data_.data() + (p + c) * cols_ * kPanel;
    }
    Index j = 0;
    for (; j + 1 < cols_; j += 2) {
      for (int c = 0; c < Count; ++c) {
        even[c] += Eigen::Map<const Panel>(w[c] + j * kPanel) * x[j];
        odd[c] += Eigen::Map<const Panel>(w[c] + (j + 1) * kPanel) * x[j + 1];
      }
    }
    if (j < cols_)
      for (int c = 0; c < Count; ++c) even[c] += Eigen::Map<const Panel>(w[c] + j * kPanel) * x[j];
    for (int c = 0; c < Count; ++c) sum[c] = even[c] + odd[c];
  }
};

}  // namespace seqgen
