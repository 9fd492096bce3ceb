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
// reaches the top (lazy deletion). The words' symbols are linked lists and each pair keeps the
// positions where it occurs, so a merge touches only its own occurrences and their two
// neighbours: O(occurrences) per merge, never the whole corpus, and no word is rewritten (a text
// without pre-tokenisation is one long word).
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
  // The distinct words, laid end to end as one list of symbol nodes: node i holds sym[i], belongs
  // to word word_of[i], and links to its neighbours in the word (-1 at the ends). Node indices
  // never change, so within a word they increase from left to right.
  std::vector<Token> sym;
  std::vector<std::int32_t> prev, next;
  std::vector<std::uint32_t> word_of;
  std::vector<std::int64_t> counts;  // of each word
  for (const auto& [piece, c] : piece_counts) {
    if (piece.size() < 2) continue;  // no pair inside
    check<ConfigError>(sym.size() + piece.size() < 0x7FFFFFFFu, "train_bpe: the text has more than 2^31 bytes in "
                                                                "distinct pieces; learn from a sample of it");
    const auto w = static_cast<std::uint32_t>(counts.size());
    counts.push_back(c);
    const auto first = static_cast<std::int32_t>(sym.size());
    for (std::size_t k = 0; k < piece.size(); ++k) {
      sym.push_back(static_cast<unsigned char>(piece[k]));
      prev.push_back(k == 0 ? -1 : first + static_cast<std::int32_t>(k) - 1);
      next.push_back(k + 1 == piece.size() ? -1 : first + static_cast<std::int32_t>(k) + 1);
      word_of.push_back(w);
    }
  }
  piece_counts = {};

  // Pair counts, and the nodes where each pair starts (may hold stale entries: checked when used).
  std::unordered_map<Pair, std::int64_t> pair_count;
  std::unordered_map<Pair, std::vector<std::int32_t>> where;
  for (std::size_t i = 0; i < sym.size(); ++i) {
    if (next[i] < 0) continue;
    const Pair p = pair_of(sym[i], sym[static_cast<std::size_t>(next[i])]);
    pair_count[p] += counts[word_of[i]];
    where[p].push_back(static_cast<std::int32_t>(i));
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
  std::vector<Pair> touched;
  std::vector<std::int32_t> at;
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
    const Token x = static_cast<Token>(256 + merges.size());
    merges.push_back({a, b, x});
    length.push_back(merged_length);

    // Every occurrence, left to right within each word, so overlapping ones ("a a a") merge as
    // encoding would: the first of them.
    at.clear();
    at.swap(where[top.pair]);
    where.erase(top.pair);
    std::sort(at.begin(), at.end());
    touched.clear();
    const auto add = [&](Pair p, std::int64_t c, std::int32_t node, bool grew) {
      pair_count[p] += c;
      if (grew) {
        where[p].push_back(node);
        touched.push_back(p);
      }
    };
    for (const std::int32_t i : at) {
      const std::int32_t j = next[static_cast<std::size_t>(i)];
      if (sym[static_cast<std::size_t>(i)] != a || j < 0 || sym[static_cast<std::size_t>(j)] != b) continue;  // stale
      const std::int64_t c = counts[word_of[static_cast<std::size_t>(i)]];
      const std::int32_t before = prev[static_cast<std::size_t>(i)], after = next[static_cast<std::size_t>(j)];
      // (before, a) and (b, after) give way to (before, x) and (x, after).
      if (before >= 0) {
        const Token t = sym[static_cast<std::size_t>(before)];
        add(pair_of(t, a), -c, before, false);
        add(pair_of(t, x), c, before, true);
      }
      if (after >= 0) {
        const Token t = sym[static_cast<std::size_t>(after)];
        add(pair_of(b, t), -c, j, false);
        add(pair_of(x, t), c, i, true);
      }
      pair_count[top.pair] -= c;
      sym[static_cast<std::size_t>(i)] = x;
      sym[static_cast<std::size_t>(j)] = -1;  // gone
      next[static_cast<std::size_t>(i)] = after;
      if (after >= 0) prev[static_cast<std::size_t>(after)] = i;
    }
    pair_count.erase(top.pair);
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
