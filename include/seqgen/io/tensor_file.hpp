// Raw tensors in files of other programs (llm.c's .bin, safetensors): an untrusted file read by
// ranges, little-endian float32/float16/bfloat16 converted to float on the way, and the writing
// side, streamed through an atomic temporary file.
//
//   TensorFileReader f(path, what)     opens a regular file and takes its size once
//   f.read(offset, n, dst)             bytes [offset, offset + n) into dst; FormatError naming the
//                                      file when the range is not inside it
//   f.read_values(offset, dtype, n, dst)    n values of dtype, converted, into dst (float or double)
//   f.read_rows_transposed(...)        a row-major (R, K) matrix into a column-major (R, K) Mat
//   TensorFileWriter w(path)           a temporary sibling, renamed over path by commit()
//   w.write_values(src, n, dtype)      n values written as dtype (little-endian)
//
// Conversions stream through a buffer of kChunk values, so reading a tensor never holds a second
// copy of it, whatever its size. float16 and bfloat16 widen to float exactly; writing float as
// bfloat16 rounds to nearest even (as PyTorch does), NaN kept a NaN.
// POSIX only for the writer (io/checkpoint.hpp's atomic save).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/tensor.hpp"
#include "seqgen/io/checkpoint.hpp"

namespace seqgen {

enum class TensorDtype { f32, f16, bf16 };

inline std::size_t dtype_bytes(TensorDtype d) { return d == TensorDtype::f32 ? 4 : 2; }
inline const char* dtype_name(TensorDtype d) {
  return d == TensorDtype::f32 ? "F32" : d == TensorDtype::f16 ? "F16" : "BF16";
}

namespace detail {

inline float f32_from_bits(std::uint32_t bits) {
  float x;
  std::memcpy(&x, &bits, 4);
  return x;
}
inline std::uint32_t bits_from_f32(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, 4);
  return bits;
}
inline std::uint16_t bf16_from_f32(float x) {
  const std::uint32_t bits = bits_from_f32(x);
  if ((bits & 0x7F800000u) == 0x7F800000u && (bits & 0x007FFFFFu) != 0)
    return std::uint16_t((bits >> 16) | 0x0040u);  // NaN stays a (quiet) NaN
  const std::uint32_t rounding = 0x7FFFu + ((bits >> 16) & 1u);  // to nearest, ties to even
  return std::uint16_t((bits + rounding) >> 16);
}
inline float value_from_bytes(const unsigned char* p, TensorDtype d) {
  switch (d) {
    case TensorDtype::f32:
      return f32_from_bits(std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
                           std::uint32_t(p[3]) << 24);
    case TensorDtype::bf16:
      return f32_from_bits((std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8) << 16);
    case TensorDtype::f16:
      return float(Eigen::numext::bit_cast<Eigen::half>(std::uint16_t(p[0] | p[1] << 8)));
  }
  return 0;
}
inline void value_to_bytes(float x, TensorDtype d, char* p) {
  switch (d) {
    case TensorDtype::f32:
      store_le(p, bits_from_f32(x), 4);
      return;
    case TensorDtype::bf16:
      store_le(p, bf16_from_f32(x), 2);
      return;
    case TensorDtype::f16:
      store_le(p, Eigen::numext::bit_cast<std::uint16_t>(Eigen::half(x)), 2);
      return;
  }
}

}  // namespace detail

class TensorFileReader {
 public:
  static constexpr std::size_t kChunk = 1 << 16;  // values converted per read

  // `what` names the file in messages ("llm.c checkpoint 'gpt2_124M.bin'").
  TensorFileReader(const std::string& path, std::string what) : name_(std::move(what)) {
    std::error_code ec;
    const auto type = std::filesystem::status(path, ec).type();
    check<IoError>(type != std::filesystem::file_type::not_found, name_, " does not exist");
    check<IoError>(type == std::filesystem::file_type::regular, name_, " is not a regular file");
    in_.open(path, std::ios::binary);
    check<IoError>(in_.is_open(), name_, ": cannot open it");
    in_.seekg(0, std::ios::end);
    const std::streamoff size = in_.tellg();
    check<IoError>(in_.good() && size >= 0, name_, ": cannot determine its size");
    size_ = std::uint64_t(size);
  }

  const std::string& name() const { return name_; }
  std::uint64_t size() const { return size_; }

  // Whether [offset, offset + n) lies inside the file, without overflow.
  bool contains(std::uint64_t offset, std::uint64_t n) const { return offset <= size_ && n <= size_ - offset; }

  void read(std::uint64_t offset, std::uint64_t n, char* dst) {
    check<FormatError>(contains(offset, n), name_, ": bytes [", offset, ", ", offset + n, ") lie beyond its ", size_,
                       " bytes");
    in_.clear();
    in_.seekg(std::streamoff(offset));
    in_.read(dst, std::streamsize(n));
    check<IoError>(std::uint64_t(in_.gcount()) == n, name_, ": read ", in_.gcount(), " of ", n, " bytes at offset ",
                   offset, " (the file changed while it was read?)");
  }

  // n values of dtype d at offset, converted into dst[0 .. n).
  template <typename Scalar>
  void read_values(std::uint64_t offset, TensorDtype d, std::uint64_t n, Scalar* dst) {
    const std::size_t w = dtype_bytes(d);
    check<FormatError>(n <= size_ / w && contains(offset, n * w), name_, ": ", n, " ", dtype_name(d),
                       " values at offset ", offset, " lie beyond its ", size_, " bytes");
    buf_.resize(std::min<std::uint64_t>(n, kChunk) * w);
    for (std::uint64_t done = 0; done < n;) {
      const std::uint64_t m = std::min<std::uint64_t>(n - done, kChunk);
      read(offset + done * w, m * w, buf_.data());
      const auto* p = reinterpret_cast<const unsigned char*>(buf_.data());
      for (std::uint64_t i = 0; i < m; ++i) dst[done + i] = Scalar(detail::value_from_bytes(p + i * w, d));
      done += m;
    }
  }

  // A row-major (R, K) matrix of dtype d at offset into dst, column-major (R, K): dst(r, k) = the
  // file's [r][k]. Read by blocks of rows, so no second copy of the matrix is held.
  template <typename Scalar>
  void read_rows_transposed(std::uint64_t offset, TensorDtype d, Index R, Index K, Mat<Scalar>& dst) {
    check<ShapeError>(dst.rows() == R && dst.cols() == K, name_, ": a (", R, ", ", K, ") matrix read into (",
                      dst.rows(), ", ", dst.cols(), ")");
    const std::size_t w = dtype_bytes(d);
    const Index rows_per_block = std::max<Index>(1, Index(kChunk) / std::max<Index>(K, 1));
    std::vector<Scalar> block;
    for (Index r0 = 0; r0 < R; r0 += rows_per_block) {
      const Index rows = std::min(rows_per_block, R - r0);
      block.resize(std::size_t(rows * K));
      read_values(offset + std::uint64_t(r0) * std::uint64_t(K) * w, d, std::uint64_t(rows * K), block.data());
      using RowMajor = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
      dst.middleRows(r0, rows) = Eigen::Map<const RowMajor>(block.data(), rows, K);
    }
  }

 private:
  std::string name_;
  std::ifstream in_;
  std::uint64_t size_ = 0;
  std::vector<char> buf_;
};

class TensorFileWriter {
 public:
  static constexpr std::size_t kChunk = 1 << 16;

  // Checks that `path` can be written (CheckpointWriter::check_destination) and opens its
  // temporary sibling; nothing appears at `path` before commit().
  explicit TensorFileWriter(const std::string& path)
      : path_((CheckpointWriter::check_destination(path), path)), file_(path, detail::temp_sibling(path)) {}

  void write(const char* data, std::size_t n) {
    file_.write(data, n);
    written_ += n;
  }
  template <typename Scalar>
  void write_values(const Scalar* src, std::uint64_t n, TensorDtype d) {
    const std::size_t w = dtype_bytes(d);
    buf_.resize(std::min<std::uint64_t>(n, kChunk) * w);
    for (std::uint64_t done = 0; done < n;) {
      const std::uint64_t m = std::min<std::uint64_t>(n - done, kChunk);
      for (std::uint64_t i = 0; i < m; ++i) detail::value_to_bytes(float(src[done + i]), d, buf_.data() + i * w);
      write(buf_.data(), m * w);
      done += m;
    }
  }
  // n zeros of dtype d.
  void write_zeros(std::uint64_t n, TensorDtype d) {
    const std::vector<char> zeros(std::min<std::uint64_t>(n, kChunk) * dtype_bytes(d), 0);
    for (std::uint64_t done = 0; done < n;) {
      const std::uint64_t m = std::min<std::uint64_t>(n - done, kChunk);
      write(zeros.data(), m * dtype_bytes(d));
      done += m;
    }
  }
  // A column-major (R, K) matrix written row-major: the file's [r][k] = src(r, k).
  template <typename Scalar>
  void write_rows_transposed(const Mat<Scalar>& src, TensorDtype d) {
    std::vector<Scalar> row(std::size_t(src.cols()));
    for (Index r = 0; r < src.rows(); ++r) {
      for (Index k = 0; k < src.cols(); ++k) row[std::size_t(k)] = src(r, k);
      write_values(row.data(), row.size(), d);
    }
  }

  std::uint64_t written() const { return written_; }

  // fsync, rename over the target, fsync the folder.
  void commit() {
    file_.commit();
    std::string dir = std::filesystem::path(path_).parent_path().string();
    detail::fsync_folder(dir.empty() ? "." : dir, path_);
  }

 private:
  std::string path_;
  detail::TempFile file_;
  std::vector<char> buf_;
  std::uint64_t written_ = 0;
};

}  // namespace seqgen
