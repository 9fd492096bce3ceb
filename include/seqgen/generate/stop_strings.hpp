// Stop strings for streamed text: generation ends when any of them appears, and none of it is printed.
//
// A generator produces text piece by piece (one token's text at a time). A stop string may arrive
// split over several pieces ("EN" then "D"), so a streaming caller must not print a tail of the text
// that could still become the start of a stop string. StopStrings keeps that tail back:
//
//   text      everything fed so far, cut just before the stop string once one has appeared
//   held      the longest tail of the text that is a proper prefix of some stop string
//   safe      text minus held (or, after a stop, the text up to the stop string)
//
//   StopStrings stops({"\n\n", "User:"});
//   for (each new token) {
//     const bool stop = stops.feed(piece);
//     print(stops.take());             // the newly safe text, maybe empty
//     if (stop) break;
//   }
//   print(stops.flush());              // whatever was held back, when generation ends without a stop
//
// Which stop counts: the one that is completed first, as if the text arrived one byte at a time
// (earliest end; for equal ends, the longest). So the result never depends on how the text was cut
// into pieces. Matching is on bytes; a held tail begins where a stop string begins, so it never
// splits a UTF-8 character that the stop string itself does not split.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/tensor.hpp"

namespace seqgen {

class StopStrings {
 public:
  StopStrings() = default;
  explicit StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) { validate(stops_, "StopStrings"); }

  // Every stop string must be non-empty (an empty one would stop before the first character).
  static void validate(const std::vector<std::string>& stops, const char* who) {
    for (std::size_t i = 0; i < stops.size(); ++i)
      check<ConfigError>(!stops[i].empty(), who, ": stop string ", i, " is empty");
  }

  // Appends the next piece of text. Returns true once a stop string has appeared (in this piece or
  // before); pieces fed after that are ignored.
  bool feed(std::string_view piece) {
    if (stopped()) return true;
    const std::size_t old_size = text_.size();
    text_.append(piece.data(), piece.size());
    // A new match must end inside the new piece, so it starts at most |s| - 1 bytes before it.
    std::size_t best_end = std::string::npos, best_start = 0;
    for (std::size_t i = 0; i < stops_.size(); ++i) {
      const std::string& s = stops_[i];
      const std::size_t from = old_size + 1 > s.size() ? old_size + 1 - s.size() : 0;
      const std::size_t pos = text_.find(s, from);
      if (pos == std::string::npos) continue;
      const std::size_t end = pos + s.size();
      if (end < best_end || (end == best_end && pos < best_start)) {
        best_end = end;
        best_start = pos;
        matched_ = Index(i);
      }
    }
    if (stopped()) {
      text_.resize(best_start);
      safe_ = best_start;  // never below printed_: the match's start was held back (see the header comment)
    } else {
      safe_ = std::max(safe_, text_.size() - held_size());
    }
    return stopped();
  }

  // The text that became safe to print since the last take() or flush(). The view points into this
  // object and is valid until the next feed().
  std::string_view take() {
    const std::string_view out(text_.data() + printed_, safe_ - printed_);
    printed_ = safe_;
    return out;
  }

  // Ends the stream: releases the held-back tail (nothing, after a stop) with anything not yet taken.
  std::string_view flush() {
    safe_ = text_.size();
    return take();
  }

  bool stopped() const { return matched_ >= 0; }
  // Index of the stop string that appeared, or -1.
  Index matched() const { return matched_; }
  // Everything fed so far, without the stop string and whatever followed it.
  const std::string& text() const { return text_; }
  // Bytes of text kept back because they might begin a stop string (0 after a stop).
  Index held() const { return Index(text_.size() - safe_); }
  const std::vector<std::string>& stops() const { return stops_; }

  // Starts a new text with the same stop strings.
  void reset() {
    text_.clear();
    printed_ = safe_ = 0;
    matched_ = -1;
  }

 private:
  // Length of the longest tail of text_ that is a proper prefix of some stop string.
  std::size_t held_size() const {
    std::size_t held = 0;
    for (const std::string& s : stops_) {
      for (std::size_t k = std::min(s.size() - 1, text_.size()); k > held; --k) {
        if (text_.compare(text_.size() - k, k, s, 0, k) == 0) {
          held = k;
          break;
        }
      }
    }
    return held;
  }

  std::vector<std::string> stops_;
  std::string text_;
  std::size_t printed_ = 0;  // text_[0, printed_) has been returned by take()
  std::size_t safe_ = 0;     // text_[0, safe_) can be printed
  Index matched_ = -1;
};

}  // namespace seqgen
