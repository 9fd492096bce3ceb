#include <seqgen/core/panel_matrix.hpp>

#include "test_util.hpp"

namespace test_panel_matrix {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

TEST_CASE("PanelMatrix: products equal W x + b for any shape and any panel range", "[panel_matrix]") {
  // rows that fill no panel, one panel exactly, and a partial last panel; odd and even columns
  for (Index rows : {5, 16, 37, 64}) {
    for (Index cols : {1, 7, 32}) {
      INFO("W is (" << rows << ", " << cols << ")");
      const Mat<double> W = random_mat(rows, cols, 1 + std::uint64_t(rows * cols));
      const Mat<double> x = random_mat(cols, 3, 2);
      const Mat<double> bias = random_mat(rows, 1, 3);
      const Mat<double> y0 = random_mat(rows, 3, 4);
      const PanelMatrix<double> P(W);
      REQUIRE(P.panels() == (rows + 15) / 16);

      Mat<double> y = y0;
      P.multiply(x, y, nullptr, false, 0, P.panels());
      CHECK((y - W * x).cwiseAbs().maxCoeff() < 1e-12);

      // accumulate with a bias, the panels split into two calls at every boundary
      for (Index split = 0; split <= P.panels(); ++split) {
        y = y0;
        P.multiply(x, y, bias.data(), true, 0, split);
        P.multiply(x, y, bias.data(), true, split, P.panels());
        const Mat<double> expected = y0 + W * x + bias.replicate(1, 3);
        CHECK((y - expected).cwiseAbs().maxCoeff() < 1e-12);
      }

      // a range leaves the other rows alone
      if (P.panels() > 1) {
        y = y0;
        P.multiply(x, y, nullptr, false, 1, P.panels());
        CHECK(y.topRows(16) == y0.topRows(16));
        CHECK((y.bottomRows(rows - 16) - (W * x).bottomRows(rows - 16)).cwiseAbs().maxCoeff() < 1e-12);
      }
    }
  }
}

TEST_CASE("PanelMatrix: shapes and ranges are checked", "[panel_matrix][errors]") {
  const PanelMatrix<float> P(Mat<float>::Ones(20, 8));
  Mat<float> y(20, 1);
  SEQGEN_THROWS_WITH(P.multiply(Mat<float>::Ones(7, 1), y, nullptr, false, 0, 2), ShapeError,
                     "PanelMatrix: a (20, 8) matrix cannot take x (7, 1) into y (20, 1)");
  SEQGEN_THROWS_WITH(P.multiply(Mat<float>::Ones(8, 1), y, nullptr, false, 1, 3), ShapeError,
                     "PanelMatrix: panels [1, 3) are outside [0, 2)");
}

}  // namespace test_panel_matrix
