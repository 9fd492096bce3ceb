// Learning a byte-level BPE vocabulary from a text (Sennrich et al. 2016, "Neural Machine
// Translation of Rare Words with Subword Units", at the byte level as GPT-2 does).
//
//   words    the text's pieces (pretokenize.hpp), deduplicated: each distinct piece once, with
//            its count c_w, as a sequence of symbols (initially its bytes; token id = byte value)
//   pairs    count(a, b) = Σ_w c_w · (occurrences of the adjacent pair a b in w)
//   repeat   take the pair of highest count (ties: the smallest left id, then the smallest right
//            id, so the result is the same on every machine); it becomes token 256 + m;
//            rewrite only the words that contain it and update the counts of their pairs
//   until    V - 256 merges are made, or no pair occurs at least min_count times
//
// The counts live in a hash map kept up to date as merges are applied, and a max-heap holds
// (count, pair) entries; an entry whose count has changed since it was pushed is refreshed when it
// reaches the top (lazy deletion). Each pair keeps the list of words it occurs in, so a merge
// touches only those words, never the whole corpus.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/tensor.hpp"
#include "seqgen/data/bpe.hpp"
#include "seqgen/data/pretokenize.hpp"

namespace seqgen {

struct BpeTrainOptions {
  Index vocab_size = 4096;         // 256 byte tokens + at most vocab_size - 256 merges
  PreSplit split = PreSplit::gpt2;
  std::int64_t min_count = 2;      // a pair seen fewer times is never merged

  void validate() const {
    check<ConfigError>(vocab_size >= 256 && vocab_size <= BpeVocab::max_vocab, "train_bpe: vocab_size ", vocab_size,
                       " is not in [256, ", BpeVocab::max_vocab, "] (256 byte tokens, ids stored in 16 bits)");
    check<ConfigError>(min_count >= 1, "train_bpe: min_count must be at least 1, got ", min_count);
  }
};

// The vocabulary learned from `text`. It has fewer than options.vocab_size tokens when the text
// runs out of pairs seen min_count times.
inline BpeVocab train_bpe(std::string_view text, const BpeTrainOptions& options = {}) {
  options.validate();
  using Pair = std::uint64_t;  // left << 32 | right
  const auto pair_of = [](Token a, Token b) {
    return (Pair(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
  };
  const auto left_of = [](Pair p) { return static_cast<Token>(p >> 32); };
  const auto right_of = [](Pair p) { return static_cast<Token>(p & 0xFFFFFFFFu); };

  // Distinct pieces and their counts.
  std::unordered_map<std::string_view, std::int64_t> piece_counts;
  Pretokenizer(options.split).each_piece(text, [&](std::string_view piece) { ++piece_counts[piece]; });
  std::vector<std::vector<Token>> words;
  std::vector<std::int64_t> counts;
  words.reserve(piece_counts.size());
  counts.reserve(piece_counts.size());
  for (const auto& [piece, c] : piece_counts) {
    if (piece.size() < 2) continue;  // no pair inside
    words.emplace_back(piece.begin(), piece.end());
    for (Token& t : words.back()) t = static_cast<unsigned char>(t);  // char may be signed
    counts.push_back(c);
  }
  piece_counts = {};

  std::unordered_map<Pair, std::int64_t> pair_count;
  std::unordered_map<Pair, std::vector<std::uint32_t>> where;  // words holding the pair (may repeat or be stale)
  for (std::size_t w = 0; w < words.size(); ++w)
    for (std::size_t i = 0; i + 1 < words[w].size(); ++i) {
      const Pair p = pair_of(words[w][i], words[w][i + 1]);
      pair_count[p] += counts[w];
      auto& list = where[p];
      if (list.empty() || list.back() != w) list.push_back(static_cast<std::uint32_t>(w));
    }

  struct Entry {
    std::int64_t count;
    Pair pair;
    // The top is the highest count, then the smallest pair (left id first).
    bool operator<(const Entry& o) const { return count != o.count ? count < o.count : pair > o.pair; }
  };
  std::priority_queue<Entry> heap;
  for (const auto& [p, c] : pair_count)
    if (c >= options.min_count) heap.push({c, p});

  std::vector<std::size_t> length(256, 1);  // bytes of each token so far
  std::vector<BpeMerge> merges;
  const auto max_merges = static_cast<std::size_t>(options.vocab_size - 256);
  std::vector<std::uint32_t> last_visit(words.size(), 0xFFFFFFFFu);
  std::vector<Token> rewritten;
  std::vector<Pair> touched;
  while (merges.size() < max_merges && !heap.empty()) {
    const Entry top = heap.top();
    heap.pop();
    const auto found = pair_count.find(top.pair);
    const std::int64_t now = found == pair_count.end() ? 0 : found->second;
    if (now != top.count) {  // stale: refresh
      if (now >= options.min_count) heap.push({now, top.pair});
      continue;
    }
    const Token a = left_of(top.pair), b = right_of(top.pair);
    const std::size_t merged_length = length[static_cast<std::size_t>(a)] + length[static_cast<std::size_t>(b)];
    if (merged_length > BpeVocab::max_token_bytes) continue;  // never merged (a run of many thousand equal bytes)
    const auto m = static_cast<std::uint32_t>(merges.size());
    const Token x = static_cast<Token>(256 + m);
    merges.push_back({a, b, x});
    length.push_back(merged_length);

    touched.clear();
    std::vector<std::uint32_t> holders;
    holders.swap(where[top.pair]);
    for (const std::uint32_t w : holders) {
      if (last_visit[w] == m) continue;
      last_visit[w] = m;
      std::vector<Token>& word = words[w];
      const std::int64_t c = counts[w];
      rewritten.clear();
      bool any = false;
      for (std::size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == a && word[i + 1] == b) {
          rewritten.push_back(x);
          i += 2;
          any = true;
        } else {
          rewritten.push_back(word[i++]);
        }
      }
      if (!any) continue;  // a stale entry of the list
      for (std::size_t i = 0; i + 1 < word.size(); ++i) pair_count[pair_of(word[i], word[i + 1])] -= c;
      for (std::size_t i = 0; i + 1 < rewritten.size(); ++i) {
        const Pair p = pair_of(rewritten[i], rewritten[i + 1]);
        pair_count[p] += c;
        if (rewritten[i] == x || rewritten[i + 1] == x) {
          where[p].push_back(w);
          touched.push_back(p);
        }
      }
      word.swap(rewritten);
    }
    pair_count.erase(top.pair);
    where.erase(top.pair);
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (const Pair p : touched) {
      const std::int64_t c = pair_count[p];
      if (c >= options.min_count) heap.push({c, p});
    }
  }

  std::array<Token, 256> byte_ids{};
  for (std::size_t i = 0; i < 256; ++i) byte_ids[i] = static_cast<Token>(i);
  const auto V = static_cast<Index>(256 + merges.size());
  return BpeVocab(V, byte_ids, std::move(merges), {}, options.split, "train_bpe");
}

}  // namespace seqgen
