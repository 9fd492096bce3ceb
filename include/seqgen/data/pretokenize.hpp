// Pre-tokenisation: the text is cut into pieces before byte-pair merges, and no merge ever crosses
// a piece boundary (GPT-2, llm.c, tiktoken). Two ways to cut:
//
//   none   the whole text is one piece
//   gpt2   GPT-2's pattern (OpenAI's encoder.py, and Encoder.js of the npm package gpt-3-encoder):
//            's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//          matched leftmost-first, as a regex engine scans: a word takes the one space before it,
//          and of a run of spaces before a word the last one is left to the word (the look-ahead
//          \s+(?!\S) stops one short of the next non-space).
//
// The Unicode classes \p{L} (letters) and \p{N} (numbers) and the matching come from PCRE2 (UTF
// and UCP mode, JIT-compiled when the platform allows). \s is ECMAScript's white space, as in the
// reference Encoder.js (a JavaScript /u regex): tab, LF, VT, FF, CR, U+FEFF, U+2028, U+2029 and
// the space separators \p{Zs}. (PCRE2's own \s would differ at U+0085, U+180E and U+FEFF.)
//
// Bytes that are not valid UTF-8 (the reference encoders never see them: they take Unicode
// strings) match nothing (PCRE2_MATCH_INVALID_UTF); each maximal run of them between matches is a
// piece of its own, so every byte of the text belongs to exactly one piece and the pieces, in
// order, are the text.
#pragma once

#ifndef PCRE2_CODE_UNIT_WIDTH
#define PCRE2_CODE_UNIT_WIDTH 8
#endif
#include <pcre2.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "seqgen/core/error.hpp"

namespace seqgen {

enum class PreSplit : std::uint32_t { none = 0, gpt2 = 1 };

inline const char* pre_split_name(PreSplit split) { return split == PreSplit::none ? "none" : "gpt2"; }

class Pretokenizer {
 public:
  // GPT-2's pattern with ECMAScript's \s written out (see the header comment).
  static constexpr const char* gpt2_pattern =
      "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\t\\n\\x{0B}\\f\\r\\x{FEFF}\\x{2028}\\x{2029}\\p{Zs}\\p{L}\\p{N}]+"
      "|[\\t\\n\\x{0B}\\f\\r\\x{FEFF}\\x{2028}\\x{2029}\\p{Zs}]+(?![^\\t\\n\\x{0B}\\f\\r\\x{FEFF}\\x{2028}\\x{2029}\\p{Zs}])"
      "|[\\t\\n\\x{0B}\\f\\r\\x{FEFF}\\x{2028}\\x{2029}\\p{Zs}]+";

  explicit Pretokenizer(PreSplit split = PreSplit::gpt2) : split_(split) {
    if (split == PreSplit::none) return;
    check<ConfigError>(split == PreSplit::gpt2, "Pretokenizer: unknown split ", static_cast<std::uint32_t>(split));
    // One compiled pattern for the whole process: compiling and JIT-compiling take about a millisecond.
    static const std::shared_ptr<const Compiled> gpt2 = std::make_shared<const Compiled>(gpt2_pattern);
    code_ = gpt2;
  }

  PreSplit split() const { return split_; }
  bool jit() const { return code_ && code_->jit; }

  // Calls emit(std::string_view piece) for each piece of `text`, in order. The pieces concatenate
  // to `text`. Allocates only PCRE2's match data (a few dozen bytes) per call.
  template <class Emit>
  void each_piece(std::string_view text, Emit&& emit) const {
    if (text.empty()) return;
    if (split_ == PreSplit::none) {
      emit(text);
      return;
    }
    const MatchData md(code_->code);
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    const std::size_t n = text.size();
    std::size_t pos = 0;  // the end of the last piece emitted
    while (pos < n) {
      const int rc = code_->jit ? pcre2_jit_match(code_->code, subject, n, pos, 0, md.data, nullptr)
                                : pcre2_match(code_->code, subject, n, pos, 0, md.data, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) {  // only invalid bytes remain
        emit(text.substr(pos));
        return;
      }
      if (rc <= 0)  // not check<>: it would build the message for every match
        throw FormatError(detail::cat("Pretokenizer: PCRE2 failed at byte offset ", pos, ": ", message(rc)));
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md.data);
      const std::size_t start = ov[0], end = ov[1];
      // Every valid character matches one alternative, so a match is never empty.
      check<FormatError>(end > start && start >= pos, "Pretokenizer: empty match at byte offset ", start);
      if (start > pos) emit(text.substr(pos, start - pos));  // a run of invalid UTF-8
      emit(text.substr(start, end - start));
      pos = end;
    }
  }

 private:
  struct Compiled {
    pcre2_code* code = nullptr;
    bool jit = false;
    explicit Compiled(const char* pattern) {
      int error = 0;
      PCRE2_SIZE offset = 0;
      code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                           PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
      check<ConfigError>(code != nullptr, "Pretokenizer: PCRE2 rejected the pattern at offset ", offset, ": ",
                         message(error));
      jit = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;  // without JIT (no JIT on this CPU): interpreted
    }
    ~Compiled() { pcre2_code_free(code); }
    Compiled(const Compiled&) = delete;
    Compiled& operator=(const Compiled&) = delete;
  };

  struct MatchData {
    pcre2_match_data* data;
    explicit MatchData(const pcre2_code* code) : data(pcre2_match_data_create_from_pattern(code, nullptr)) {
      if (!data) throw std::bad_alloc();
    }
    ~MatchData() { pcre2_match_data_free(data); }
    MatchData(const MatchData&) = delete;
    MatchData& operator=(const MatchData&) = delete;
  };

  static std::string message(int code) {
    PCRE2_UCHAR buf[256];
    const int len = pcre2_get_error_message(code, buf, sizeof buf);
    return len > 0 ? std::string(reinterpret_cast<const char*>(buf), static_cast<std::size_t>(len))
                   : "error " + std::to_string(code);
  }

  PreSplit split_;
  std::shared_ptr<const Compiled> code_;
};

}  // namespace seqgen
