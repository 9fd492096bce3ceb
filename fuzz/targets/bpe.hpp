// Target `bpe`: byte-level BPE (data/bpe.hpp, bpe_train.hpp, pretokenize.hpp, gpt2_vocab.hpp,
// utf8_stream.hpp). Arbitrary bytes round-trip through encode and decode; the heap and the rescan
// merge a piece alike; a stream of token texts is never cut inside a character that can still
// complete; hostile encoder.json, vocab.bpe, tokenizer.bin and tokenizer blobs give a seqgen error,
// never a crash or a huge allocation.
// Input: [u8 mode] then, by mode % 5:
//   0  text, encoded with a vocabulary learned from a fixed text
//   1  [sized16 encoder.json] [rest: vocab.bpe]
//   2  llm.c's tokenizer.bin (decoded, and encoding with the merges rebuilt from it)
//   3  [u16 vocabulary size - 256] [u8 split] [rest: text to learn from]
//   4  a serialized tokenizer (Tokenizer::from_bytes)
#pragma once

#include "../harness.hpp"

namespace seqgen_fuzz {

inline const Tokenizer& fixed_bpe() {
  static const Tokenizer tok = [] {
    std::string text;
    for (int i = 0; i < 20; ++i)
      text += "To be, or not to be, that is the question: Whether 'tis nobler in the mind to suffer "
              "The slings and arrows of outrageous fortune... 1234 5678 café 日本語 😀\n";
    BpeTrainOptions o;
    o.vocab_size = 400;
    return Tokenizer::bpe(train_bpe(text, o));
  }();
  return tok;
}

// Everything a BPE tokenizer must do with any text.
inline void check_bpe_text(const Tokenizer& tok, std::string_view text) {
  const std::vector<Token> ids = tok.encode(text);
  for (Token id : ids) SEQGEN_FUZZ_EXPECT(id >= 0 && id < tok.vocab_size(), "encode gave an id out of range");
  SEQGEN_FUZZ_EXPECT(tok.decode(ids) == text, "decode(encode(text)) != text");
  // Streamed token by token: the same bytes, never ending inside a character that can complete.
  Utf8Stream stream;
  std::string shown;
  for (Token id : ids) {
    const std::string_view out = stream.feed(tok.decode_token(id));
    shown.append(out.data(), out.size());
    SEQGEN_FUZZ_EXPECT(!Utf8Stream::cuts_character(text, shown.size()), "a stream showed half a character");
  }
  shown += stream.flush();
  SEQGEN_FUZZ_EXPECT(shown == text, "the streamed text differs");
  // The heap and the rescan on every piece.
  const BpeVocab& v = *tok.bpe_vocab();
  std::vector<Token> a, b;
  std::size_t total = 0;
  Pretokenizer(v.split()).each_piece(text, [&](std::string_view piece) {
    SEQGEN_FUZZ_EXPECT(!piece.empty() && piece.data() == text.data() + total, "the pieces do not tile the text");
    total += piece.size();
    if (piece.size() > 512) return;  // the rescan is quadratic
    v.merge_piece(piece, a, false);
    v.merge_piece(piece, b, true);
    SEQGEN_FUZZ_EXPECT(a == b, "the heap and the rescan merge a piece differently");
  });
  SEQGEN_FUZZ_EXPECT(total == text.size(), "the pieces do not cover the text");
}

inline int fuzz_bpe(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const unsigned mode = in.u8() % 5;
  try {
    if (mode == 0) {
      check_bpe_text(fixed_bpe(), in.rest());
    } else if (mode == 1) {
      const std::string_view json = in.sized16(), merges = in.rest();
      const Tokenizer tok = Tokenizer::bpe(gpt2::vocab_from_strings(json, merges));
      check_bpe_text(tok, json.substr(0, 300));
      SEQGEN_FUZZ_EXPECT(Tokenizer::from_bytes(tok.to_bytes()) == tok, "a GPT-2 vocabulary does not round-trip");
    } else if (mode == 2) {
      const LlmcTokenizer t = LlmcTokenizer::from_bytes(in.rest(), "tokenizer.bin");
      SEQGEN_FUZZ_EXPECT(t.eot >= 0 && std::size_t(t.eot) < t.tokens.size(), "eot out of range");
      const LlmcTokenizer back = LlmcTokenizer::from_bytes(t.to_bytes(), "tokenizer.bin");
      SEQGEN_FUZZ_EXPECT(back.tokens == t.tokens && back.eot == t.eot, "tokenizer.bin does not round-trip");
      // Its merges rebuilt from the tokens' order (LlmcTokenizer::to_vocab) encode any text.
      check_bpe_text(Tokenizer::bpe(t.to_vocab("tokenizer.bin")), "To be, or not to be: 1234 caf\xc3\xa9 \xff");
    } else if (mode == 3) {
      BpeTrainOptions o;
      o.vocab_size = 256 + in.u16() % 512;
      o.split = in.u8() % 2 ? PreSplit::none : PreSplit::gpt2;
      const std::string_view text = in.rest();
      const Tokenizer tok = Tokenizer::bpe(train_bpe(text, o));
      SEQGEN_FUZZ_EXPECT(tok.vocab_size() <= o.vocab_size, "train_bpe made too many tokens");
      check_bpe_text(tok, text);
      if (text.size() % 16 == 5)
        SEQGEN_FUZZ_EXPECT(Tokenizer::bpe(train_bpe(text, o)) == tok, "train_bpe is not deterministic");
    } else {
      const Tokenizer tok = Tokenizer::from_bytes(in.rest());
      if (tok.kind() == Tokenizer::Kind::bpe) check_bpe_text(tok, "Hello, world! \xFF\xC3 café");
    }
  } catch (const seqgen::Error&) {
  }
  return 0;
}

inline std::vector<Seed> bpe_seeds() {
  const auto with_mode = [](unsigned mode, const std::string& rest) { return std::string(1, char(mode)) + rest; };
  // A small GPT-2-style vocabulary: the 256 byte characters, "Ġt" "he" "Ġthe" and <|endoftext|>.
  std::string json = "{";
  for (unsigned b = 0; b < 256; ++b) {
    std::string s;
    utf8::append(s, gpt2::byte_to_unicode()[b]);
    if (s == "\"" || s == "\\") s = "\\" + s;
    json += "\"" + s + "\":" + std::to_string(b) + ",";
  }
  json += "\"\xC4\xA0t\":256,\"he\":257,\"\xC4\xA0the\":258,\"<|endoftext|>\":259}";
  const std::string merges = "#version: 0.2\n\xC4\xA0 t\nh e\n\xC4\xA0t he\n";
  std::string gpt2_input;
  put_sized16(gpt2_input, json);
  gpt2_input += merges;
  const Tokenizer tiny = Tokenizer::bpe(gpt2::vocab_from_strings(json, merges));
  std::string learn;
  put_u16(learn, 100);
  put_u8(learn, 0);
  learn += "the cat sat on the mat; the cat ate the rat. \xFF\xFE 12 12 12";
  return {{"text", with_mode(0, "To be, or not to be: \xF0\x9F\x98\x80 \xE6\x97 \xFF   spaces\n\n'tis 2024")},
          {"gpt2_files", with_mode(1, gpt2_input)},
          {"llmc_tokenizer", with_mode(2, LlmcTokenizer::from(tiny, 259).to_bytes())},
          {"train", with_mode(3, learn)},
          {"blob", with_mode(4, fixed_bpe().to_bytes())}};
}

inline const bool registered_bpe = register_target({"bpe", fuzz_bpe, bpe_seeds, 12000});

}  // namespace seqgen_fuzz
