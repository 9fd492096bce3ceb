// A tokenized corpus split into train and validation, and the three ways training reads it.
//
//   stream s (n tokens):  [ train: s[0, n_train) | val: s[n_train, n) ],  n_val = ⌊n · val_fraction⌋
//
//   sample_windows  B windows at uniformly random starts (GPT training, as in nanoGPT's get_batch):
//                     inputs[b*T + t] = s[start_b + t]   targets[b*T + t] = s[start_b + t + 1]
//   StreamBatcher   the split cut into B equal contiguous streams of L = ⌊n_split / B⌋ tokens
//                   (char-rnn), read T tokens at a time so a recurrent model can carry its hidden
//                   state from one batch to the next:
//                     inputs[b*T + t] = s[b*L + c + t]   targets[b*T + t] = s[b*L + c + t + 1]
//                   with cursor c = 0, T, 2T, ... while c + T + 1 <= L, then back to 0.
//   eval_windows    consecutive non-overlapping windows i = 0, 1, ..., starting at i*T: the same
//                   validation loss every time, whatever the seed.
// All batches use seqgen's layout, token (b, t) at index b*T + t, and ASSIGN their outputs (resize
// does not reallocate when the vectors already hold B*T ids, so a training loop allocates nothing).
// B and T must be in [1, 2^20], as TrainOptions requires (train/trainer.hpp), so B*T and B*(T + 1)
// fit in Index; the checks test each bound before any sum or product of arguments is formed.
//
// Tokens are stored as 16-bit ids, half the memory of Token, so the vocabulary is at most 65536.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/random.hpp"
#include "seqgen/core/tensor.hpp"
#include "seqgen/data/tokenizer.hpp"
#include "seqgen/io/crc32.hpp"

namespace seqgen {

// The whole file as bytes. IoError when it is missing, a directory or unreadable; FormatError when
// it is empty. The size comes from the open stream, so the one allocation is the file's real size.
inline std::string read_text_file(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_type type = fs::status(path, ec).type();
  check<IoError>(type != fs::file_type::not_found, "read_text_file: '", path, "' does not exist");
  check<IoError>(!ec, "read_text_file: cannot read '", path, "': ", ec.message());
  check<IoError>(type != fs::file_type::directory, "read_text_file: '", path, "' is a directory, expected a text file");
  // A FIFO or device would block the open or never end; a corpus is a regular file.
  check<IoError>(type == fs::file_type::regular, "read_text_file: '", path, "' is not a regular file");
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  check<IoError>(in.is_open(), "read_text_file: cannot open '", path, "' for reading",
                 errno != 0 ? detail::cat(" (", std::strerror(errno), ")") : std::string());
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  check<IoError>(in.good() && size >= 0, "read_text_file: cannot determine the size of '", path,
                 "' (not a regular file?)");
  check<FormatError>(size > 0, "read_text_file: '", path, "' is empty, a corpus needs at least one token");
  std::string text;
  check<IoError>(static_cast<std::uintmax_t>(size) <= text.max_size(), "read_text_file: '", path, "' is ", size,
                 " bytes, too large to hold in memory");
  text.resize(static_cast<std::size_t>(size));
  in.seekg(0, std::ios::beg);
  in.read(&text[0], size);
  check<IoError>(in.gcount() == size, "read_text_file: read only ", in.gcount(), " of the ", size, " bytes of '", path,
                 "'");
  return text;
}

enum class Split { train, val };

inline const char* split_name(Split split) { return split == Split::train ? "train" : "validation"; }

class TokenDataset {
 public:
  static constexpr Index max_vocab = 65536;  // ids must fit in 16 bits

  // Token ids given directly, each in [0, vocab_size).
  static TokenDataset from_tokens(TokenSpan ids, Index vocab_size, double val_fraction = 0.1) {
    check_arguments(vocab_size, val_fraction);
    std::vector<std::uint16_t> tokens(static_cast<std::size_t>(ids.size));
    for (Index i = 0; i < ids.size; ++i) {
      check<IndexError>(ids[i] >= 0 && ids[i] < vocab_size, "TokenDataset::from_tokens: token id ", ids[i],
                        " at position ", i, " is out of range for a vocabulary of ", vocab_size);
      tokens[static_cast<std::size_t>(i)] = static_cast<std::uint16_t>(ids[i]);
    }
    return TokenDataset(std::move(tokens), vocab_size, val_fraction);
  }

  static TokenDataset from_text(std::string_view text, const Tokenizer& tok, double val_fraction = 0.1) {
    check_arguments(tok.vocab_size(), val_fraction);
    check<ConfigError>(!text.empty(), "TokenDataset::from_text: the text is empty");
    std::vector<std::uint16_t> tokens;
    tokens.reserve(tok.kind() == Tokenizer::Kind::bytes ? text.size() : utf8::count_characters(text));
    tok.encode_each(text, [&](Token id) { tokens.push_back(static_cast<std::uint16_t>(id)); });
    return TokenDataset(std::move(tokens), tok.vocab_size(), val_fraction);
  }

  static TokenDataset from_file(const std::string& path, const Tokenizer& tok, double val_fraction = 0.1) {
    check_arguments(tok.vocab_size(), val_fraction);
    return from_text(read_text_file(path), tok, val_fraction);
  }

  Index vocab_size() const { return vocab_size_; }
  Index size() const { return static_cast<Index>(tokens_.size()); }
  Index size(Split split) const { return split == Split::train ? train_size_ : size() - train_size_; }

  // Token i of a split.
  Token at(Split split, Index i) const {
    check<IndexError>(i >= 0 && i < size(split), "TokenDataset::at: index ", i, " is out of range for the ",
                      split_name(split), " split of ", size(split), " tokens");
    return begin(split)[i];
  }

  // B windows of T inputs and T targets at starts drawn by rng.uniform_int(n_split - T), b = 0..B-1.
  // inputs, targets: resized to B*T.
  void sample_windows(Split split, Index B, Index T, Rng& rng, std::vector<Token>& inputs,
                      std::vector<Token>& targets) const {
    check_batch("TokenDataset::sample_windows", B, T);
    const Index n = size(split);
    check<ConfigError>(n > T, "TokenDataset::sample_windows: the ", split_name(split), " split has ", n,
                       " tokens, a window of T = ", T, " needs at least ", T + 1, " (T inputs and one more target)");
    resize_batch(inputs, targets, B, T);
    for (Index b = 0; b < B; ++b) {
      const auto start = static_cast<Index>(rng.uniform_int(static_cast<std::uint64_t>(n - T)));
      copy_window(split, start, T, inputs.data() + b * T, targets.data() + b * T);
    }
  }

  // CRC-32 of a split's token ids (each as 2 little-endian bytes): identifies the data a
  // checkpoint was trained on, so a resume on different text is caught.
  std::uint32_t checksum(Split split) const {
    std::uint32_t crc = 0;
    const std::uint16_t* ids = begin(split);
    unsigned char buf[2 * 4096];
    for (Index i = 0, n = size(split); i < n;) {
      const Index count = std::min<Index>(4096, n - i);
      for (Index k = 0; k < count; ++k) {
        buf[2 * k] = static_cast<unsigned char>(ids[i + k] & 0xFF);
        buf[2 * k + 1] = static_cast<unsigned char>(ids[i + k] >> 8);
      }
      crc = crc32_update(crc, buf, static_cast<std::size_t>(2 * count));
      i += count;
    }
    return crc;
  }

  double val_fraction() const { return val_fraction_; }

  // Number of evaluation windows of T tokens: window i reads inputs s[i*T, i*T + T) and targets one
  // further, so they never overlap and each needs one token past its end.
  Index num_eval_windows(Split split, Index T) const {
    check<ConfigError>(T > 0, "TokenDataset::num_eval_windows: T must be positive, got ", T);
    return size(split) > 0 ? (size(split) - 1) / T : 0;
  }

  // Evaluation windows first, ..., first + count - 1 as a batch of B = count (layout b*T + t).
  void eval_windows(Split split, Index first, Index count, Index T, std::vector<Token>& inputs,
                    std::vector<Token>& targets) const {
    check_batch("TokenDataset::eval_windows", count, T);
    const Index available = num_eval_windows(split, T);
    check<IndexError>(first >= 0 && first < available, "TokenDataset::eval_windows: first window ", first,
                      " is out of range, the ", split_name(split), " split of ", size(split), " tokens has ",
                      available, " windows of T = ", T);
    // first < available and count <= 2^20, so first + count fits
    check<IndexError>(count <= available - first, "TokenDataset::eval_windows: windows [", first, ", ", first + count,
                      ") are out of range, the ", split_name(split), " split of ", size(split), " tokens has ",
                      available, " windows of T = ", T);
    resize_batch(inputs, targets, count, T);
    for (Index b = 0; b < count; ++b)
      copy_window(split, (first + b) * T, T, inputs.data() + b * T, targets.data() + b * T);
  }

  // One evaluation window (B = 1).
  void eval_window(Split split, Index i, Index T, std::vector<Token>& inputs, std::vector<Token>& targets) const {
    eval_windows(split, i, 1, T, inputs, targets);
  }

 private:
  friend class StreamBatcher;

  TokenDataset(std::vector<std::uint16_t> tokens, Index vocab_size, double val_fraction)
      : tokens_(std::move(tokens)), vocab_size_(vocab_size), val_fraction_(val_fraction) {
    // The 1e-9 keeps ⌊90 · 0.7⌋ at 63 although 90 · 0.7 rounds to 62.99999999999999.
    const Index n = size();
    const auto n_val = static_cast<Index>(std::floor(static_cast<double>(n) * val_fraction + 1e-9));
    train_size_ = n - std::min(n_val, n);
  }

  static void check_arguments(Index vocab_size, double val_fraction) {
    check<ConfigError>(vocab_size > 0 && vocab_size <= max_vocab, "TokenDataset: vocabulary size ", vocab_size,
                       " is not in [1, ", max_vocab, "] (ids are stored in 16 bits)");
    check<ConfigError>(val_fraction >= 0 && val_fraction < 1, "TokenDataset: val_fraction must be in [0, 1), got ",
                       val_fraction);
  }

  // B and T in [1, 2^20], the bounds of TrainOptions::validate.
  static constexpr Index max_batch_dim = Index(1) << 20;
  static void check_batch(const char* caller, Index B, Index T) {
    check<ConfigError>(B > 0 && B <= max_batch_dim, caller, ": B must be in [1, 2^20], got B = ", B);
    check<ConfigError>(T > 0 && T <= max_batch_dim, caller, ": T must be in [1, 2^20], got T = ", T);
  }

  static void resize_batch(std::vector<Token>& inputs, std::vector<Token>& targets, Index B, Index T) {
    inputs.resize(static_cast<std::size_t>(B * T));
    targets.resize(static_cast<std::size_t>(B * T));
  }

  const std::uint16_t* begin(Split split) const {
    return tokens_.data() + (split == Split::train ? 0 : train_size_);
  }

  // inputs[t] = s[start + t], targets[t] = s[start + t + 1] for t < T. Unchecked: callers check.
  void copy_window(Split split, Index start, Index T, Token* inputs, Token* targets) const {
    const std::uint16_t* s = begin(split) + start;
    for (Index t = 0; t < T; ++t) {
      inputs[t] = s[t];
      targets[t] = s[t + 1];
    }
  }

  std::vector<std::uint16_t> tokens_;
  Index vocab_size_ = 0;
  Index train_size_ = 0;
  double val_fraction_ = 0.1;
};

// Contiguous streams for stateful recurrent training (see the top of this file). Keeps a pointer
// to the dataset, which must outlive it.
class StreamBatcher {
 public:
  StreamBatcher(const TokenDataset& data, Split split, Index B, Index T)
      : data_(&data), split_(split), B_(B), T_(T) {
    TokenDataset::check_batch("StreamBatcher", B, T);  // so T + 1 and B * (T + 1) below fit
    length_ = data.size(split) / B;
    check<ConfigError>(length_ > T, "StreamBatcher: the ", split_name(split), " split has ", data.size(split),
                       " tokens, B = ", B, " streams of T + 1 = ", T + 1, " tokens need at least ", B * (T + 1));
  }

  Index batch_size() const { return B_; }
  Index seq_len() const { return T_; }
  Split split() const { return split_; }
  // L: tokens per stream. The last n_split - B*L tokens of the split are never read.
  Index stream_length() const { return length_; }
  // Batches before the streams wrap: ⌊(L - 1) / T⌋.
  Index steps_per_epoch() const { return (length_ - 1) / T_; }

  // The next T tokens of each stream; inputs, targets resized to B*T. `wrapped` is true when this
  // batch starts the streams over (the first call, and the call after the last full batch): the
  // caller resets the hidden state before it, since what came before is not this text's past.
  void next(std::vector<Token>& inputs, std::vector<Token>& targets, bool& wrapped) {
    wrapped = cursor_ == 0;
    TokenDataset::resize_batch(inputs, targets, B_, T_);
    for (Index b = 0; b < B_; ++b)
      data_->copy_window(split_, b * length_ + cursor_, T_, inputs.data() + b * T_, targets.data() + b * T_);
    cursor_ += T_;
    if (cursor_ + T_ + 1 > length_) cursor_ = 0;
  }

  // Offset within each stream of the next batch, for checkpoints: set_cursor(cursor()) on a
  // batcher over the same data, split, B and T continues with exactly the same batches.
  Index cursor() const { return cursor_; }
  void set_cursor(Index cursor) {
    // length_ >= T_ + 1 (the constructor checks it), so the bound cannot overflow as cursor + T_ + 1 could.
    check<IndexError>(cursor >= 0 && cursor <= length_ - T_ - 1, "StreamBatcher::set_cursor: cursor ", cursor,
                      " is out of range, streams of ", length_, " tokens with T = ", T_, " allow 0..",
                      length_ - T_ - 1);
    cursor_ = cursor;
  }

 private:
  const TokenDataset* data_;
  Split split_;
  Index B_, T_;
  Index length_ = 0;
  Index cursor_ = 0;
};

}  // namespace seqgen
