// What every recurrent layer shares, tested once over RnnLayer, LstmLayer and GruLayer (all
// RecurrentLayer<Cell>, layers/recurrent_layer.hpp): step() equals forward(), chunks with the state
// carried equal one call, the thread shares, float against double, gradients added, buffers reused,
// the empty dsT, and the errors. Each cell's own file (test_rnn.cpp, test_lstm.cpp, test_gru.cpp)
// checks its equations against an independent reference and its gradients by finite differences.
#include <seqgen/core/parallel.hpp>
#include <seqgen/layers/gru.hpp>
#include <seqgen/layers/lstm.hpp>
#include <seqgen/layers/rnn.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "test_util.hpp"

namespace test_recurrent {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;

namespace {

// What the tests need to know of each cell besides the layer's interface: a batch big enough for
// the threads to share it (G·H·H·B multiply-adds per step ≥ 2^18), and the buffers a cache and a
// step workspace hold.
struct RnnKind {
  template <typename Scalar>
  using Layer = RnnLayer<Scalar>;
  static constexpr Index kThreadsH = 160, kThreadsB = 11;
  template <class Cache>
  static std::vector<const void*> saved_buffers(const Cache&) {
    return {};
  }
  template <class Workspace>
  static const void* step_buffer(const Workspace& ws) {
    return ws.a.data();
  }
};
struct LstmKind {
  template <typename Scalar>
  using Layer = LstmLayer<Scalar>;
  static constexpr Index kThreadsH = 96, kThreadsB = 8;
  template <class Cache>
  static std::vector<const void*> saved_buffers(const Cache& c) {
    return {c.saved.c_prev.data(), c.saved.tanh_c.data(), c.saved.dbias.data(), c.dstate.c.data()};
  }
  template <class Workspace>
  static const void* step_buffer(const Workspace& ws) {
    return ws.gates.data();
  }
};
struct GruKind {
  template <typename Scalar>
  using Layer = GruLayer<Scalar>;
  static constexpr Index kThreadsH = 96, kThreadsB = 11;
  template <class Cache>
  static std::vector<const void*> saved_buffers(const Cache& c) {
    return {c.saved.hn.data(), c.gh.data(), c.dgh.data()};
  }
  template <class Workspace>
  static const void* step_buffer(const Workspace& ws) {
    return ws.gates.data();
  }
};

template <class State>
constexpr bool kHasC = detail::HasCellState<State>::value;

template <typename Scalar>
double max_abs_diff(const Mat<Scalar>& a, const Mat<Scalar>& b) {
  return double((a - b).cwiseAbs().maxCoeff());
}

// The largest difference over every part of two states.
template <class State>
double state_diff(const State& a, const State& b) {
  double d = max_abs_diff(a.h, b.h);
  if constexpr (kHasC<State>) d = std::max(d, max_abs_diff(a.c, b.c));
  return d;
}

// A state of (H, B) random parts, fixed by the seed.
template <class Layer>
typename Layer::State random_state(const Layer& layer, Index B, std::uint64_t seed) {
  typename Layer::State s = layer.zero_state(B);
  s.h = random_mat<typename Layer::Scalar>(layer.hidden_size(), B, seed);
  if constexpr (kHasC<typename Layer::State>) s.c = random_mat<typename Layer::Scalar>(layer.hidden_size(), B, seed + 1);
  return s;
}

template <class Layer>
std::vector<Mat<typename Layer::Scalar>> grads(Layer& layer) {
  std::vector<Mat<typename Layer::Scalar>> out;
  layer.for_each_param([&](Param<typename Layer::Scalar>& p) { out.push_back(p.grad); });
  return out;
}

// Steps [t0, t0 + len) of every sequence of a (rows, B*T) matrix, as a (rows, B*len) matrix.
Mat<double> chunk(const Mat<double>& m, Index B, Index T, Index t0, Index len) {
  Mat<double> out(m.rows(), B * len);
  for (Index b = 0; b < B; ++b) out.middleCols(b * len, len) = m.middleCols(b * T + t0, len);
  return out;
}

// A layer's forward and backward at 1, 2 and 3 threads. The threads share the B sequences out
// (for_sequence_shares), so a bug in a share's columns shows as a difference from one thread, which
// runs the whole batch as one share. Checks h_all, the final state, dx, ds0 and every parameter
// gradient against the 1-thread run to `tol`.
template <class Layer>
void check_thread_shares(const Layer& fresh, Index B, Index T, double tol) {
  using Scalar = typename Layer::Scalar;
  using State = typename Layer::State;
  const Index D = fresh.input_size(), H = fresh.hidden_size();
  const Mat<Scalar> x = random_mat<Scalar>(D, B * T, 41), dh = random_mat<Scalar>(H, B * T, 42);
  const State s0 = random_state(fresh, B, 43), dsT = random_state(fresh, B, 45);
  struct Result {
    Mat<Scalar> h_all, dx;
    State sT, ds0;
    std::vector<Mat<Scalar>> grads;
  };
  auto run = [&](int threads) {
    set_num_threads(threads);
    Layer layer = fresh;
    Result r;
    typename Layer::Cache cache;
    layer.forward(x, B, T, s0, r.h_all, r.sT, cache);
    zero_grad(layer);
    layer.backward(x, B, T, s0, dh, dsT, cache, r.dx, r.ds0);
    r.grads = grads(layer);
    return r;
  };
  const int saved = num_threads();
  const Result one = run(1);
  for (int threads : {2, 3}) {
    const Result r = run(threads);
    INFO(threads << " threads");
    CHECK(max_abs_diff(r.h_all, one.h_all) <= tol);
    CHECK(state_diff(r.sT, one.sT) <= tol);
    CHECK(max_abs_diff(r.dx, one.dx) <= tol);
    CHECK(state_diff(r.ds0, one.ds0) <= tol);
    for (std::size_t i = 0; i < one.grads.size(); ++i)
      CHECK(max_abs_diff(r.grads[i], one.grads[i]) <= tol * double(B * T));
  }
  set_num_threads(saved);
}

}  // namespace

TEMPLATE_TEST_CASE("Recurrent layers: step() applied T times equals forward()", "[recurrent]", RnnKind, LstmKind,
                   GruKind) {
  using Layer = typename TestType::template Layer<double>;
  const Index D = 4, H = 3, B = 2, T = 5;
  Rng rng(21);
  const Layer layer("layer", D, H, rng);
  const Mat<double> x = random_mat(D, B * T, 22);
  const typename Layer::State s0 = random_state(layer, B, 23);
  Mat<double> h_all;
  typename Layer::State sT;
  typename Layer::Cache cache;
  layer.forward(x, B, T, s0, h_all, sT, cache);

  typename Layer::State s = s0;
  typename Layer::StepWorkspace ws;
  const void* buffer = nullptr;
  for (Index t = 0; t < T; ++t) {
    const Mat<double> x_t = time_slice(x, t, B, T);
    layer.step(x_t, s, ws);
    if (t == 0) buffer = TestType::step_buffer(ws);
    REQUIRE(TestType::step_buffer(ws) == buffer);  // reused, not reallocated
    REQUIRE(max_abs_diff(s.h, Mat<double>(time_slice(h_all, t, B, T))) < 1e-12);
  }
  REQUIRE(state_diff(s, sT) < 1e-12);
}

TEMPLATE_TEST_CASE("Recurrent layers: two chunks with the state carried equal one call, forward and backward",
                   "[recurrent]", RnnKind, LstmKind, GruKind) {
  using Layer = typename TestType::template Layer<double>;
  using State = typename Layer::State;
  const Index D = 3, H = 4, B = 2, T = 3;  // each chunk is T steps, the whole sequence 2T
  Rng rng(25);
  Layer full("layer", D, H, rng);
  Layer chunked = full;
  const Mat<double> x = random_mat(D, B * 2 * T, 26), dh = random_mat(H, B * 2 * T, 27);
  const State s0 = random_state(full, B, 28), dsT = random_state(full, B, 30);

  Mat<double> h_full, dx_full;
  State sT_full, ds0_full;
  typename Layer::Cache cache_full;
  full.forward(x, B, 2 * T, s0, h_full, sT_full, cache_full);
  zero_grad(full);
  full.backward(x, B, 2 * T, s0, dh, dsT, cache_full, dx_full, ds0_full);

  const Mat<double> x1 = chunk(x, B, 2 * T, 0, T), x2 = chunk(x, B, 2 * T, T, T);
  Mat<double> h1, h2, dx1, dx2;
  State s = s0, s1;
  typename Layer::Cache cache1, cache2;
  chunked.forward(x1, B, T, s, h1, s, cache1);  // sT aliases s0
  s1 = s;
  chunked.forward(x2, B, T, s1, h2, s, cache2);
  REQUIRE(max_abs_diff(h1, chunk(h_full, B, 2 * T, 0, T)) < 1e-14);
  REQUIRE(max_abs_diff(h2, chunk(h_full, B, 2 * T, T, T)) < 1e-14);
  REQUIRE(state_diff(s, sT_full) < 1e-14);

  zero_grad(chunked);
  State ds = dsT;
  chunked.backward(x2, B, T, s1, chunk(dh, B, 2 * T, T, T), ds, cache2, dx2, ds);  // ds0 aliases dsT
  chunked.backward(x1, B, T, s0, chunk(dh, B, 2 * T, 0, T), ds, cache1, dx1, ds);
  REQUIRE(max_abs_diff(dx1, chunk(dx_full, B, 2 * T, 0, T)) < 1e-12);
  REQUIRE(max_abs_diff(dx2, chunk(dx_full, B, 2 * T, T, T)) < 1e-12);
  REQUIRE(state_diff(ds, ds0_full) < 1e-12);
  const auto g_chunked = grads(chunked), g_full = grads(full);
  REQUIRE(g_chunked.size() == g_full.size());
  for (std::size_t i = 0; i < g_full.size(); ++i) REQUIRE(max_abs_diff(g_chunked[i], g_full[i]) < 1e-12);
}

TEMPLATE_TEST_CASE("Recurrent layers: the sequences shared out among 1, 2 and 3 threads give the same results",
                   "[recurrent][threads]", RnnKind, LstmKind, GruKind) {
  const Index D = 8, H = TestType::kThreadsH, B = TestType::kThreadsB, T = 5;
  Rng rng_d(71), rng_f(71);
  check_thread_shares(typename TestType::template Layer<double>("layer", D, H, rng_d), B, T, 1e-13);
  check_thread_shares(typename TestType::template Layer<float>("layer", D, H, rng_f), B, T, 1e-5);
}

TEMPLATE_TEST_CASE("Recurrent layers: float and double agree", "[recurrent]", RnnKind, LstmKind, GruKind) {
  using LayerD = typename TestType::template Layer<double>;
  using LayerF = typename TestType::template Layer<float>;
  const Index D = 6, H = 16, B = 3, T = 10;
  Rng rng_d(32), rng_f(32);
  LayerD layer_d("layer", D, H, rng_d);
  LayerF layer_f("layer", D, H, rng_f);  // the same draws, rounded to float
  const Mat<double> x = random_mat(D, B * T, 33), dh = random_mat(H, B * T, 34);
  Mat<double> h_d, dx_d;
  Mat<float> h_f, dx_f;
  typename LayerD::State s_d = layer_d.zero_state(B), sT_d, ds0_d;
  typename LayerF::State s_f = layer_f.zero_state(B), sT_f, ds0_f;
  typename LayerD::Cache cache_d;
  typename LayerF::Cache cache_f;
  layer_d.forward(x, B, T, s_d, h_d, sT_d, cache_d);
  layer_f.forward(x.cast<float>(), B, T, s_f, h_f, sT_f, cache_f);
  REQUIRE(max_abs_diff(Mat<double>(h_f.cast<double>()), h_d) < 1e-5);
  if constexpr (kHasC<typename LayerD::State>) REQUIRE(max_abs_diff(Mat<double>(sT_f.c.template cast<double>()), sT_d.c) < 1e-5);

  zero_grad(layer_d);
  zero_grad(layer_f);
  layer_d.backward(x, B, T, s_d, dh, typename LayerD::State{}, cache_d, dx_d, ds0_d);
  layer_f.backward(x.cast<float>(), B, T, s_f, dh.cast<float>(), typename LayerF::State{}, cache_f, dx_f, ds0_f);
  REQUIRE(max_abs_diff(Mat<double>(dx_f.cast<double>()), dx_d) < 1e-4);
  const auto g_d = grads(layer_d);
  const auto g_f = grads(layer_f);
  for (std::size_t i = 0; i < g_d.size(); ++i) REQUIRE(max_abs_diff(Mat<double>(g_f[i].template cast<double>()), g_d[i]) < 1e-4);
}

TEMPLATE_TEST_CASE("Recurrent layers: an empty dsT stands for a zero gradient into the final state",
                   "[recurrent][gradcheck]", RnnKind, LstmKind, GruKind) {
  using Layer = typename TestType::template Layer<double>;
  const Index D = 2, H = 3, B = 2, T = 3;
  Rng rng(12);
  Layer layer("layer", D, H, rng);
  Mat<double> x = random_mat(D, B * T, 7), R = random_mat(H, B * T, 8), h_all, dx;
  typename Layer::State s0 = random_state(layer, B, 9), sT, ds0;
  typename Layer::Cache cache;
  layer.forward(x, B, T, s0, h_all, sT, cache);
  zero_grad(layer);
  layer.backward(x, B, T, s0, R, typename Layer::State{}, cache, dx, ds0);

  GradCheck check;
  check.add("x", x, dx);
  check.add("s0.h", s0.h, ds0.h);
  if constexpr (kHasC<typename Layer::State>) check.add("s0.c", s0.c, ds0.c);
  check.add_params(layer);
  seqgen_test::require_grad_ok(check.run([&] {
    layer.forward(x, B, T, s0, h_all, sT, cache);
    return (h_all.array() * R.array()).sum();
  }));
}

TEMPLATE_TEST_CASE("Recurrent layers: backward adds into gradients and a reused cache keeps its buffers",
                   "[recurrent]", RnnKind, LstmKind, GruKind) {
  using Layer = typename TestType::template Layer<double>;
  const Index D = 3, H = 4, B = 2, T = 3;
  Rng rng(36);
  Layer layer("layer", D, H, rng);
  const Mat<double> x = random_mat(D, B * T, 37), dh = random_mat(H, B * T, 38);
  const typename Layer::State s0 = layer.zero_state(B);
  Mat<double> h_all, dx;
  typename Layer::State sT, ds0;
  typename Layer::Cache cache;
  auto buffers = [&] {
    std::vector<const void*> b = {cache.gates.data(), cache.h_prev.data(), cache.dgates.data(),
                                  cache.dstate.h.data(), h_all.data(), dx.data()};
    for (const void* p : TestType::saved_buffers(cache)) b.push_back(p);
    return b;
  };
  zero_grad(layer);
  layer.forward(x, B, T, s0, h_all, sT, cache);
  layer.backward(x, B, T, s0, dh, typename Layer::State{}, cache, dx, ds0);
  const auto once = grads(layer);
  const std::vector<const void*> before = buffers();
  layer.forward(x, B, T, s0, h_all, sT, cache);
  layer.backward(x, B, T, s0, dh, typename Layer::State{}, cache, dx, ds0);
  const auto twice = grads(layer);
  for (std::size_t i = 0; i < once.size(); ++i) {
    REQUIRE(once[i].norm() > 0);
    REQUIRE(max_abs_diff(twice[i], Mat<double>(2 * once[i])) < 1e-14);
  }
  REQUIRE(buffers() == before);
}

TEMPLATE_TEST_CASE("Recurrent layers: wrong shapes and sizes are clear errors", "[recurrent][errors]", RnnKind,
                   LstmKind, GruKind) {
  using Layer = typename TestType::template Layer<float>;
  using State = typename Layer::State;
  const std::string kind = Layer::Cell::kName;
  Rng rng(39);
  Layer layer("enc", 4, 3, rng);
  const Index B = 2, T = 5;
  Mat<float> x = Mat<float>::Zero(4, B * T), h_all, dx, dh(3, B * T);
  State s0 = layer.zero_state(B), sT, ds0;
  typename Layer::Cache cache;
  typename Layer::StepWorkspace ws;

  SEQGEN_THROWS_WITH(Layer("enc", 4, -1, rng), ConfigError,
                     kind + " 'enc': sizes must be positive, got input_size=4 hidden_size=-1");
  SEQGEN_THROWS_WITH(Layer("enc", 0, 3, rng), ConfigError,
                     kind + " 'enc': sizes must be positive, got input_size=0 hidden_size=3");
  SEQGEN_THROWS_WITH(Layer("enc", 0, 0, rng), ConfigError,
                     kind + " 'enc': sizes must be positive, got input_size=0 hidden_size=0");
  SEQGEN_THROWS_WITH(layer.forward(Mat<float>(5, B * T), B, T, s0, h_all, sT, cache), ShapeError,
                     kind + " 'enc': input has 5 rows, expected 4 (input_size)");
  SEQGEN_THROWS_WITH(layer.forward(x, 3, T, s0, h_all, sT, cache), ShapeError,
                     kind + " 'enc': input has 10 columns, expected B*T = 15 (B=3, T=5)");
  SEQGEN_THROWS_WITH(layer.forward(x, B, 4, s0, h_all, sT, cache), ShapeError,
                     kind + " 'enc': input has 10 columns, expected B*T = 8 (B=2, T=4)");
  SEQGEN_THROWS_WITH(layer.forward(x, -2, -5, s0, h_all, sT, cache), ShapeError,
                     kind + " 'enc': B and T must be positive, got B=-2, T=-5");
  SEQGEN_THROWS_WITH(layer.forward(x, B, 0, s0, h_all, sT, cache), ShapeError,
                     kind + " 'enc': B and T must be positive, got B=2, T=0");
  SEQGEN_THROWS_WITH(layer.forward(x, B, T, layer.zero_state(3), h_all, sT, cache), ShapeError,
                     kind + " 'enc': s0.h is (3, 3), expected (3, 2) = (hidden_size, B)");
  SEQGEN_THROWS_WITH(layer.forward(x, B, T, State{}, h_all, sT, cache), ShapeError,
                     kind + " 'enc': s0.h is (0, 0), expected (3, 2) = (hidden_size, B)");
  SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, dh, State{}, cache, dx, ds0), ShapeError,
                     kind + " 'enc': backward called with B=2, T=5 but the cache holds a forward with B=0, T=0");
  layer.forward(x, B, T, s0, h_all, sT, cache);
  SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, Mat<float>(4, 10), State{}, cache, dx, ds0), ShapeError,
                     kind + " 'enc': dh_all is (4, 10), expected (3, 10)");
  SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, Mat<float>(3, 9), State{}, cache, dx, ds0), ShapeError,
                     kind + " 'enc': dh_all is (3, 9), expected (3, 10)");
  State bad_dsT;
  bad_dsT.h = Mat<float>(3, 3);
  SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, dh, bad_dsT, cache, dx, ds0), ShapeError,
                     kind + " 'enc': dsT.h is (3, 3), expected (3, 2) = (hidden_size, B) or empty");
  SEQGEN_THROWS_WITH(layer.backward(Mat<float>(4, 10), 5, 2, layer.zero_state(5), dh, State{}, cache, dx, ds0),
                     ShapeError, kind + " 'enc': backward called with B=5, T=2 but the cache holds a forward with B=2, T=5");
  SEQGEN_THROWS_WITH(layer.backward(Mat<float>(4, 10), 10, 1, layer.zero_state(10), Mat<float>(3, 10), State{}, cache,
                                    dx, ds0),
                     ShapeError, kind + " 'enc': backward called with B=10, T=1 but the cache holds a forward with B=2, T=5");
  if constexpr (kHasC<State>) {
    SEQGEN_THROWS_WITH(layer.forward(x, B, T, State{s0.h, Mat<float>()}, h_all, sT, cache), ShapeError,
                       kind + " 'enc': s0.c is (0, 0), expected (3, 2)");
    SEQGEN_THROWS_WITH(layer.backward(x, B, T, s0, dh, State{Mat<float>(), Mat<float>(2, 2)}, cache, dx, ds0),
                       ShapeError, kind + " 'enc': dsT.c is (2, 2), expected (3, 2) = (hidden_size, B) or empty");
  }
  SEQGEN_THROWS_WITH(layer.step(Mat<float>(2, B), s0, ws), ShapeError,
                     kind + " 'enc': input has 2 rows, expected 4 (input_size)");
  SEQGEN_THROWS_WITH(layer.step(Mat<float>(4, 3), s0, ws), ShapeError,
                     kind + " 'enc': state h is (3, 2), expected (3, 3) = (hidden_size, B)");
  if constexpr (kHasC<State>) {
    State bad{s0.h, Mat<float>(3, 1)};
    SEQGEN_THROWS_WITH(layer.step(Mat<float>(4, B), bad, ws), ShapeError,
                       kind + " 'enc': state c is (3, 1), expected (3, 2) = (hidden_size, B)");
  }
  // Nothing above touched the gradients.
  double grad_norm = 0;
  layer.for_each_param([&](Param<float>& p) { grad_norm += double(p.grad.norm()); });
  REQUIRE(grad_norm == 0.0);
}

TEMPLATE_TEST_CASE("Recurrent layers: huge sizes are errors before anything is multiplied", "[recurrent][errors]",
                   RnnKind, LstmKind, GruKind) {
  // check() builds its message from values computed even when it passes: B*T = 2^80 would overflow
  // (undefined behaviour) before the shape check could fail.
  using Layer = typename TestType::template Layer<float>;
  const std::string kind = Layer::Cell::kName;
  Rng rng(40);
  Layer layer("enc", 4, 3, rng);
  const Index huge = Index(1) << 40;
  Mat<float> x = Mat<float>::Zero(4, 10), h_all, dx, dh(3, 10);
  typename Layer::State s0 = layer.zero_state(2), sT, ds0;
  typename Layer::Cache cache;
  SEQGEN_THROWS_WITH(layer.forward(x, huge, huge, s0, h_all, sT, cache), ShapeError,
                     kind + " 'enc': B=1099511627776 and T=1099511627776 are too large, B*T overflows");
  layer.forward(x, 2, 5, s0, h_all, sT, cache);
  SEQGEN_THROWS_WITH(layer.backward(x, huge, huge, s0, dh, typename Layer::State{}, cache, dx, ds0), ShapeError,
                     kind + " 'enc': B=1099511627776 and T=1099511627776 are too large, B*T overflows");
  // G·H rows of W_ih: 2^62 hidden units overflow for the LSTM's 4 gates and the GRU's 3 (the RNN's one
  // gate fits, and then the allocation fails, which this test does not ask of the machine).
  if constexpr (Layer::G > 1) {
    SEQGEN_THROWS_WITH(Layer("enc", 4, Index(1) << 62, rng), ConfigError,
                       kind + " 'enc': hidden_size=4611686018427387904 is too large for " + std::to_string(Layer::G) +
                           " gates");
  }
}

}  // namespace test_recurrent
