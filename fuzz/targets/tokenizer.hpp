// Target `tokenizer`: Tokenizer::from_bytes, characters, decode, decode_token, encode.
// to_bytes(from_bytes(b)) == b; encode(decode(ids)) == ids; decode(encode(s)) == s; characters(s)
// equals the vocabulary built by the reference decoder (characters_of).
// Input: [sized16 serialized tokenizer] [sized16 ids, 2 bytes each, signed] [rest: text]
#pragma once

#include "../tiny_models.hpp"
#include "../utf8_reference.hpp"

namespace seqgen_fuzz {

// Decoding `ids` with `tok`: the whole sequence, token by token, and back through encode.
inline void check_decode(const Tokenizer& tok, const std::vector<Token>& ids) {
  std::string whole;
  try {
    whole = tok.decode(ids);
  } catch (const IndexError&) {
    bool any_bad = false;
    for (Token id : ids) any_bad |= id < 0 || id >= tok.vocab_size();
    SEQGEN_FUZZ_EXPECT(any_bad, "decode refused ids that are all in range");
    return;
  }
  std::string pieces;
  for (Token id : ids) pieces += tok.decode_token(id);
  SEQGEN_FUZZ_EXPECT(pieces == whole, "decode differs from decode_token piece by piece");
  if (tok.kind() == Tokenizer::Kind::characters) {
    std::u32string cps;
    SEQGEN_FUZZ_EXPECT(ref_utf8(whole, cps), "decode gave ill-formed UTF-8");
  }
  // A BPE text has many tokenizations; encode picks the merged one, so only bytes and characters
  // come back as the same ids.
  if (tok.kind() != Tokenizer::Kind::bpe) SEQGEN_FUZZ_EXPECT(tok.encode(whole) == ids, "encode(decode(ids)) != ids");
}

inline void check_encode(const Tokenizer& tok, std::string_view text) {
  std::vector<Token> ids;
  try {
    ids = tok.encode(text);
  } catch (const FormatError&) {
    std::u32string cps;
    SEQGEN_FUZZ_EXPECT(tok.kind() == Tokenizer::Kind::characters && !ref_utf8(text, cps),
                       "encode refused well-formed text as ill-formed");
    return;
  } catch (const IndexError&) {
    SEQGEN_FUZZ_EXPECT(tok.kind() == Tokenizer::Kind::characters, "a bytes or bpe tokenizer refused a byte");
    return;
  }
  for (Token id : ids) SEQGEN_FUZZ_EXPECT(id >= 0 && id < tok.vocab_size(), "encode gave an id out of range");
  SEQGEN_FUZZ_EXPECT(tok.decode(ids) == text, "decode(encode(text)) != text");
}

inline int fuzz_tokenizer(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const std::string_view blob = in.sized16(), id_bytes = in.sized16(), text = in.rest();
  std::vector<Token> ids;
  for (std::size_t i = 0; i + 2 <= id_bytes.size(); i += 2)
    ids.push_back(static_cast<std::int16_t>(ref_le(id_bytes, i, 2)));

  std::vector<Tokenizer> toks = {Tokenizer::bytes()};
  try {
    toks.push_back(Tokenizer::from_bytes(blob));
    // A version 1 blob comes back as version 2 (bytes 4..7), the rest unchanged.
    std::string current(blob);
    current[4] = char(Tokenizer::format_version), current[5] = current[6] = current[7] = 0;
    SEQGEN_FUZZ_EXPECT(toks.back().to_bytes() == current, "Tokenizer::to_bytes(from_bytes(blob)) != blob");
    SEQGEN_FUZZ_EXPECT(Tokenizer::from_bytes(toks.back().to_bytes()) == toks.back(), "tokenizer round trip");
  } catch (const FormatError&) {
  }
  std::u32string cps;
  const bool well_formed = ref_utf8(text, cps);
  try {
    const Tokenizer chars = characters_of(text);
    SEQGEN_FUZZ_EXPECT(well_formed && !text.empty(), "a vocabulary from ill-formed or empty text");
    SEQGEN_FUZZ_EXPECT(chars.encode(text).size() == cps.size(), "characters cannot encode its corpus");
    // Tokenizer::characters scans every code point (slow under the sanitizers): one input in 64.
    if (text.size() % 64 == 3)
      SEQGEN_FUZZ_EXPECT(Tokenizer::characters(text) == chars, "Tokenizer::characters differs from the reference");
    toks.push_back(chars);
  } catch (const FormatError&) {  // ill-formed UTF-8, or more distinct characters than ids
  } catch (const ConfigError&) {  // empty text
  }
  for (const Tokenizer& tok : toks) {
    check_decode(tok, ids);
    check_encode(tok, text);
  }
  return 0;
}

inline std::vector<Seed> tokenizer_seeds() {
  const auto input = [](const Tokenizer& tok, std::vector<int> ids, const std::string& text) {
    std::string in;
    put_sized16(in, tok.to_bytes());
    std::string id_bytes;
    for (int id : ids) put_u16(id_bytes, unsigned(id) & 0xFFFF);
    put_sized16(in, id_bytes);
    return in + text;
  };
  return {{"characters", input(fixed_tokenizer(), {0, 1, 2, 3, 15, 16}, "to be, or")},
          {"bytes", input(Tokenizer::bytes(), {0, 255, 256, -1}, "b\xFFytes")},
          {"unicode", input(Tokenizer::characters(unicode_sample()), {5, 9, 12}, unicode_sample())}};
}

inline const bool registered_tokenizer = register_target({"tokenizer", fuzz_tokenizer, tokenizer_seeds, 4096});

}  // namespace seqgen_fuzz
