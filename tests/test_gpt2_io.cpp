// GPT-2's files (io/llmc_gpt2.hpp, io/safetensors.hpp, io/gpt2_safetensors.hpp): the presets'
// published parameter counts, bfloat16 rounding, round trips through both formats, the two
// loaders agreeing, and hostile files refused with a FormatError that says why. The comparison
// with an independent GPT-2 forward is tests/gpt2_files_test.sh (PyTorch).
#include <seqgen/data/bpe_train.hpp>
#include <seqgen/data/gpt2_vocab.hpp>
#include <seqgen/io/gpt2_files.hpp>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "test_util.hpp"

namespace test_gpt2_io {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;

namespace {

std::string temp_path(const std::string& stem) {
  return (std::filesystem::temp_directory_path() / ("seqgen_gpt2_" + stem + "_" + std::to_string(::getpid())))
      .string();
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

GptConfig small_config(bool tied = true) {
  GptConfig c;
  c.vocab_size = 130;  // Vp = 256 in llm.c's file
  c.context = 8;
  c.channels = 16;
  c.layers = 2;
  c.heads = 2;
  c.tie_weights = tied;
  return c;
}

Gpt<float> random_model(bool tied = true, std::uint64_t seed = 3) {
  Rng rng(seed);
  Gpt<float> m(small_config(tied), rng);
  // Biases and LayerNorm parameters start as 0 and 1: make every tensor distinct.
  m.for_each_param([&](Param<float>& p) { normal_init(p.value, rng, 0.5); });
  return m;
}

bool same_params(const Gpt<float>& a, const Gpt<float>& b) {
  if (a.num_tensors() != b.num_tensors()) return false;
  bool same = true;
  a.for_each_param([&](const Param<float>& p) {
    const Param<float>* q = b.find_param(p.name);
    same = same && q && q->value.rows() == p.value.rows() && q->value.cols() == p.value.cols() &&
           std::memcmp(q->value.data(), p.value.data(), sizeof(float) * std::size_t(p.size())) == 0;
  });
  return same;
}

// A safetensors file with its JSON header replaced (the data buffer kept).
std::string with_header(const std::string& file, const std::string& json) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(file[std::size_t(i)]);
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[std::size_t(i)] = char((json.size() >> (8 * i)) & 0xFF);
  return out + json + file.substr(8 + n);
}
std::string header_of(const std::string& file) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = n << 8 | static_cast<unsigned char>(file[std::size_t(i)]);
  return file.substr(8, n);
}

}  // namespace

TEST_CASE("GPT-2 presets have the published parameter counts", "[gpt2_io]") {
  CHECK(gpt2_config("124M").num_params() == 124439808);
  CHECK(gpt2_config("355M").num_params() == 354823168);
  CHECK(gpt2_config("774M").num_params() == 774030080);
  CHECK(gpt2_config("1.5B").num_params() == 1557611200);
  CHECK(gpt2_config("gpt2-xl").channels == 1600);
  CHECK(gpt2_config("124M").heads == 12);
  CHECK(padded_vocab_size(50257) == 50304);
  CHECK(padded_vocab_size(128) == 128);
  CHECK(gpt2_heads_for_width(1024) == 16);
  CHECK(gpt2_heads_for_width(1600) == 25);
  CHECK(gpt2_heads_for_width(96) == 0);
  SEQGEN_THROWS_WITH(gpt2_config("7B"), ConfigError, "unknown GPT-2 size '7B'");
  // GPT-2's LayerNorm eps: the one seqgen's LayerNorm uses.
  CHECK(LayerNorm<float>::kEps == 1e-5);
}

TEST_CASE("bfloat16 rounds to nearest even, keeps NaN and infinities", "[gpt2_io]") {
  using detail::bf16_from_f32;
  using detail::f32_from_bits;
  CHECK(bf16_from_f32(1.0f) == 0x3F80);
  CHECK(bf16_from_f32(f32_from_bits(0x3F808000u)) == 0x3F80);  // a tie, to the even 0x3F80
  CHECK(bf16_from_f32(f32_from_bits(0x3F818000u)) == 0x3F82);  // a tie, to the even 0x3F82
  CHECK(bf16_from_f32(f32_from_bits(0x3F808001u)) == 0x3F81);  // above the tie
  CHECK(bf16_from_f32(std::numeric_limits<float>::infinity()) == 0x7F80);
  CHECK(bf16_from_f32(-std::numeric_limits<float>::infinity()) == 0xFF80);
  const std::uint16_t nan = bf16_from_f32(std::numeric_limits<float>::quiet_NaN());
  CHECK(((nan & 0x7F80) == 0x7F80 && (nan & 0x7F) != 0));
  const unsigned char b[2] = {0x80, 0x3F};
  CHECK(detail::value_from_bytes(b, TensorDtype::bf16) == 1.0f);
}

TEST_CASE("GPT-2 files: round trips, and the two loaders agree bit for bit", "[gpt2_io]") {
  const Gpt<float> m = random_model();
  const std::string bin = temp_path("m.bin"), st = temp_path("m.safetensors");
  save_llmc_gpt2(m, bin);
  save_safetensors_gpt2(m, st);
  CHECK(gpt2_file_format(bin) == Gpt2Format::llmc);
  CHECK(gpt2_file_format(st) == Gpt2Format::safetensors);
  // llm.c's size: the header and Vp = 256 rows of wte.
  CHECK(std::filesystem::file_size(bin) == 1024 + 4 * (std::uint64_t(m.config.num_params()) + (256 - 130) * 16));
  const Gpt<float> a = load_gpt2_file(bin), b = load_gpt2_file(st);
  CHECK(same_params(m, a));
  CHECK(same_params(m, b));
  CHECK(a.config.heads == 2);
  CHECK(b.config.heads == 2);  // from the metadata seqgen writes

  SECTION("the padded rows of llm.c's wte are zeros") {
    const std::string bytes = read_all(bin);
    const std::size_t pad = 1024 + 4 * 130 * 16;
    CHECK(bytes.substr(pad, 4 * 126 * 16) == std::string(4 * 126 * 16, '\0'));
  }
  SECTION("an untied head: safetensors keeps lm_head.weight, llm.c refuses it") {
    const Gpt<float> u = random_model(false);
    save_safetensors_gpt2(u, st);
    const Gpt<float> back = load_gpt2_file(st);
    CHECK(!back.config.tie_weights);
    CHECK(same_params(u, back));
    SEQGEN_THROWS_WITH(save_llmc_gpt2(u, bin), ConfigError, "separate lm_head");
  }
  SECTION("an lm_head.weight equal to wte is the tied head") {
    // Rewrite the header: lm_head.weight pointing at wte's bytes is an overlap, so append a copy.
    const Param<float>& wte = m.wte.weight;
    std::string file = read_all(st);
    auto j = nlohmann::json::parse(header_of(file));
    const std::uint64_t end = file.size() - 8 - header_of(file).size();
    j["lm_head.weight"] = {{"dtype", "F32"}, {"shape", {130, 16}}, {"data_offsets", {end, end + 4 * 130 * 16}}};
    const std::uint64_t begin = j["wte.weight"]["data_offsets"][0];
    std::string data = file.substr(8 + header_of(file).size());
    data += data.substr(begin, 4 * 130 * 16);
    write_all(st, with_header(std::string(8, '\0') + data, j.dump()).substr(0));
    // with_header read a zero header length, so the data follows it whole.
    const Gpt<float> back = load_gpt2_file(st);
    CHECK(back.config.tie_weights);
    CHECK(std::memcmp(back.wte.weight.value.data(), wte.value.data(), 4 * 130 * 16) == 0);
  }
  SECTION("a seqgen-written file stays byte-identical through a load and a save") {
    const std::string again = temp_path("again.bin");
    save_llmc_gpt2(a, again);
    CHECK(read_all(again) == read_all(bin));
    std::filesystem::remove(again);
  }
  std::filesystem::remove(bin);
  std::filesystem::remove(st);
}

TEST_CASE("llm.c model files: hostile headers are refused before anything is allocated", "[gpt2_io]") {
  const std::string bin = temp_path("h.bin");
  save_llmc_gpt2(random_model(), bin);
  const std::string good = read_all(bin);
  const auto with_int = [&](int index, std::int32_t v) {
    std::string s = good;
    detail::store_le(&s[std::size_t(4 * index)], std::uint32_t(v), 4);
    return s;
  };
  const auto refused = [&](const std::string& bytes, const char* why) {
    write_all(bin, bytes);
    SEQGEN_THROWS_WITH(load_llmc_gpt2(bin), FormatError, why);
  };
  refused(good.substr(0, 100), "shorter than llm.c's 1024-byte header");
  refused(with_int(0, 20240328), "magic 20240328, expected 20240326");
  refused(with_int(1, 4), "version 4, expected 3 (float32) or 5 (bfloat16)");
  refused(good.substr(0, good.size() - 1), "the file has");
  refused(good + "x", "the file has");
  refused(with_int(4, 1 << 20), "describes");     // L: far more layers than the file holds
  refused(with_int(4, -1), "L = -1 is out of range");
  refused(with_int(6, 15), "heads do not divide C = 15");
  refused(with_int(7, 100), "smaller than V = 130");
  refused(with_int(2, 0x7FFFFFFF), "maxT = 2147483647 is out of range");
  refused(with_int(3, 1 << 24), "smaller than V = 16777216");
  {  // a NaN weight
    std::string s = good;
    detail::store_le(&s[1024 + 4 * 5], detail::bits_from_f32(std::numeric_limits<float>::quiet_NaN()), 4);
    refused(s, "NaN or infinite");
  }
  SEQGEN_THROWS_WITH(load_llmc_gpt2(temp_path("missing.bin")), IoError, "does not exist");
  std::filesystem::remove(bin);
}

TEST_CASE("safetensors: hostile headers are refused with the reason", "[gpt2_io]") {
  const std::string st = temp_path("h.safetensors");
  save_safetensors_gpt2(random_model(), st);
  const std::string good = read_all(st);
  const nlohmann::json header = nlohmann::json::parse(header_of(good));
  const auto refused = [&](const std::string& bytes, const char* why) {
    write_all(st, bytes);
    SEQGEN_THROWS_WITH(load_safetensors_gpt2(st), FormatError, why);
  };
  const auto edited = [&](auto&& edit) {
    nlohmann::json j = header;
    edit(j);
    return with_header(good, j.dump());
  };
  refused(good.substr(0, 5), "shorter than the 8-byte header length");
  {
    std::string s = good;
    detail::store_le(&s[0], good.size(), 8);
    refused(s, "does not fit");
    detail::store_le(&s[0], ~std::uint64_t(0), 8);
    refused(s, "does not fit");
  }
  refused(with_header(good, "{\"wte.weight\": [1, 2"), "not valid JSON");
  refused(with_header(good, "[1, 2, 3]"), "does not start with '{'");
  refused(with_header(good, "{\"a\": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"),
          "nests deeper than");
  {  // a flat bomb: many values, shallow
    std::string bomb = "{\"a\": [0";
    for (int i = 0; i < (1 << 20) + 8; ++i) bomb += ",0";
    bomb += "]}";
    refused(with_header(good, bomb), "more than 1048576 values");
  }
  refused(edited([](auto& j) {
            j["ln_f.bias"]["dtype"] = "I64";
            j["ln_f.bias"]["shape"] = {8};
          }),
          "'ln_f.bias' has dtype I64");
  refused(edited([](auto& j) { j["wte.weight"]["dtype"] = "Q4"; }), "unknown dtype 'Q4'");
  refused(edited([](auto& j) { j["wte.weight"]["shape"] = {1099511627776ULL, 1099511627776ULL}; }),
          "more than the");
  refused(edited([](auto& j) { j["wte.weight"]["shape"] = {-1, 16}; }), "is not an integer in [0, 2^40]");
  refused(edited([](auto& j) { j["wte.weight"]["shape"] = {1, 1, 1, 1, 1, 1, 1, 1, 1}; }), "at most 8 dimensions");
  refused(edited([](auto& j) { j["wte.weight"]["data_offsets"] = {0, 1ULL << 62}; }), "not inside the data buffer");
  refused(edited([](auto& j) { j["wte.weight"]["data_offsets"] = {8, 4}; }), "not inside the data buffer");
  refused(edited([](auto& j) {
            j["wpe.weight"]["data_offsets"] = j["wte.weight"]["data_offsets"];
            j["wpe.weight"]["shape"] = j["wte.weight"]["shape"];
          }),
          "overlap");
  refused(edited([](auto& j) { j["wte.weight"]["shape"] = {130, 15}; }), "hold 8320 bytes, its shape and dtype F32 need 7800");
  refused(edited([](auto& j) { j["wte.weight"]["extra"] = 1; }), "exactly dtype, shape and data_offsets");
  refused(edited([](auto& j) { j.erase("h.1.ln_2.bias"); }), "tensor 'h.1.ln_2.bias' is missing");
  refused(edited([](auto& j) { j.erase("wpe.weight"); }), "no wpe.weight tensor");
  refused(edited([](auto& j) {
            j["h.7.mlp.c_fc.weight"] = {{"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {0, 0}}};
          }),
          "unexpected tensor 'h.7.mlp.c_fc.weight'");
  refused(edited([](auto& j) { j["__metadata__"]["n_head"] = "x"; }), "metadata n_head is 'x'");
  refused(edited([](auto& j) { j["__metadata__"]["n_head"] = "3"; }), "heads (3) must divide channels (16)");
  refused(edited([](auto& j) {
            std::swap(j["h.0.attn.c_attn.weight"]["shape"][0], j["h.0.attn.c_attn.weight"]["shape"][1]);
          }),
          "has shape (48, 16), expected (16, 48)");
  // The causal-mask buffers of Hugging Face's files are skipped, whatever their dtype.
  {
    nlohmann::json j = header;
    j["h.0.attn.bias"] = {{"dtype", "BOOL"}, {"shape", {0}}, {"data_offsets", {0, 0}}};
    write_all(st, with_header(good, j.dump()));
    CHECK(load_safetensors_gpt2(st).config.layers == 2);
  }
  std::filesystem::remove(st);
}

TEST_CASE("llm.c's tokenizer.bin rebuilds the merges: the same ids as the vocabulary it was written from",
          "[gpt2_io]") {
  std::string text;
  for (int i = 0; i < 40; ++i)
    text += "The quick brown fox jumps over the lazy dog " + std::to_string(i * 37) + ". Über naïve café, résumé!\n";
  BpeTrainOptions o;
  o.vocab_size = 600;
  const Tokenizer trained = Tokenizer::bpe(train_bpe(text, o));
  const Token eot = Token(trained.vocab_size() - 1);  // the last merge's result, as a special token here
  const LlmcTokenizer llmc = LlmcTokenizer::from(trained, eot);
  const BpeVocab rebuilt = llmc.to_vocab("tokenizer.bin");
  // Every merge of the trained vocabulary but the one made special comes back, in the same order.
  const auto& want = trained.bpe_vocab()->merges();
  REQUIRE(rebuilt.merges().size() == want.size() - 1);
  for (std::size_t r = 0; r + 1 < want.size(); ++r) {
    INFO("merge " << r);
    CHECK(rebuilt.merges()[r].left == want[r].left);
    CHECK(rebuilt.merges()[r].right == want[r].right);
    CHECK(rebuilt.merges()[r].result == want[r].result);
  }
  REQUIRE(rebuilt.specials().size() == 1);
  CHECK(rebuilt.specials()[0].id == eot);
  const Tokenizer tok = Tokenizer::bpe(rebuilt);
  const std::string probe = "A lazy fox, quick and brown, jumps over 1234 dogs. Café!";
  std::vector<Token> a = tok.encode(probe), b = trained.encode(probe);
  // The trained tokenizer may use the merge made special; the rebuilt one cannot.
  CHECK(tok.decode(a) == probe);
  CHECK(a.size() >= b.size());
  // A vocabulary without all 256 bytes cannot encode.
  LlmcTokenizer missing = llmc;
  missing.tokens[std::size_t(trained.bpe_vocab()->byte_ids()['a'])] = "zz";
  SEQGEN_THROWS_WITH(missing.to_vocab("t.bin"), FormatError, "the byte 0x61 has no single-byte token");
}

}  // namespace test_gpt2_io
