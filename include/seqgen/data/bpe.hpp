// Byte-level BPE: a vocabulary of byte strings and the rank-ordered merge procedure of GPT-2.
//
//   tokens   V byte strings: the 256 single bytes, one per merge (the concatenation of its two
//            parts), and special tokens (say "<|endoftext|>") that encoding never produces
//   merges   M pairs (left, right) -> result, in rank order (rank 0 first)
//
// Encoding: the text is cut into pieces (pretokenize.hpp); each piece starts as its bytes' tokens,
// and then, as in OpenAI's encoder.py,
//   repeat: among the adjacent pairs, take the one of lowest rank; replace all its occurrences,
//           left to right and without overlap, by the merge's result; until no pair has a rank.
// Decoding concatenates the tokens' bytes, so decode(encode(x)) == x for every byte string x,
// valid UTF-8 or not, NUL included.
//
// Short pieces (almost all of them) are merged by rescanning the word; a long piece (a run of
// thousands of spaces) by a heap of its pairs, ordered by (rank, position), popping all the
// occurrences of one rank together so the result is the same as the rescan. Encoding keeps a
// per-call cache of the pieces it has seen (prose repeats its words), as encoder.py does.
//
// A vocabulary read from outside (a checkpoint, GPT-2's files) is checked whole by the constructor:
// every id defined, each merge's parts made before it, lengths bounded. See tokenizer.hpp for the
// serialized form and gpt2_vocab.hpp for GPT-2's files.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/tensor.hpp"
#include "seqgen/data/pretokenize.hpp"

namespace seqgen {

struct BpeMerge {
  Token left = 0, right = 0;  // the pair, in text order
  Token result = 0;           // the token it becomes
};

// A special token: its id and its bytes (decoding only; never produced by encoding).
struct BpeSpecial {
  Token id = 0;
  std::string bytes;
};

class BpeVocab {
 public:
  // Ids are stored in 16 bits by TokenDataset.
  static constexpr Index max_vocab = 65536;
  // No token may be longer (a hostile file could double a length with every merge).
  static constexpr std::size_t max_token_bytes = 1 << 16;
  // The bytes of all tokens together.
  static constexpr std::uint64_t max_total_bytes = std::uint64_t(1) << 28;

  // Checks everything; `source` names the origin in the messages ("Tokenizer::from_bytes",
  // "encoder.json 'path'"). Throws FormatError.
  BpeVocab(Index vocab_size, const std::array<Token, 256>& byte_ids, std::vector<BpeMerge> merges,
           std::vector<BpeSpecial> specials, PreSplit split, const std::string& source)
      : split_(split), byte_ids_(byte_ids), merges_(std::move(merges)), specials_(std::move(specials)) {
    const std::string& what = source;
    check<FormatError>(vocab_size >= 256 && vocab_size <= max_vocab, what, ": vocabulary size ", vocab_size,
                       " is not in [256, ", max_vocab, "]");
    check<FormatError>(split == PreSplit::none || split == PreSplit::gpt2, what, ": unknown pre-split ",
                       static_cast<std::uint32_t>(split), ", expected 0 (none) or 1 (gpt2)");
    const auto V = static_cast<std::size_t>(vocab_size);
    check<FormatError>(merges_.size() + 256 <= V, what, ": ", merges_.size(), " merges need at least ",
                       merges_.size() + 256, " tokens, the vocabulary has ", V);
    check<FormatError>(specials_.size() <= V, what, ": ", specials_.size(), " special tokens in a vocabulary of ", V);
    // Lengths first (as numbers), so no string is built for a vocabulary that would be too large.
    std::vector<std::uint64_t> length(V, 0);  // 0: not defined yet
    const auto check_id = [&](Token id, const char* role, std::size_t index) {
      if (id < 0 || static_cast<std::size_t>(id) >= V)
        throw FormatError(detail::cat(what, ": ", role, " ", index, " names token id ", id,
                                      ", outside the vocabulary [0, ", V, ")"));
    };
    for (std::size_t b = 0; b < 256; ++b) {
      check_id(byte_ids_[b], "byte", b);
      if (length[static_cast<std::size_t>(byte_ids_[b])] != 0)
        throw FormatError(detail::cat(what, ": byte ", b, " and an earlier byte are both token ", byte_ids_[b]));
      length[static_cast<std::size_t>(byte_ids_[b])] = 1;
    }
    std::uint64_t total = 256;
    for (std::size_t r = 0; r < merges_.size(); ++r) {
      const BpeMerge& m = merges_[r];
      check_id(m.left, "merge", r);
      check_id(m.right, "merge", r);
      check_id(m.result, "merge", r);
      const std::uint64_t a = length[static_cast<std::size_t>(m.left)], b = length[static_cast<std::size_t>(m.right)];
      if (a == 0 || b == 0)
        throw FormatError(detail::cat(what, ": merge ", r, " (", m.left, ", ", m.right, ") uses token ",
                                      a == 0 ? m.left : m.right,
                                      ", which is neither a byte nor the result of an earlier merge"));
      if (length[static_cast<std::size_t>(m.result)] != 0)
        throw FormatError(detail::cat(what, ": merge ", r, " makes token ", m.result, ", which is already defined"));
      if (a + b > max_token_bytes)
        throw FormatError(detail::cat(what, ": merge ", r, " makes a token of ", a + b, " bytes, at most ",
                                      max_token_bytes, " are allowed"));
      length[static_cast<std::size_t>(m.result)] = a + b;
      total += a + b;
    }
    for (std::size_t s = 0; s < specials_.size(); ++s) {
      check_id(specials_[s].id, "special token", s);
      const std::size_t n = specials_[s].bytes.size();
      check<FormatError>(n >= 1 && n <= max_token_bytes, what, ": special token ", s, " has ", n,
                         " bytes, expected 1 to ", max_token_bytes);
      if (length[static_cast<std::size_t>(specials_[s].id)] != 0)
        throw FormatError(detail::cat(what, ": special token ", s, " has id ", specials_[s].id,
                                      ", which is already defined"));
      length[static_cast<std::size_t>(specials_[s].id)] = n;
      total += n;
    }
    for (std::size_t id = 0; id < V; ++id)
      if (length[id] == 0)
        throw FormatError(detail::cat(what, ": token id ", id, " of ", V,
                                      " is defined by no byte, merge or special token"));
    check<FormatError>(total <= max_total_bytes, what, ": the tokens hold ", total, " bytes together, at most ",
                       max_total_bytes, " are allowed");

    // Offsets of each token's bytes in one buffer.
    offsets_.assign(V + 1, 0);
    for (std::size_t id = 0; id < V; ++id) offsets_[id + 1] = offsets_[id] + length[id];
    bytes_.resize(static_cast<std::size_t>(offsets_[V]));
    for (std::size_t b = 0; b < 256; ++b) bytes_[static_cast<std::size_t>(offsets_[byte_ids_[b]])] = static_cast<char>(b);
    for (const BpeMerge& m : merges_) {
      char* out = &bytes_[static_cast<std::size_t>(offsets_[m.result])];
      const std::string_view a = token(m.left), b = token(m.right);
      std::memcpy(out, a.data(), a.size());
      std::memcpy(out + a.size(), b.data(), b.size());
    }
    for (const BpeSpecial& s : specials_)
      std::memcpy(&bytes_[static_cast<std::size_t>(offsets_[s.id])], s.bytes.data(), s.bytes.size());

    // Each pair may be merged by one rule only (GPT-2's ranks are a map from pairs).
    ranks_.reserve(merges_.size());
    for (std::size_t r = 0; r < merges_.size(); ++r) {
      if (ranks_.find(merges_[r].left, merges_[r].right) != PairTable::none)
        throw FormatError(detail::cat(what, ": merge ", r, " (", merges_[r].left, ", ", merges_[r].right,
                                      ") repeats an earlier merge of the same pair"));
      ranks_.insert(merges_[r].left, merges_[r].right, static_cast<std::uint32_t>(r));
    }
  }

  Index vocab_size() const { return static_cast<Index>(offsets_.size() - 1); }
  PreSplit split() const { return split_; }
  const std::array<Token, 256>& byte_ids() const { return byte_ids_; }
  const std::vector<BpeMerge>& merges() const { return merges_; }
  const std::vector<BpeSpecial>& specials() const { return specials_; }

  // The bytes of a token; id must be in [0, V).
  std::string_view token(Token id) const {
    const auto i = static_cast<std::size_t>(id);
    return {bytes_.data() + offsets_[i], static_cast<std::size_t>(offsets_[i + 1] - offsets_[i])};
  }

  // The merge rank of a pair, or -1.
  std::int64_t rank(Token left, Token right) const {
    const std::uint32_t r = ranks_.find(left, right);
    return r == PairTable::none ? -1 : std::int64_t(r);
  }

  // Scratch buffers and the piece cache of one encoding call (or a series of them on one thread).
  class Workspace;

  // Calls emit(Token) for each token of `text`.
  template <class Emit>
  void encode_each(std::string_view text, Emit&& emit) const;
  template <class Emit>
  void encode_each(std::string_view text, Workspace& ws, Emit&& emit) const;

  // The tokens of one piece (no pre-tokenization), merged as the header says; ASSIGNS word.
  // `heap` chooses the algorithm (both give the same tokens; tests compare them).
  void merge_piece(std::string_view piece, std::vector<Token>& word, bool heap) const {
    word.resize(piece.size());
    for (std::size_t i = 0; i < piece.size(); ++i) word[i] = byte_ids_[static_cast<unsigned char>(piece[i])];
    if (word.size() < 2 || merges_.empty()) return;
    if (heap) merge_by_heap(word);
    else merge_by_rescan(word);
  }

  // Pieces up to this many bytes are merged by rescanning.
  static constexpr std::size_t rescan_limit = 48;

  friend bool operator==(const BpeVocab& a, const BpeVocab& b) {
    return a.split_ == b.split_ && a.byte_ids_ == b.byte_ids_ && a.offsets_ == b.offsets_ && a.bytes_ == b.bytes_ &&
           a.merges_.size() == b.merges_.size() &&
           std::equal(a.merges_.begin(), a.merges_.end(), b.merges_.begin(), [](const BpeMerge& x, const BpeMerge& y) {
             return x.left == y.left && x.right == y.right && x.result == y.result;
           });
  }

 private:
  // Open addressing from a pair (left, right) to a merge rank.
  class PairTable {
   public:
    static constexpr std::uint32_t none = 0xFFFFFFFFu;
    void reserve(std::size_t n) {
      std::size_t cap = 16;
      while (cap < 2 * n + 2) cap *= 2;
      keys_.assign(cap, empty_key);
      values_.assign(cap, none);
      mask_ = cap - 1;
    }
    void insert(Token a, Token b, std::uint32_t value) {
      const std::uint64_t key = pack(a, b);
      std::size_t i = slot(key);
      while (keys_[i] != empty_key && keys_[i] != key) i = (i + 1) & mask_;
      keys_[i] = key;
      values_[i] = value;
    }
    std::uint32_t find(Token a, Token b) const {
      if (keys_.empty()) return none;
      const std::uint64_t key = pack(a, b);
      for (std::size_t i = slot(key);; i = (i + 1) & mask_) {
        if (keys_[i] == key) return values_[i];
        if (keys_[i] == empty_key) return none;
      }
    }

   private:
    static constexpr std::uint64_t empty_key = ~std::uint64_t(0);
    static std::uint64_t pack(Token a, Token b) {
      return (std::uint64_t(static_cast<std::uint32_t>(a)) << 32) | static_cast<std::uint32_t>(b);
    }
    std::size_t slot(std::uint64_t key) const {
      return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> 32) & mask_;
    }
    std::vector<std::uint64_t> keys_;
    std::vector<std::uint32_t> values_;
    std::size_t mask_ = 0;
  };

  // encoder.py's loop, in place.
  void merge_by_rescan(std::vector<Token>& word) const {
    while (word.size() > 1) {
      std::uint32_t best = PairTable::none;
      for (std::size_t i = 0; i + 1 < word.size(); ++i) best = std::min(best, ranks_.find(word[i], word[i + 1]));
      if (best == PairTable::none) return;
      const BpeMerge& m = merges_[best];
      std::size_t out = 0;
      for (std::size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == m.left && word[i + 1] == m.right) {
          word[out++] = m.result;
          i += 2;
        } else {
          word[out++] = word[i++];
        }
      }
      word.resize(out);
    }
  }

  // The same result with a heap of (rank, position) over a linked list of symbols: O(n log n).
  void merge_by_heap(std::vector<Token>& word) const {
    const auto n = static_cast<std::int32_t>(word.size());
    std::vector<std::int32_t> prev(word.size()), next(word.size());
    for (std::int32_t i = 0; i < n; ++i) {
      prev[i] = i - 1;
      next[i] = i + 1 < n ? i + 1 : -1;
    }
    struct Entry {
      std::uint32_t rank;
      std::int32_t pos;  // the left symbol's index (positions keep their text order)
      bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
    };
    std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
    const auto push = [&](std::int32_t i) {
      if (i < 0 || next[i] < 0) return;
      const std::uint32_t r = ranks_.find(word[i], word[next[i]]);
      if (r != PairTable::none) heap.push({r, i});
    };
    for (std::int32_t i = 0; i + 1 < n; ++i) push(i);
    std::vector<bool> alive(word.size(), true);
    std::vector<std::int32_t> batch;
    while (!heap.empty()) {
      // All occurrences of the lowest-ranked pair, then merged left to right: encoder.py's one pass
      // over the word (a merge never makes another occurrence of its own pair; pairs it makes wait
      // for the next pass even when their rank is lower).
      const std::uint32_t r = heap.top().rank;
      const BpeMerge& m = merges_[r];
      batch.clear();
      while (!heap.empty() && heap.top().rank == r) {
        batch.push_back(heap.top().pos);
        heap.pop();
      }
      for (const std::int32_t i : batch) {
        if (!alive[i] || next[i] < 0 || word[i] != m.left || word[next[i]] != m.right) continue;  // stale
        const std::int32_t j = next[i];
        word[i] = m.result;
        alive[j] = false;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        push(prev[i]);
        push(i);
      }
    }
    std::size_t out = 0;
    for (std::int32_t i = 0; i >= 0 && i < n; i = next[i]) word[out++] = word[i];
    word.resize(out);
  }

  PreSplit split_;
  std::array<Token, 256> byte_ids_;
  std::vector<BpeMerge> merges_;
  std::vector<BpeSpecial> specials_;
  std::vector<std::uint64_t> offsets_;  // token id's bytes are bytes_[offsets_[id], offsets_[id + 1])
  std::string bytes_;
  PairTable ranks_;
};

// The piece cache: open addressing on a hash of the piece's bytes, pieces and their tokens kept in
// two flat buffers. Cleared when full, so its memory stays bounded on any text.
class BpeVocab::Workspace {
 public:
  // Cached pieces are at most this long; the cache holds at most max_entries pieces.
  static constexpr std::size_t max_piece = 64, max_entries = std::size_t(1) << 18;

  const Token* find(std::string_view piece, std::uint64_t h, std::size_t& count) const {
    if (slots_.empty()) return nullptr;
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key_len == 0) return nullptr;
      if (s.hash == h && s.key_len == piece.size() &&
          std::memcmp(keys_.data() + s.key_at, piece.data(), piece.size()) == 0) {
        count = s.ids_len;
        return ids_.data() + s.ids_at;
      }
    }
  }

  void insert(std::string_view piece, std::uint64_t h, const std::vector<Token>& word) {
    if (entries_ + 1 > slots_.size() / 2) grow();
    std::size_t i = h & mask_;
    while (slots_[i].key_len != 0) i = (i + 1) & mask_;
    slots_[i] = {h, static_cast<std::uint32_t>(keys_.size()), static_cast<std::uint32_t>(piece.size()),
                 static_cast<std::uint32_t>(ids_.size()), static_cast<std::uint32_t>(word.size())};
    keys_.append(piece.data(), piece.size());
    ids_.insert(ids_.end(), word.begin(), word.end());
    ++entries_;
  }

  static std::uint64_t hash(std::string_view s) {  // FNV-1a
    std::uint64_t h = 1469598103934665603ull;
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return h ^ (h >> 29);
  }

  std::vector<Token> word;  // scratch for one piece

 private:
  struct Slot {
    std::uint64_t hash;
    std::uint32_t key_at, key_len, ids_at, ids_len;  // key_len 0: empty (pieces are never empty)
  };
  void grow() {
    const std::size_t cap = slots_.empty() ? 1024 : 2 * slots_.size();
    if (cap > 2 * max_entries) {  // full: start again
      std::fill(slots_.begin(), slots_.end(), Slot{0, 0, 0, 0, 0});
      keys_.clear();
      ids_.clear();
      entries_ = 0;
      return;
    }
    std::vector<Slot> old(cap, Slot{0, 0, 0, 0, 0});
    old.swap(slots_);
    mask_ = cap - 1;
    for (const Slot& s : old) {
      if (s.key_len == 0) continue;
      std::size_t i = s.hash & mask_;
      while (slots_[i].key_len != 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }
  std::vector<Slot> slots_;
  std::size_t mask_ = 0, entries_ = 0;
  std::string keys_;
  std::vector<Token> ids_;
};

template <class Emit>
void BpeVocab::encode_each(std::string_view text, Emit&& emit) const {
  Workspace ws;
  encode_each(text, ws, emit);
}

template <class Emit>
void BpeVocab::encode_each(std::string_view text, Workspace& ws, Emit&& emit) const {
  const Pretokenizer pre(split_);
  pre.each_piece(text, [&](std::string_view piece) {
    if (piece.size() == 1) {
      emit(byte_ids_[static_cast<unsigned char>(piece[0])]);
      return;
    }
    const bool cached = piece.size() <= Workspace::max_piece;
    std::uint64_t h = 0;
    if (cached) {
      h = Workspace::hash(piece);
      std::size_t count = 0;
      if (const Token* ids = ws.find(piece, h, count)) {
        for (std::size_t i = 0; i < count; ++i) emit(ids[i]);
        return;
      }
    }
    merge_piece(piece, ws.word, piece.size() > rescan_limit);
    if (cached) ws.insert(piece, h, ws.word);
    for (Token id : ws.word) emit(id);
  });
}

}  // namespace seqgen
