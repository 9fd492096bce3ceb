// tokenize: byte-level BPE vocabularies, as SentencePiece's spm_train / spm_encode / spm_decode.
//
//   ./tokenize train  --input corpus.txt --vocab-size 4096 --out vocab.sqtk
//   ./tokenize encode --vocab vocab.sqtk < text.txt > ids.txt         # one line of ids per line
//   ./tokenize encode --gpt2 DIR --whole --input text.txt             # GPT-2 (DIR/encoder.json, DIR/vocab.bpe)
//   ./tokenize encode --vocab vocab.sqtk --input text.txt --binary --output tokens.bin   # llm.c's token file
//   ./tokenize decode --vocab vocab.sqtk < ids.txt
//   ./tokenize decode --llmc gpt2_tokenizer.bin --binary --input tokens.bin
//   ./tokenize export --gpt2 DIR --llmc-out gpt2_tokenizer.bin       # llm.c's tokenizer.bin
//
// A vocabulary is one of: --vocab (a file written by `tokenize train`: the tokenizer blob of
// data/tokenizer.hpp), --checkpoint (the tokenizer a seqgen checkpoint carries), --gpt2 DIR or
// --encoder-json + --vocab-bpe (GPT-2's files), --llmc (llm.c's tokenizer.bin; for encoding, its
// merges are rebuilt from the tokens' order, LlmcTokenizer::to_vocab).
//
// Text ids: encode writes each input line's ids (the line without its '\n') on one line, separated
// by spaces; with --whole, the ids of the whole input on one line. decode reads ids separated by
// white space, each output line from one input line (a '\n' between lines) unless --whole.
// Binary: llm.c's token file, a 256 x i32 header (20240520, version 1, count) and u16 ids.
//
// Exit status: 0 done, 1 an error (the reason on stderr), 2 the command line does not parse.
#include "cli_common.hpp"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <optional>
#include <sstream>

namespace {

using namespace seqgen;

constexpr std::uint32_t kTokenFileMagic = 20240520;  // llm.c's dev/data token files

struct Source {
  std::string vocab, checkpoint, gpt2_dir, encoder_json, vocab_bpe, llmc;
};

void add_source(CLI::App& app, Source& s, bool llmc) {
  app.add_option("--vocab", s.vocab, "Vocabulary written by `tokenize train`");
  app.add_option("--checkpoint", s.checkpoint, "A seqgen checkpoint; its tokenizer");
  app.add_option("--gpt2", s.gpt2_dir, "Folder with GPT-2's encoder.json and vocab.bpe");
  app.add_option("--encoder-json", s.encoder_json, "GPT-2's encoder.json (with --vocab-bpe)");
  app.add_option("--vocab-bpe", s.vocab_bpe, "GPT-2's vocab.bpe (with --encoder-json)");
  if (llmc) app.add_option("--llmc", s.llmc, "llm.c's tokenizer.bin (GPT-2's gpt2_tokenizer.bin)");
}

std::string read_input(const std::string& path) {
  if (path.empty() || path == "-") {
    std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
    check<IoError>(!std::cin.bad(), "cannot read standard input");
    return s;
  }
  cli::require_regular_file(path, "--input");
  return gpt2::read_file(path, std::uint64_t(1) << 40, "--input");
}

void write_output(const std::string& path, const std::string& data) {
  if (path.empty() || path == "-") {
    check<IoError>(std::fwrite(data.data(), 1, data.size(), stdout) == data.size() && std::fflush(stdout) == 0,
                   "cannot write standard output");
    return;
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  check<IoError>(out.is_open(), "--output '", path, "': cannot open it for writing");
  out.write(data.data(), std::streamsize(data.size()));
  out.close();
  check<IoError>(!out.fail(), "--output '", path, "': the write failed (disk full?)");
}

// The tokenizer of a source; exactly one must be given (decode reads --llmc as it is).
Tokenizer load(const Source& s) {
  const int given = !s.vocab.empty() + !s.checkpoint.empty() + !s.gpt2_dir.empty() +
                    (!s.encoder_json.empty() || !s.vocab_bpe.empty()) + !s.llmc.empty();
  check<ConfigError>(given == 1, "give one vocabulary: --vocab, --checkpoint, --gpt2, --encoder-json with "
                                 "--vocab-bpe, or --llmc; found ", given);
  if (!s.llmc.empty()) return Tokenizer::bpe(LlmcTokenizer::load(s.llmc).to_vocab("--llmc '" + s.llmc + "'"));
  if (!s.vocab.empty()) {
    cli::require_regular_file(s.vocab, "--vocab");
    const std::string blob = gpt2::read_file(s.vocab, std::uint64_t(1) << 30, "--vocab");
    try {
      return Tokenizer::from_bytes(blob);
    } catch (const FormatError& e) {
      throw FormatError("--vocab '" + s.vocab + "': " + e.what());
    }
  }
  if (!s.checkpoint.empty()) {
    const CheckpointReader r = CheckpointReader::load(s.checkpoint);
    const std::string blob = r.get_bytes("tokenizer");
    try {
      return Tokenizer::from_bytes(blob);
    } catch (const FormatError& e) {
      throw FormatError("--checkpoint '" + s.checkpoint + "': " + e.what());
    }
  }
  if (!s.gpt2_dir.empty()) return gpt2::load_tokenizer(s.gpt2_dir + "/encoder.json", s.gpt2_dir + "/vocab.bpe");
  check<ConfigError>(!s.encoder_json.empty() && !s.vocab_bpe.empty(), "--encoder-json and --vocab-bpe go together");
  return gpt2::load_tokenizer(s.encoder_json, s.vocab_bpe);
}

void put_i32(std::string& out, std::int32_t v) {
  for (int k = 0; k < 4; ++k) out += static_cast<char>((std::uint32_t(v) >> (8 * k)) & 0xFF);
}

std::string token_file(const std::vector<Token>& ids) {
  check<ConfigError>(ids.size() <= 0x7FFFFFFFu, "--binary: ", ids.size(), " tokens, a token file holds at most 2^31 - 1");
  std::string out;
  put_i32(out, std::int32_t(kTokenFileMagic));
  put_i32(out, 1);
  put_i32(out, std::int32_t(ids.size()));
  out.resize(1024, '\0');
  for (Token id : ids) {
    check<ConfigError>(id < 65536, "--binary: token id ", id, " does not fit the token file's 16 bits");
    out += static_cast<char>(id & 0xFF);
    out += static_cast<char>((id >> 8) & 0xFF);
  }
  return out;
}

std::vector<Token> read_token_file(const std::string& data) {
  check<FormatError>(data.size() >= 1024, "--binary input: ", data.size(), " bytes, shorter than the 1024-byte header");
  const auto i32 = [&](std::size_t i) {
    std::uint32_t v = 0;
    for (int k = 3; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(data[4 * i + std::size_t(k)]);
    return v;
  };
  check<FormatError>(i32(0) == kTokenFileMagic && i32(1) == 1, "--binary input: magic ", i32(0), " version ", i32(1),
                     ", expected llm.c's token file (magic ", kTokenFileMagic, ", version 1)");
  const std::uint64_t n = i32(2);
  check<FormatError>(data.size() - 1024 == 2 * n, "--binary input: the header says ", n, " tokens (", 2 * n,
                     " bytes), the file has ", data.size() - 1024, " bytes after the header");
  std::vector<Token> ids(n);
  for (std::size_t i = 0; i < n; ++i)
    ids[i] = Token(static_cast<unsigned char>(data[1024 + 2 * i]) | static_cast<unsigned char>(data[1025 + 2 * i]) << 8);
  return ids;
}

std::vector<Token> parse_ids(std::string_view line, std::size_t line_no) {
  std::vector<Token> ids;
  std::size_t pos = 0;
  while (pos < line.size()) {
    while (pos < line.size() && std::isspace(static_cast<unsigned char>(line[pos]))) ++pos;
    if (pos == line.size()) break;
    std::size_t end = pos;
    while (end < line.size() && !std::isspace(static_cast<unsigned char>(line[end]))) ++end;
    long long v = -1;
    const auto [p, ec] = std::from_chars(line.data() + pos, line.data() + end, v);
    check<FormatError>(ec == std::errc() && p == line.data() + end && v >= 0 && v < (1LL << 31), "line ", line_no,
                       ": '", std::string(line.substr(pos, end - pos)), "' is not a token id");
    ids.push_back(Token(v));
    pos = end;
  }
  return ids;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"tokenize: train, apply and convert byte-level BPE vocabularies"};
  app.require_subcommand(1);

  std::string input, output, out_vocab, split = "gpt2", llmc_out;
  Index vocab_size = 4096;
  bool whole = false, binary = false;
  Token eot = -1;
  Source src;

  CLI::App* train = app.add_subcommand("train", "Learn a vocabulary from a text file");
  train->add_option("--input", input, "Text to learn from")->required();
  cli::add_number(*train, "--vocab-size", vocab_size, Index(256), BpeVocab::max_vocab, "Tokens (256 bytes + merges)");
  train->add_option("--split", split, "Pre-tokenization: gpt2 (GPT-2's pattern) or none")
      ->check(CLI::IsMember({"gpt2", "none"}));
  train->add_option("--out", out_vocab, "Vocabulary file to write")->required();

  CLI::App* encode = app.add_subcommand("encode", "Text to token ids");
  add_source(*encode, src, true);
  encode->add_option("--input", input, "Text (default: standard input)");
  encode->add_option("--output", output, "Ids (default: standard output)");
  encode->add_flag("--whole", whole, "The whole input as one text, its ids on one line");
  encode->add_flag("--binary", binary, "Write llm.c's token file (the whole input)");

  CLI::App* decode = app.add_subcommand("decode", "Token ids to text");
  add_source(*decode, src, true);
  decode->add_option("--input", input, "Ids (default: standard input)");
  decode->add_option("--output", output, "Text (default: standard output)");
  decode->add_flag("--whole", whole, "Join the lines' texts without a newline between them");
  decode->add_flag("--binary", binary, "Read llm.c's token file");

  CLI::App* exp = app.add_subcommand("export", "Write a vocabulary as llm.c's tokenizer.bin");
  add_source(*exp, src, false);
  exp->add_option("--llmc-out", llmc_out, "tokenizer.bin to write")->required();
  cli::add_number(*exp, "--eot", eot, Token(-1), Token(65535),
                  "End-of-text id (default: the token \"<|endoftext|>\" when there is one)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : cli::kExitUsage;
  } catch (const cli::UsageError& e) {
    std::fprintf(stderr, "tokenize: error: %s\n", e.what());
    return cli::kExitUsage;
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "tokenize: error: %s\n", e.what());
    return cli::kExitError;
  }

  try {
    if (*train) {
      const std::string text = read_input(input);
      check<IoError>(!cli::same_file(out_vocab, input), "--out '", out_vocab, "' is the --input: refusing to replace it");
      BpeTrainOptions o;
      o.vocab_size = vocab_size;
      o.split = split == "none" ? PreSplit::none : PreSplit::gpt2;
      const auto t0 = std::chrono::steady_clock::now();
      const Tokenizer tok = Tokenizer::bpe(train_bpe(text, o));
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      write_output(out_vocab, tok.to_bytes());
      std::fprintf(stderr, "tokenize: %lld tokens (%zu merges) learned from %zu bytes in %.2f s, written to %s\n",
                   (long long)tok.vocab_size(), tok.bpe_vocab()->merges().size(), text.size(), s, out_vocab.c_str());
      return 0;
    }
    if (*decode && !src.llmc.empty()) {
      const int others = !src.vocab.empty() + !src.checkpoint.empty() + !src.gpt2_dir.empty() + !src.encoder_json.empty();
      check<ConfigError>(others == 0, "give one vocabulary: --llmc or another, not both");
    }
    if (*exp) {
      const Tokenizer tok = load(src);
      const BpeVocab* v = tok.bpe_vocab();
      check<ConfigError>(v != nullptr, "export: llm.c's tokenizer.bin holds a bpe vocabulary, this one is ",
                         tok.kind_name());
      if (eot < 0)
        for (const BpeSpecial& s : v->specials())
          if (s.bytes == "<|endoftext|>") eot = s.id;
      check<ConfigError>(eot >= 0, "export: the vocabulary has no \"<|endoftext|>\" token; give its id with --eot");
      write_output(llmc_out, LlmcTokenizer::from(tok, eot).to_bytes());
      return 0;
    }
    const std::string data = read_input(input);
    if (*encode) {
      const Tokenizer tok = load(src);
      std::vector<Token> ids;
      if (binary) {
        tok.encode(data, ids);
        write_output(output, token_file(ids));
        return 0;
      }
      std::string out;
      const auto put_ids = [&](std::string_view text) {
        tok.encode(text, ids);
        for (std::size_t i = 0; i < ids.size(); ++i) {
          if (i) out += ' ';
          out += std::to_string(ids[i]);
        }
        out += '\n';
      };
      if (whole) {
        put_ids(data);
      } else {
        for (std::size_t pos = 0; pos < data.size();) {
          std::size_t end = data.find('\n', pos);
          if (end == std::string::npos) end = data.size();
          put_ids(std::string_view(data).substr(pos, end - pos));
          pos = end + 1;
        }
      }
      write_output(output, out);
      return 0;
    }
    // decode
    std::optional<LlmcTokenizer> llmc;
    std::optional<Tokenizer> tok;
    if (!src.llmc.empty()) llmc = LlmcTokenizer::load(src.llmc);
    else tok = load(src);
    const auto text_of = [&](const std::vector<Token>& ids) {
      return llmc ? llmc->decode(ids) : tok->decode(ids);
    };
    if (binary) {
      write_output(output, text_of(read_token_file(data)));
      return 0;
    }
    std::string out;
    std::size_t line_no = 0;
    for (std::size_t pos = 0; pos < data.size();) {
      std::size_t end = data.find('\n', pos);
      if (end == std::string::npos) end = data.size();
      out += text_of(parse_ids(std::string_view(data).substr(pos, end - pos), ++line_no));
      if (!whole) out += '\n';
      pos = end + 1;
    }
    write_output(output, out);
    return 0;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "tokenize: error: out of memory\n");
    return cli::kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tokenize: error: %s\n", e.what());
    return cli::kExitError;
  }
}
