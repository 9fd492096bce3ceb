// Decoding: prefill plus steps against the full forward, the sliding window, stable buffers, errors.
#include <seqgen/generate/decoder.hpp>

#include "test_util.hpp"

namespace test_decoder {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;

namespace {

std::vector<Token> random_ids(Index n, Index V, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<Token> ids(n);
  for (auto& id : ids) id = Token(rng.uniform_int(std::uint64_t(V)));
  return ids;
}

// The library's initialisations give nearly uniform logits and attention; weights this large make a
// decoding mistake (a wrong position, a missing key, a stale state) change the logits visibly.
template <typename Model>
void randomize(Model& model, std::uint64_t seed) {
  Rng rng(seed);
  model.for_each_param([&](auto& p) { uniform_init(p.value, rng, 0.5); });
}

template <typename Scalar>
Gpt<Scalar> make_gpt(Index context, bool tie, std::uint64_t seed, Index channels = 12, Index heads = 3) {
  GptConfig cfg;
  cfg.vocab_size = 11;
  cfg.context = context;
  cfg.channels = channels;
  cfg.layers = 2;
  cfg.heads = heads;
  cfg.tie_weights = tie;
  Rng rng(seed);
  Gpt<Scalar> model(cfg, rng);
  randomize(model, seed + 1);
  return model;
}

template <typename Scalar, template <typename> class Layer>
RecurrentLm<Scalar, Layer> make_recurrent(std::uint64_t seed) {
  RecurrentConfig cfg;
  cfg.cell = CellOf<Layer>::value;
  cfg.vocab_size = 9;
  cfg.embedding = 5;
  cfg.hidden = 7;
  cfg.layers = 2;
  Rng rng(seed);
  RecurrentLm<Scalar, Layer> model(cfg, rng);
  randomize(model, seed + 1);
  return model;
}

// Logits (V, T) of the full forward over one sequence: column t predicts the token after tokens[t].
template <typename Scalar>
Mat<Scalar> full_forward(Gpt<Scalar>& model, const std::vector<Token>& tokens) {
  typename Gpt<Scalar>::Activations act;
  NoState none;
  Mat<Scalar> out;
  model.logits(tokens, 1, Index(tokens.size()), none, act, out);
  return out;
}
template <typename Scalar, template <typename> class Layer>
Mat<Scalar> full_forward(RecurrentLm<Scalar, Layer>& model, const std::vector<Token>& tokens) {
  auto state = model.zero_state(1);
  typename RecurrentLm<Scalar, Layer>::Activations act;
  Mat<Scalar> out;
  model.logits(tokens, 1, Index(tokens.size()), state, act, out);
  return out;
}

// |a − expected| ≤ tol · max(1, max |expected|), elementwise.
template <typename A, typename E>
void require_close(const A& a, const E& expected, double tol) {
  REQUIRE(a.rows() == expected.rows());
  REQUIRE(a.cols() == expected.cols());
  const double scale = std::max(1.0, double(expected.cwiseAbs().maxCoeff()));
  const double err = double((a - expected).cwiseAbs().maxCoeff());
  INFO("max error " << err << ", scale " << scale);
  REQUIRE(err <= tol * scale);
}

// Decodes B sequences with the model's decoder: prefill `prompts`, then step through `continuations`
// (all of the same length). Every logits column must equal the full forward of that sequence's
// tokens so far. Written once for both families.
template <typename Model, typename... Options>
void check_equivalence(Model& model, const std::vector<std::vector<Token>>& prompts,
                       const std::vector<std::vector<Token>>& continuations, double tol, Options... options) {
  const Index B = Index(prompts.size());
  auto decoder = make_decoder(static_cast<const Model&>(model), B, options...);
  std::vector<decltype(full_forward(model, prompts[0]))> expected;
  for (Index b = 0; b < B; ++b) {
    std::vector<Token> all = prompts[b];
    all.insert(all.end(), continuations[b].begin(), continuations[b].end());
    expected.push_back(full_forward(model, all));
  }
  const auto& first = decoder.prefill(prompts);
  for (Index b = 0; b < B; ++b) {
    INFO("prefill, sequence " << b);
    require_close(first.col(b), expected[b].col(Index(prompts[b].size()) - 1), tol);
    REQUIRE(decoder.position(b) == Index(prompts[b].size()));
  }
  const Index steps = Index(continuations[0].size());
  std::vector<Token> next(B);
  for (Index k = 0; k < steps; ++k) {
    for (Index b = 0; b < B; ++b) next[b] = continuations[b][k];
    const auto& logits = decoder.step(next);
    for (Index b = 0; b < B; ++b) {
      INFO("step " << k << ", sequence " << b);
      require_close(logits.col(b), expected[b].col(Index(prompts[b].size()) + k), tol);
      REQUIRE(decoder.position(b) == Index(prompts[b].size()) + k + 1);
    }
  }
}

// Greedy decoding through any decoder: the same code for GPT and the recurrent models.
template <class Decoder>
std::vector<Token> greedy(Decoder& decoder, const std::vector<Token>& prompt, Index n) {
  std::vector<Token> out;
  const auto* logits = &decoder.prefill({prompt});
  for (Index i = 0; i < n; ++i) {
    Index best;
    logits->col(0).maxCoeff(&best);
    out.push_back(Token(best));
    logits = &decoder.step(TokenSpan(&out.back(), 1));
  }
  return out;
}

}  // namespace

TEST_CASE("GptDecoder: prefill and steps equal the full forward at every position", "[decoder][gpt]") {
  for (bool tie : {true, false}) {
    INFO("tie_weights " << tie);
    auto model = make_gpt<double>(16, tie, 1);
    // two sequences with different prompt lengths, decoded together
    check_equivalence(model, {random_ids(5, 11, 2), random_ids(1, 11, 3)}, {random_ids(7, 11, 4), random_ids(7, 11, 5)},
                      1e-10);
    // a prompt of one token, stepped up to the last position of the context
    check_equivalence(model, {random_ids(1, 11, 6)}, {random_ids(15, 11, 7)}, 1e-10);
    // a prompt that fills the context: prefill only
    check_equivalence(model, {random_ids(16, 11, 8)}, {std::vector<Token>{}}, 1e-10);
    // prefill in chunks of 3 tokens (the workspaces are then 3 columns wide)
    GptDecoderOptions chunked;
    chunked.prefill_chunk = 3;
    check_equivalence(model, {random_ids(8, 11, 9), random_ids(4, 11, 10)}, {random_ids(3, 11, 11), random_ids(3, 11, 12)},
                      1e-10, chunked);
  }
  // six sequences: a step of more than one column runs the packed GEMM kernel, not the matrix-vector one
  {
    auto model = make_gpt<double>(16, false, 21);
    std::vector<std::vector<Token>> prompts, continuations;
    for (std::uint64_t b = 0; b < 6; ++b) {
      prompts.push_back(random_ids(1 + Index(b), 11, 30 + b));
      continuations.push_back(random_ids(4, 11, 40 + b));
    }
    check_equivalence(model, prompts, continuations, 1e-10);
  }
  // big enough for the attention loop of the prefill to run on OpenMP threads
  auto wide = make_gpt<double>(64, true, 18, 32, 4);
  check_equivalence(wide, {random_ids(48, 11, 19)}, {random_ids(8, 11, 20)}, 1e-10);
  auto model = make_gpt<float>(16, true, 13);
  check_equivalence(model, {random_ids(5, 11, 14), random_ids(1, 11, 15)}, {random_ids(9, 11, 16), random_ids(9, 11, 17)},
                    1e-5);
}

TEST_CASE("GptDecoder: teams of 1 to 3 threads and both float kernels give the full forward", "[decoder][gpt]") {
  // C = 32: 6 row panels in qkv, 8 in the MLP's first product, split across the team
  auto model = make_gpt<float>(24, false, 60, 32, 4);
  const int threads = num_threads();
  const bool avx2 = detail::avx2_kernel();
  for (int nt : {1, 2, 3}) {
    for (bool use_avx2 : {true, false}) {
      set_num_threads(nt);  // the decoder's team is sized when it is made
      detail::set_avx2_kernel(use_avx2);
      INFO(nt << " threads, AVX2 kernel: " << detail::avx2_kernel());
      check_equivalence(model, {random_ids(9, 11, 61), random_ids(2, 11, 62)},
                        {random_ids(6, 11, 63), random_ids(6, 11, 64)}, 1e-4);
    }
  }
  detail::set_avx2_kernel(avx2);
  set_num_threads(threads);
}

TEST_CASE("GptDecoder: the cache holds the keys and values of the full forward", "[decoder][gpt]") {
  auto model = make_gpt<double>(8, true, 20);
  const Index C = 12, ctx = 8;
  const auto a = random_ids(6, 11, 21), b = random_ids(3, 11, 22);
  GptDecoder<double> decoder(model, 2);
  decoder.prefill({a, b});
  for (Index l = 0; l < 2; ++l) {
    for (Index s = 0; s < 2; ++s) {
      const auto& tokens = s == 0 ? a : b;
      typename Gpt<double>::Activations act;
      NoState none;
      Mat<double> unused;
      model.logits(tokens, 1, Index(tokens.size()), none, act, unused);
      const Mat<double>& qkv = act.blocks[l].attn.qkv;  // (3C, T): rows [C, 3C) are K and V
      require_close(decoder.kv_cache(l).middleCols(s * ctx, Index(tokens.size())), qkv.bottomRows(2 * C), 1e-12);
    }
  }
}

TEST_CASE("GptDecoder: steps from an empty context, and reset", "[decoder][gpt]") {
  auto model = make_gpt<double>(8, true, 30);
  const auto tokens = random_ids(6, 11, 31);
  const Mat<double> expected = full_forward(model, tokens);
  GptDecoder<double> decoder(model, 1);
  for (int round = 0; round < 2; ++round) {  // the second round after reset() must not see the first
    REQUIRE(decoder.position(0) == 0);
    for (Index t = 0; t < 6; ++t) require_close(decoder.step(TokenSpan(&tokens[t], 1)), expected.col(t), 1e-10);
    REQUIRE(decoder.position(0) == 6);
    decoder.reset();
    REQUIRE(decoder.logits().isZero(0));
  }
  // a prefill after steps starts the sequence afresh
  require_close(decoder.prefill({{tokens[0], tokens[1]}}), expected.col(1), 1e-10);
}

TEST_CASE("GptDecoder: past the context, the window slides to the last context/2 tokens", "[decoder][gpt]") {
  for (Index ctx : {8, 7, 1}) {
    INFO("context " << ctx);
    auto model = make_gpt<double>(ctx, false, 40);
    const std::vector<std::vector<Token>> prompts = {random_ids(std::min<Index>(6, ctx), 11, 41), random_ids(1, 11, 42)};
    const std::vector<std::vector<Token>> steps = {random_ids(20, 11, 43), random_ids(20, 11, 44)};
    GptDecoder<double> decoder(model, 2);
    REQUIRE(decoder.policy() == ContextPolicy::slide);
    // The policy, simulated on token lists: a full window keeps its last ctx/2 tokens.
    std::vector<std::vector<Token>> window = prompts;
    auto feed = [&](Index b, Token id) {
      if (Index(window[b].size()) == ctx) window[b].erase(window[b].begin(), window[b].end() - ctx / 2);
      window[b].push_back(id);
    };
    const Mat<double>& first = decoder.prefill(prompts);
    for (Index b = 0; b < 2; ++b) require_close(first.col(b), full_forward(model, window[b]).rightCols(1), 1e-10);
    Index slides = 0;
    for (Index k = 0; k < 20; ++k) {
      std::vector<Token> next = {steps[0][k], steps[1][k]};
      for (Index b = 0; b < 2; ++b) {
        slides += Index(window[b].size()) == ctx;
        feed(b, next[b]);
      }
      const Mat<double>& logits = decoder.step(next);
      for (Index b = 0; b < 2; ++b) {
        INFO("step " << k << ", sequence " << b);
        REQUIRE(decoder.position(b) == Index(window[b].size()));
        require_close(logits.col(b), full_forward(model, window[b]).rightCols(1), 1e-10);
      }
    }
    REQUIRE(slides >= 4);  // both sequences slid, at different steps (their prompts differ in length)
  }
}

TEST_CASE("GptDecoder: a prompt longer than the context keeps its last tokens", "[decoder][gpt]") {
  auto model = make_gpt<double>(8, true, 50);
  const auto prompt = random_ids(13, 11, 51);
  GptDecoder<double> decoder(model, 1);
  const std::vector<Token> tail(prompt.end() - 8, prompt.end());
  require_close(decoder.prefill({prompt}), full_forward(model, tail).rightCols(1), 1e-10);
  REQUIRE(decoder.position(0) == 8);
}

TEST_CASE("GptDecoder: ContextPolicy::error throws past the context and changes nothing", "[decoder][gpt][errors]") {
  auto model = make_gpt<double>(4, true, 60);
  GptDecoderOptions options;
  options.policy = ContextPolicy::error;
  GptDecoder<double> decoder(model, 2, options);
  SEQGEN_THROWS_WITH(decoder.prefill({random_ids(5, 11, 61), {1}}), ShapeError,
                     "GptDecoder: prompt 0 has 5 tokens, more than the context length 4 (ContextPolicy::error)");
  decoder.prefill({random_ids(4, 11, 62), {1}});
  const Mat<double> before = decoder.logits();
  const std::vector<Token> next{1, 2};
  SEQGEN_THROWS_WITH(decoder.step(next), ShapeError,
                     "GptDecoder: sequence 0 has filled the context of 4 positions (ContextPolicy::error)");
  REQUIRE(decoder.position(0) == 4);
  REQUIRE(decoder.position(1) == 1);
  REQUIRE(decoder.logits() == before);
}

TEST_CASE("GptDecoder: buffers are allocated once and never move", "[decoder][gpt]") {
  auto model = make_gpt<float>(8, true, 70);
  GptDecoder<float> decoder(model, 3);
  std::vector<const float*> cache;
  for (Index l = 0; l < 2; ++l) cache.push_back(decoder.kv_cache(l).data());
  const float* logits = decoder.logits().data();
  auto unchanged = [&] {
    for (Index l = 0; l < 2; ++l) REQUIRE(decoder.kv_cache(l).data() == cache[l]);
    REQUIRE(decoder.logits().data() == logits);
    REQUIRE(decoder.logits().cols() == 3);
  };
  decoder.prefill({random_ids(7, 11, 71), random_ids(2, 11, 72), random_ids(8, 11, 73)});
  unchanged();
  for (Index k = 0; k < 12; ++k) {  // slides every sequence at least once
    const std::vector<Token> next = random_ids(3, 11, 74 + k);
    decoder.step(next);
    unchanged();
  }
  decoder.reset();
  const std::vector<Token> next = random_ids(3, 11, 90);
  decoder.step(next);
  unchanged();
}

TEST_CASE("RecurrentDecoder: prefill and steps equal the full forward at every position", "[decoder][rnn]") {
  // three sequences: two prompts of equal length run as one batch, one of length 1 on its own
  const std::vector<std::vector<Token>> prompts = {random_ids(4, 9, 1), random_ids(1, 9, 2), random_ids(4, 9, 3)};
  const std::vector<std::vector<Token>> steps = {random_ids(6, 9, 4), random_ids(6, 9, 5), random_ids(6, 9, 6)};
  SECTION("RNN") {
    auto d = make_recurrent<double, RnnLayer>(10);
    check_equivalence(d, prompts, steps, 1e-10);
    auto f = make_recurrent<float, RnnLayer>(11);
    check_equivalence(f, prompts, steps, 1e-5);
  }
  SECTION("LSTM") {
    auto d = make_recurrent<double, LstmLayer>(12);
    check_equivalence(d, prompts, steps, 1e-10);
    auto f = make_recurrent<float, LstmLayer>(13);
    check_equivalence(f, prompts, steps, 1e-5);
  }
  SECTION("GRU") {
    auto d = make_recurrent<double, GruLayer>(14);
    check_equivalence(d, prompts, steps, 1e-10);
    auto f = make_recurrent<float, GruLayer>(15);
    check_equivalence(f, prompts, steps, 1e-5);
  }
}

TEST_CASE("RecurrentDecoder: steps from the zero state, reset, and a state that never moves", "[decoder][rnn]") {
  auto model = make_recurrent<double, LstmLayer>(20);
  const auto tokens = random_ids(5, 9, 21);
  const Mat<double> expected = full_forward(model, tokens);
  RecurrentDecoder<double, LstmLayer> decoder(model, 1);
  decoder.step(TokenSpan(&tokens[0], 1));  // the first step sizes the step workspaces
  const double* h = decoder.state()[1].h.data();
  const double* c = decoder.state()[1].c.data();
  const double* logits = decoder.logits().data();
  decoder.reset();
  REQUIRE(decoder.state()[0].c.isZero(0));
  for (int round = 0; round < 2; ++round) {
    for (Index t = 0; t < 5; ++t) {
      require_close(decoder.step(TokenSpan(&tokens[t], 1)), expected.col(t), 1e-10);
      REQUIRE(decoder.state()[1].h.data() == h);
      REQUIRE(decoder.state()[1].c.data() == c);
      REQUIRE(decoder.logits().data() == logits);
    }
    REQUIRE(decoder.position(0) == 5);
    decoder.reset();
    REQUIRE(decoder.position(0) == 0);
  }
}

TEST_CASE("Decoders: generation code written once gives greedy decoding of the full forward", "[decoder]") {
  auto gpt = make_gpt<double>(6, true, 80);
  auto lstm = make_recurrent<double, LstmLayer>(81);
  const std::vector<Token> prompt = {3, 1, 4};
  // greedy by recomputing the full forward for every token (GPT: over the sliding window)
  auto recompute = [](auto& model, std::vector<Token> window, Index context, Index n) {
    std::vector<Token> out;
    for (Index i = 0; i < n; ++i) {
      const auto logits = full_forward(model, window);
      Index best;
      logits.col(logits.cols() - 1).maxCoeff(&best);
      out.push_back(Token(best));
      if (Index(window.size()) == context) window.erase(window.begin(), window.end() - context / 2);
      window.push_back(Token(best));
    }
    return out;
  };
  auto gpt_decoder = make_decoder(static_cast<const Gpt<double>&>(gpt), 1);
  REQUIRE(greedy(gpt_decoder, prompt, 12) == recompute(gpt, prompt, 6, 12));
  auto lstm_decoder = make_decoder(static_cast<const LstmLm<double>&>(lstm), 1);
  REQUIRE(greedy(lstm_decoder, prompt, 12) == recompute(lstm, prompt, 1000, 12));
}

TEST_CASE("Decoders: bad inputs are clear errors", "[decoder][errors]") {
  auto gpt = make_gpt<double>(8, true, 90);
  auto rnn = make_recurrent<double, GruLayer>(91);
  SEQGEN_THROWS_WITH(GptDecoder<double>(gpt, 0), ConfigError, "GptDecoder: batch size must be positive, got B=0");
  SEQGEN_THROWS_WITH((RecurrentDecoder<double, GruLayer>(rnn, -1)), ConfigError,
                     "RecurrentDecoder: batch size must be positive, got B=-1");
  GptDecoderOptions options;
  options.prefill_chunk = 0;
  SEQGEN_THROWS_WITH(GptDecoder<double>(gpt, 1, options), ConfigError, "prefill_chunk must be positive, got 0");
  Gpt<double> empty_gpt;
  SEQGEN_THROWS_WITH(GptDecoder<double>(empty_gpt, 1), ConfigError, "GptDecoder: the model has 0 blocks for 4 layers");
  GruLm<double> empty_rnn;
  SEQGEN_THROWS_WITH((RecurrentDecoder<double, GruLayer>(empty_rnn, 1)), ConfigError,
                     "RecurrentDecoder: the model has 0 layers for 2");

  GptDecoder<double> g(gpt, 2);
  RecurrentDecoder<double, GruLayer> r(rnn, 2);
  SEQGEN_THROWS_WITH(g.prefill({{1, 2}}), ShapeError, "GptDecoder: got 1 prompts, expected one per sequence (B = 2)");
  SEQGEN_THROWS_WITH(r.prefill({{1}, {2}, {3}}), ShapeError, "RecurrentDecoder: got 3 prompts, expected one per sequence");
  SEQGEN_THROWS_WITH(g.prefill({{1, 2}, {}}), ShapeError, "GptDecoder: prompt 1 is empty");
  SEQGEN_THROWS_WITH(r.prefill({{}, {1}}), ShapeError, "RecurrentDecoder: prompt 0 is empty");
  SEQGEN_THROWS_WITH(g.prefill({{1, 2}, {3, 4, 11}}), IndexError,
                     "GptDecoder: prompt 1 has token id 11 at position 2, out of range [0, 11)");
  SEQGEN_THROWS_WITH(r.prefill({{-1}, {0}}), IndexError,
                     "RecurrentDecoder: prompt 0 has token id -1 at position 0, out of range [0, 9)");
  const std::vector<Token> one{1}, three{1, 2, 3}, g_bad{1, 12}, r_bad{9, 0};
  SEQGEN_THROWS_WITH(g.step(one), ShapeError,
                     "GptDecoder: step got 1 tokens, expected one per sequence (B = 2)");
  SEQGEN_THROWS_WITH(r.step(three), ShapeError, "RecurrentDecoder: step got 3 tokens");
  SEQGEN_THROWS_WITH(g.step(g_bad), IndexError,
                     "GptDecoder: step token for sequence 1 has id 12, out of range [0, 11)");
  SEQGEN_THROWS_WITH(r.step(r_bad), IndexError,
                     "RecurrentDecoder: step token for sequence 0 has id 9, out of range [0, 9)");
  SEQGEN_THROWS_WITH(g.position(2), IndexError, "GptDecoder: sequence 2 is out of range [0, 2)");
  SEQGEN_THROWS_WITH(r.position(-1), IndexError, "RecurrentDecoder: sequence -1 is out of range [0, 2)");
  SEQGEN_THROWS_WITH(g.kv_cache(2), IndexError, "GptDecoder: layer 2 is out of range [0, 2)");
  // nothing changed
  REQUIRE(g.position(0) == 0);
  REQUIRE(r.position(1) == 0);
  REQUIRE(g.logits().isZero(0));
  REQUIRE(r.logits().isZero(0));
}

TEST_CASE("GptDecoder: decoders stepped from the caller's own parallel region give the same logits", "[decoder][gpt]") {
  auto model = make_gpt<double>(16, true, 50, 32, 4);
  const std::vector<Token> prompt = random_ids(3, 11, 51), steps = random_ids(6, 11, 52);
  const Mat<double> expected = full_forward(model, [&] {
    std::vector<Token> all = prompt;
    all.insert(all.end(), steps.begin(), steps.end());
    return all;
  }());
  constexpr int kCallers = 3;
  std::vector<double> errors(kCallers, -1);
  // Each caller thread owns one decoder; the decoder must not open or join a team of its own.
#if defined(SEQGEN_OPENMP) && defined(_OPENMP)
#pragma omp parallel for num_threads(kCallers)
#endif
  for (int c = 0; c < kCallers; ++c) {
    GptDecoder<double> decoder(model, 1);
    double err = (decoder.prefill({prompt}).col(0) - expected.col(2)).cwiseAbs().maxCoeff();
    for (Index k = 0; k < Index(steps.size()); ++k) {
      const Token token = steps[k];
      err = std::max(err, (decoder.step(TokenSpan(&token, 1)).col(0) - expected.col(3 + k)).cwiseAbs().maxCoeff());
    }
    errors[c] = err;
  }
  for (int c = 0; c < kCallers; ++c) {
    INFO("caller " << c);
    CHECK(errors[c] >= 0);
    CHECK(errors[c] < 1e-10);
  }
}

}  // namespace test_decoder
