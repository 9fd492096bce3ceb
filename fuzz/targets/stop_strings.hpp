// Target `stop_strings`: StopStrings::feed, take, flush on a text cut whole, byte by byte and in
// random pieces. Each way must give the stop and the text of a brute-force matcher
// (ref_first_stop), and never print bytes that a later piece turns into a stop string.
// Input: [u8 count (0..4)] [count x sized8 stop string] [u32 cut seed] [rest: the text]
#pragma once

#include "../harness.hpp"

namespace seqgen_fuzz {

// Brute force: the first end position at which some stop string is complete; for equal ends the
// longest, for equal strings the lowest index. Returns the index, or -1; `start` is its start.
inline Index ref_first_stop(const std::vector<std::string>& stops, const std::string& text, std::size_t& start) {
  for (std::size_t end = 1; end <= text.size(); ++end) {
    Index best = -1;
    for (std::size_t i = 0; i < stops.size(); ++i) {
      const std::string& s = stops[i];
      if (s.size() <= end && text.compare(end - s.size(), s.size(), s) == 0 &&
          (best < 0 || s.size() > stops[std::size_t(best)].size())) {
        best = Index(i);
      }
    }
    if (best >= 0) {
      start = end - stops[std::size_t(best)].size();
      return best;
    }
  }
  return -1;
}

inline int fuzz_stop_strings(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  std::vector<std::string> stops(in.u8() % 5);
  for (std::string& s : stops) s = std::string(in.sized8());
  std::uint32_t cut_seed = in.u32();
  const std::string text(in.rest());
  try {
    StopStrings probe(stops);
  } catch (const ConfigError&) {
    bool any_empty = false;
    for (const std::string& s : stops) any_empty |= s.empty();
    SEQGEN_FUZZ_EXPECT(any_empty, "StopStrings refused non-empty stop strings");
    return 0;
  }
  std::size_t start = 0;
  const Index want = ref_first_stop(stops, text, start);
  const std::string want_text = want >= 0 ? text.substr(0, start) : text;
  // Three ways to cut the text: whole, byte by byte, and pieces of 0..7 bytes from the seed.
  for (int way = 0; way < 3; ++way) {
    StopStrings ss(stops);
    std::string printed;
    bool stopped = false;
    for (std::size_t pos = 0; pos <= text.size() && !stopped;) {
      std::size_t len = text.size() - pos;
      if (way == 1) len = std::min<std::size_t>(1, len);
      if (way == 2) {
        cut_seed = cut_seed * 1103515245u + 12345u;
        len = std::min<std::size_t>(cut_seed >> 16 & 7, len);
      }
      stopped = ss.feed(std::string_view(text).substr(pos, len));
      printed += ss.take();
      // Streaming never prints what a later piece could turn into (part of) a stop string.
      SEQGEN_FUZZ_EXPECT(want_text.compare(0, printed.size(), printed) == 0 && printed.size() <= want_text.size(),
                         "StopStrings printed text that is not a prefix of the final text");
      if (pos == text.size()) break;
      pos += len;
    }
    printed += ss.flush();
    SEQGEN_FUZZ_EXPECT(ss.stopped() == (want >= 0) && ss.matched() == want, "StopStrings matched the wrong stop");
    SEQGEN_FUZZ_EXPECT(ss.text() == want_text && printed == want_text, "StopStrings text");
    SEQGEN_FUZZ_EXPECT(ss.held() == 0, "StopStrings holds text after flush");
  }
  return 0;
}

inline std::vector<Seed> stop_strings_seeds() {
  const auto input = [](std::vector<std::string> stops, std::uint32_t seed, const std::string& text) {
    std::string in;
    put_u8(in, unsigned(stops.size()));
    for (const std::string& s : stops) put_sized8(in, s);
    put_u32(in, seed);
    return in + text;
  };
  return {{"two_stops", input({"\n\n", "User:"}, 1, "hello\nUse then User: hi\n\nbye")},
          {"overlapping", input({"aab", "ab", "b"}, 7, "aaaaab tail")},
          {"none", input({}, 3, "no stop strings at all")}};
}

inline const bool registered_stop_strings =
    register_target({"stop_strings", fuzz_stop_strings, stop_strings_seeds, 1024});

}  // namespace seqgen_fuzz
