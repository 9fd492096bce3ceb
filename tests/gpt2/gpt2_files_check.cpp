// Checks seqgen's GPT-2 readers and writers against the files and reference logits that
// tests/gpt2_reference.py writes (a GPT-2 forward written there from the paper, in float64):
//
//   gpt2_files_check DIR            the small model: every file, logits and loss, round trips
//   gpt2_files_check DIR --124M     GPT-2 124M's shape: both loaders, the logits of a 64-token
//                                   prompt, 32 decoded tokens, one training step
//   gpt2_files_check FILE --load    loads FILE and nothing else (for /usr/bin/time -v: the peak
//                                   memory of a load)
//   gpt2_files_check FILE --step B T [--recompute]   loads FILE, then two AdamW training steps at
//                                   B, T on random tokens (the peak memory of training, without a
//                                   checkpoint save); --recompute: Gpt::Activations::recompute
//
// Prints one line per check and exits 1 on the first failure (tests/gpt2_files_test.sh runs it).
#include <seqgen/io/checkpoint.hpp>
#include <seqgen/io/gpt2_files.hpp>
#include <seqgen/seqgen.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace seqgen;
using Model = Gpt<float>;

int g_failures = 0;

void expect(bool ok, const std::string& what) {
  std::printf("%s: %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++g_failures;
}

struct Reference {
  Index B = 0, T = 0, V = 0, C = 0, L = 0, NH = 0, context = 0;
  std::vector<Token> inputs, targets;
  double loss = 0, loss_bf16 = 0;
  std::vector<double> logits, logits_bf16;  // (B·T, V) row-major
};

std::vector<double> read_f64(const std::string& path, std::size_t n) {
  std::ifstream in(path, std::ios::binary);
  std::vector<double> v(n);
  in.read(reinterpret_cast<char*>(v.data()), std::streamsize(n * sizeof(double)));
  check<IoError>(std::size_t(in.gcount()) == n * sizeof(double), path, ": expected ", n, " float64 values");
  return v;
}

Reference read_reference(const std::string& dir, bool bf16) {
  Reference r;
  std::ifstream in(dir + "/ref.txt");
  check<IoError>(in.is_open(), dir, "/ref.txt: cannot open it (run tests/gpt2_reference.py first)");
  in >> r.B >> r.T >> r.V >> r.C >> r.L >> r.NH >> r.context;
  r.inputs.resize(std::size_t(r.B * r.T));
  r.targets.resize(std::size_t(r.B * r.T));
  for (auto& t : r.inputs) in >> t;
  for (auto& t : r.targets) in >> t;
  std::string loss, loss_bf16;
  in >> loss >> loss_bf16;
  r.loss = std::strtod(loss.c_str(), nullptr);
  r.loss_bf16 = std::strtod(loss_bf16.c_str(), nullptr);
  check<IoError>(bool(in), dir, "/ref.txt: malformed");
  r.logits = read_f64(dir + "/ref_logits.f64", std::size_t(r.B * r.T * r.V));
  if (bf16) r.logits_bf16 = read_f64(dir + "/ref_logits_bf16.f64", std::size_t(r.B * r.T * r.V));
  return r;
}

// Largest |seqgen − reference| over the logits, relative to the largest |reference| logit.
double logits_error(Model& m, const Reference& r, const std::vector<double>& ref) {
  Model::State state;
  Model::Activations act;
  Mat<float> out;
  m.logits(TokenSpan(r.inputs), r.B, r.T, state, act, out);
  double err = 0, scale = 0;
  for (Index n = 0; n < r.B * r.T; ++n)
    for (Index v = 0; v < r.V; ++v) {
      const double want = ref[std::size_t(n * r.V + v)];
      err = std::max(err, std::abs(double(out(v, n)) - want));
      scale = std::max(scale, std::abs(want));
    }
  return err / scale;
}

double loss_of(Model& m, const Reference& r) {
  Model::State state;
  Model::Activations act;
  Rng rng(0);
  return m.forward(TokenSpan(r.inputs), TokenSpan(r.targets), r.B, r.T, state, act, rng, false);
}

bool same_params(const Model& a, const Model& b) {
  if (a.num_tensors() != b.num_tensors() || a.config.tie_weights != b.config.tie_weights) return false;
  bool same = true;
  a.for_each_param([&](const Param<float>& p) {
    const Param<float>* q = b.find_param(p.name);
    same = same && q && q->value.rows() == p.value.rows() && q->value.cols() == p.value.cols() &&
           std::memcmp(q->value.data(), p.value.data(), sizeof(float) * std::size_t(p.size())) == 0;
  });
  return same;
}

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string fmt(const char* f, double x) {
  char buf[128];
  std::snprintf(buf, sizeof buf, f, x);
  return buf;
}

void check_model(const std::string& dir, const std::string& file, const Reference& r, bool bf16) {
  const std::string path = dir + "/" + file;
  // model_bf16.safetensors does not name its heads (see gpt2_reference.py): they are given.
  Model m = load_gpt2_file(path, file == "model_bf16.safetensors" ? r.NH : 0);
  expect(m.config.vocab_size == r.V && m.config.channels == r.C && m.config.layers == r.L && m.config.heads == r.NH &&
             m.config.context == r.context && m.config.tie_weights,
         file + ": config from the file");
  const double err = logits_error(m, r, bf16 ? r.logits_bf16 : r.logits);
  expect(err <= 1e-5, file + fmt(": logits match the reference, max error %.2e of the largest logit", err));
  const double want = bf16 ? r.loss_bf16 : r.loss, loss = loss_of(m, r);
  expect(std::abs(loss - want) <= 1e-5 * want, file + fmt(": loss %.7f", loss) + fmt(" vs reference %.7f", want));
}

// Write in both formats, read back: the same parameters, and a second write gives the same bytes.
void check_round_trip(const Model& m, const std::string& tmp, const std::string& what, TensorDtype dtype) {
  for (Gpt2Format f : {Gpt2Format::llmc, Gpt2Format::safetensors}) {
    const std::string a = tmp + "/a." + gpt2_format_name(f), b = tmp + "/b." + gpt2_format_name(f);
    save_gpt2_file(m, a, f, dtype);
    const Model back = load_gpt2_file(a);
    expect(same_params(m, back), what + ": written as " + gpt2_format_name(f) + " " + dtype_name(dtype) +
                                     ", read back bit-identical");
    save_gpt2_file(back, b, f, dtype);
    expect(file_bytes(a) == file_bytes(b), what + ": " + gpt2_format_name(f) + " written again, byte-identical");
  }
}

int check_small(const std::string& dir) {
  const Reference r = read_reference(dir, true);
  check_model(dir, "model.safetensors", r, false);
  check_model(dir, "model.bin", r, false);
  check_model(dir, "model_bf16.safetensors", r, true);
  check_model(dir, "model_bf16.bin", r, true);

  const Model st = load_gpt2_file(dir + "/model.safetensors"), bin = load_gpt2_file(dir + "/model.bin");
  expect(same_params(st, bin), "model.safetensors and model.bin: bit-identical parameters");
  const Model st16 = load_gpt2_file(dir + "/model_bf16.safetensors", r.NH), bin16 = load_gpt2_file(dir + "/model_bf16.bin");
  expect(same_params(st16, bin16), "model_bf16.safetensors and model_bf16.bin: bit-identical parameters");

  const std::string tmp = dir + "/roundtrip";
  std::filesystem::create_directories(tmp);
  check_round_trip(st, tmp, "float32 model", TensorDtype::f32);
  check_round_trip(bin16, tmp, "bfloat16 model", TensorDtype::bf16);
  // llm.c's own writer (the script's, as train_gpt2.py) pads with zeros: seqgen writes the same bytes.
  save_llmc_gpt2(bin16, tmp + "/v5.bin", TensorDtype::bf16);
  expect(file_bytes(tmp + "/v5.bin") == file_bytes(dir + "/model_bf16.bin"),
         "llm.c version 5 written by seqgen: byte-identical to the script's");

  // Into a seqgen checkpoint and back.
  CheckpointWriter w;
  write_params(w, st);
  w.save(tmp + "/params.ckpt");
  Model back = st;
  back.for_each_param([](Param<float>& p) { p.value.setZero(); });
  read_params(CheckpointReader::load(tmp + "/params.ckpt"), back);
  expect(same_params(st, back), "a seqgen checkpoint of the loaded model reads back bit-identical");
  return g_failures == 0 ? 0 : 1;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

int check_124m(const std::string& dir) {
  const Reference r = read_reference(dir, false);
  auto t0 = std::chrono::steady_clock::now();
  Model m = load_gpt2_file(dir + "/model.bin");
  std::printf("load model.bin: %.2f s\n", seconds_since(t0));
  expect(m.config.vocab_size == 50257 && m.config.channels == 768 && m.config.layers == 12 && m.config.heads == 12 &&
             m.config.context == 1024 && count_params(m) == gpt2_config("124M").num_params(),
         "model.bin: GPT-2 124M's config and parameter count");
  {
    t0 = std::chrono::steady_clock::now();
    const Model st = load_gpt2_file(dir + "/model.safetensors");
    std::printf("load model.safetensors: %.2f s\n", seconds_since(t0));
    expect(same_params(m, st), "model.safetensors and model.bin: bit-identical parameters");
  }
  t0 = std::chrono::steady_clock::now();
  const double err = logits_error(m, r, r.logits);
  std::printf("logits of the prompt: %.2f s\n", seconds_since(t0));
  expect(err <= 1e-5, fmt("logits of a 64-token prompt match the reference, max error %.2e of the largest", err));

  // 32 tokens decoded greedily with the KV cache: each step's logits are the full forward's over
  // the sequence so far, so the greedy choices agree with argmax of that forward.
  t0 = std::chrono::steady_clock::now();
  auto decoder = make_decoder(m, 1);
  std::vector<Token> seq(r.inputs.begin(), r.inputs.end());
  const Mat<float>* logits = &decoder.prefill({seq});
  for (int i = 0; i < 32; ++i) {
    Index best;
    logits->col(0).maxCoeff(&best);
    seq.push_back(Token(best));
    logits = &decoder.step(TokenSpan(&seq.back(), 1));
  }
  std::printf("decode 32 tokens: %.2f s\n", seconds_since(t0));
  {
    Model::State state;
    Model::Activations act;
    Mat<float> full;
    const Index T = Index(seq.size()) - 1;
    m.logits(TokenSpan(seq.data(), T), 1, T, state, act, full);
    bool agree = true;
    for (Index t = Index(r.inputs.size()) - 1; t < T; ++t) {
      Index best;
      full.col(t).maxCoeff(&best);
      agree = agree && best == seq[std::size_t(t + 1)];
    }
    expect(agree, "32 greedy tokens decoded with the KV cache agree with the full forward's argmax");
  }

  // One training step (SGD on the prompt's own targets) lowers that loss.
  t0 = std::chrono::steady_clock::now();
  Model::State state;
  Model::Activations act;
  Rng rng(0);
  zero_grad(m);
  const double before = m.forward(TokenSpan(r.inputs), TokenSpan(r.targets), r.B, r.T, state, act, rng, true);
  m.backward(TokenSpan(r.inputs), TokenSpan(r.targets), r.B, r.T, act);
  m.for_each_param([](Param<float>& p) { p.value -= 1e-3f * p.grad; });
  const double after = m.forward(TokenSpan(r.inputs), TokenSpan(r.targets), r.B, r.T, state, act, rng, false);
  std::printf("training step: %.2f s\n", seconds_since(t0));
  expect(std::abs(before - r.loss) <= 1e-5 * r.loss && after < before,
         fmt("one training step: loss %.6f", before) + fmt(" (reference %.6f)", r.loss) + fmt(" -> %.6f", after));
  return g_failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: gpt2_files_check DIR [--124M]\n");
    return 2;
  }
  try {
    if (argc > 2 && std::string(argv[2]) == "--load") {
      const auto t0 = std::chrono::steady_clock::now();
      const Model m = load_gpt2_file(argv[1]);
      std::printf("loaded '%s': %lld parameters in %.2f s\n", argv[1], (long long)count_params(m), seconds_since(t0));
      return 0;
    }
    if (argc > 4 && std::string(argv[2]) == "--step") {
      Model m = load_gpt2_file(argv[1]);
      const Index B = std::stoll(argv[3]), T = std::stoll(argv[4]);
      std::vector<Token> ids(std::size_t(B * T + 1));
      Rng rng(1);
      for (auto& id : ids) id = Token(rng.next_u64() % std::uint64_t(m.config.vocab_size));
      const std::vector<Token> inputs(ids.begin(), ids.end() - 1), targets(ids.begin() + 1, ids.end());
      Model::State state;
      Model::Activations act;
      act.recompute = argc > 5 && std::string(argv[5]) == "--recompute";
      AdamW<float> opt;
      for (int step = 0; step < 2; ++step) {
        const auto t0 = std::chrono::steady_clock::now();
        zero_grad(m);
        const double loss = m.forward(inputs, targets, B, T, state, act, rng, true);
        m.backward(inputs, targets, B, T, act);
        opt.step(m);
        std::printf("step %d at B=%lld T=%lld: loss %.4f, %.2f s\n", step + 1, (long long)B, (long long)T, loss,
                    seconds_since(t0));
      }
      return 0;
    }
    const int status = argc > 2 && std::string(argv[2]) == "--124M" ? check_124m(argv[1]) : check_small(argv[1]);
    std::printf("gpt2_files_check: %s\n", status == 0 ? "all passed" : "FAILED");
    return status;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpt2_files_check: error: %s\n", e.what());
    return 1;
  }
}
