// Writes the seed corpus of every fuzz target, made by seqgen's own code, into <dir>/<target>/:
// valid checkpoints (every entry type, tiny GPT and RNN/LSTM/GRU training runs), serialized
// tokenizers, UTF-8 text and framed inputs for the structured targets (framing in fuzz_targets.hpp).
// The models are tiny so that every file stays a few KB. The output is deterministic; it is
// generated once and committed:
//   g++ -std=c++17 -O1 -I include -I /usr/include/eigen3 fuzz/make_corpus.cpp -o build/fuzz/make_corpus
//   build/fuzz/make_corpus fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "fuzz_targets.hpp"

namespace {

using namespace seqgen;
using namespace seqgen_fuzz;
namespace fs = std::filesystem;

fs::path g_root;

void write_seed(const std::string& target, const std::string& name, const std::string& bytes) {
  const fs::path dir = g_root / target;
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  check<IoError>(bool(out), "make_corpus: cannot write ", (dir / name).string());
  // Every seed must pass through its target without a finding.
  for (const FuzzTarget& t : all_targets())
    if (target == t.name) t.run(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
  std::printf("%-16s %-22s %6zu bytes\n", target.c_str(), name.c_str(), bytes.size());
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A training run of two steps on fixed_text(), saved by Trainer::save.
template <typename Model, typename Config>
std::string trained_checkpoint(const Config& config) {
  Rng rng(11);
  Model model(config, rng);
  TrainOptions options;
  options.batch = 2;
  options.seq_len = 6;
  options.steps = 10;
  options.warmup = 1;
  Trainer<Model> trainer(std::move(model), fixed_tokenizer(), fixed_dataset(), options);
  trainer.step();
  trainer.step();
  const fs::path path = g_root / "tmp.ckpt";
  trainer.save(path.string());
  std::string bytes = read_file(path);
  fs::remove(path);
  return bytes;
}

GptConfig tiny_gpt(bool tie, Index layers) {
  GptConfig c;
  c.vocab_size = fixed_tokenizer().vocab_size();
  c.context = 8;
  c.channels = 4;
  c.layers = layers;
  c.heads = 2;
  c.tie_weights = tie;
  return c;
}

RecurrentConfig tiny_recurrent(CellKind cell, Index layers) {
  RecurrentConfig c;
  c.cell = cell;
  c.vocab_size = fixed_tokenizer().vocab_size();
  c.embedding = 3;
  c.hidden = 4;
  c.layers = layers;
  return c;
}

void checkpoint_seeds() {
  {
    CheckpointWriter w;  // the example of docs/checkpoint-format.md
    w.put_int("a", 0x0102030405060708);
    Mat<float> t(1, 2);
    t << 1, -2;
    w.put_tensor("t", t);
    write_seed("checkpoint", "format_example", w.to_bytes());
  }
  {
    CheckpointWriter w;
    w.put_int("int", -5);
    w.put_double("double", 0.25);
    w.put_string("string", "gpt");
    w.put_string("empty", "");
    w.put_bytes("bytes", std::string("\x00\x01\xFF", 3));
    Mat<float> f(2, 3);
    f << 1, 2, 3, 4, 5, 6;
    w.put_tensor("param/f32", f);
    Mat<double> d(1, 2);
    d << 0.5, -1e300;
    w.put_tensor("param/f64", d);
    w.put_tensor("param/none", Mat<float>(0, 3));
    write_seed("checkpoint", "every_type", w.to_bytes());
  }
  write_seed("checkpoint", "no_entries", CheckpointWriter().to_bytes());
  {
    CheckpointWriter w;  // what load_model reads, without the training state
    Rng rng(3);
    Gpt<float> model(tiny_gpt(true, 1), rng);
    w.put_string("model.kind", "gpt");
    write_config(w, model.config);
    w.put_bytes("tokenizer", fixed_tokenizer().to_bytes());
    write_params(w, model);
    write_seed("checkpoint", "gpt_model", w.to_bytes());
  }
}

void model_seeds() {
  write_seed("load_gpt", "gpt_tied", trained_checkpoint<Gpt<float>>(tiny_gpt(true, 1)));
  write_seed("load_gpt", "gpt_untied_2_layers", trained_checkpoint<Gpt<float>>(tiny_gpt(false, 2)));
  write_seed("load_recurrent", "lstm", trained_checkpoint<LstmLm<float>>(tiny_recurrent(CellKind::lstm, 1)));
  write_seed("load_recurrent", "gru", trained_checkpoint<GruLm<float>>(tiny_recurrent(CellKind::gru, 1)));
  write_seed("load_recurrent", "rnn_2_layers", trained_checkpoint<RnnLm<float>>(tiny_recurrent(CellKind::rnn, 2)));
}

void text_seeds() {
  const std::string unicode = "h\xC3\xA9llo w\xC3\xB6rld \xE2\x98\x83 \xF0\x9F\x98\x80 \xEF\xBF\xBF\n";
  write_seed("utf8", "ascii", "to be or not to be\n");
  write_seed("utf8", "unicode", unicode);
  write_seed("utf8", "ill_formed", std::string("ok \xC0\xAF \xED\xA0\x80 \xF4\x90\x80\x80 \xE2\x98", 17));

  const auto tokenizer_input = [](const Tokenizer& tok, std::vector<int> ids, const std::string& text) {
    std::string in;
    put_sized16(in, tok.to_bytes());
    std::string id_bytes;
    for (int id : ids) put_u16(id_bytes, unsigned(id) & 0xFFFF);
    put_sized16(in, id_bytes);
    return in + text;
  };
  write_seed("tokenizer", "characters", tokenizer_input(fixed_tokenizer(), {0, 1, 2, 3, 15, 16}, "to be, or"));
  write_seed("tokenizer", "bytes", tokenizer_input(Tokenizer::bytes(), {0, 255, 256, -1}, "b\xFFytes"));
  write_seed("tokenizer", "unicode", tokenizer_input(Tokenizer::characters(unicode), {5, 9, 12}, unicode));

  const auto dataset_input = [](unsigned flags, unsigned val, unsigned B, unsigned T, const std::string& text) {
    std::string in;
    for (unsigned v : {flags, val, B, T}) put_u8(in, v);
    return in + text;
  };
  write_seed("dataset", "bytes", dataset_input(0, 26, 3, 5, "hello, world\nhello again\n"));
  write_seed("dataset", "characters", dataset_input(1, 64, 1, 7, unicode + unicode));
  write_seed("dataset", "fixed_vocabulary", dataset_input(2, 26, 2, 8, fixed_text().substr(0, 120)));
  write_seed("dataset", "bad_fraction", dataset_input(4 + 8, 0, 0, 0, "abc"));

  const auto stop_input = [](std::vector<std::string> stops, std::uint32_t seed, const std::string& text) {
    std::string in;
    put_u8(in, unsigned(stops.size()));
    for (const std::string& s : stops) put_sized8(in, s);
    put_u32(in, seed);
    return in + text;
  };
  write_seed("stop_strings", "two_stops", stop_input({"\n\n", "User:"}, 1, "hello\nUse then User: hi\n\nbye"));
  write_seed("stop_strings", "overlapping", stop_input({"aab", "ab", "b"}, 7, "aaaaab tail"));
  write_seed("stop_strings", "none", stop_input({}, 3, "no stop strings at all"));

  const auto generate_input = [](std::vector<unsigned> head, std::vector<std::string> stops, const std::string& prompt) {
    std::string in;
    for (unsigned v : head) put_u8(in, v);
    put_u8(in, unsigned(stops.size()));
    for (const std::string& s : stops) put_sized8(in, s);
    return in + prompt;
  };
  // head: model, samples, new tokens + 1, temperature, top_k + 4, top_p, min_p, penalty
  write_seed("generate", "gpt_greedy", generate_input({0, 1, 9, 1, 4, 0, 0, 0}, {"e"}, "to "));
  write_seed("generate", "gpt_nucleus", generate_input({0, 2, 11, 2, 9, 1, 1, 1 + 8 * 2}, {"o", "q"}, "question"));
  write_seed("generate", "lstm_sampled", generate_input({1, 3, 11, 0, 4, 2, 2, 1}, {}, fixed_text().substr(0, 30)));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  try {
    g_root = argv[1];
    checkpoint_seeds();
    model_seeds();
    text_seeds();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_corpus: %s\n", e.what());
    return 1;
  }
  return 0;
}
