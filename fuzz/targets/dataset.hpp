// Target `dataset`: TokenDataset::from_text and from_file (so read_text_file), at,
// sample_windows, eval_windows, StreamBatcher. from_file must equal from_text; the split sizes
// must follow the val fraction; every window's tokens are checked against Tokenizer::encode.
// Input: [u8 flags] [u8 val fraction] [u8 B] [u8 T] [rest: the text]
//   flags bit 0-1: tokenizer bytes / characters of the text / characters of fixed_text()
//   flags bit 2:   an out-of-range val fraction instead (must be refused)
#pragma once

#include <cmath>

#include "../tiny_models.hpp"
#include "../utf8_reference.hpp"

namespace seqgen_fuzz {

inline int fuzz_dataset(const std::uint8_t* data, std::size_t size) {
  FuzzInput in(data, size);
  const unsigned flags = in.u8();
  double val_fraction = in.u8() / 256.0;
  const Index B = 1 + in.u8() % 8, T = 1 + in.u8() % 16;
  const std::string_view text = in.rest();
  if (flags & 4) {
    static const double bad[] = {-0.25, 1.0, 2.0, std::nan(""), INFINITY, -INFINITY};
    val_fraction = bad[flags / 8 % 6];
  }
  try {
    Tokenizer tok;
    switch (flags & 3) {
      case 1: tok = characters_of(text); break;
      case 2: tok = fixed_tokenizer(); break;
      default: tok = Tokenizer::bytes(); break;
    }
    const TokenDataset d = TokenDataset::from_text(text, tok, val_fraction);
    SEQGEN_FUZZ_EXPECT(!(flags & 4), "a val fraction out of [0, 1) was accepted");
    {
      const TempFile file("dataset", text);
      const TokenDataset f = TokenDataset::from_file(file.path(), tok, val_fraction);
      SEQGEN_FUZZ_EXPECT(f.size() == d.size() && f.size(Split::val) == d.size(Split::val) &&
                             f.checksum(Split::train) == d.checksum(Split::train) &&
                             f.checksum(Split::val) == d.checksum(Split::val),
                         "from_file differs from from_text");
    }
    const std::vector<Token> want = tok.encode(text);
    const Index n = Index(want.size()), n_train = d.size(Split::train);
    SEQGEN_FUZZ_EXPECT(d.size() == n && n_train + d.size(Split::val) == n &&
                           std::abs(double(d.size(Split::val)) - double(n) * val_fraction) <= 1.0,
                       "split sizes");
    for (Split split : {Split::train, Split::val}) {
      const Index offset = split == Split::train ? 0 : n_train;
      for (Index i = 0; i < d.size(split); ++i)
        SEQGEN_FUZZ_EXPECT(d.at(split, i) == want[std::size_t(offset + i)], "TokenDataset::at");
      std::vector<Token> x, y;
      try {
        Rng rng(flags);
        d.sample_windows(split, B, T, rng, x, y);
        SEQGEN_FUZZ_EXPECT(Index(x.size()) == B * T && Index(y.size()) == B * T, "sample_windows size");
        for (Index b = 0; b < B; ++b)
          for (Index t = 0; t + 1 < T; ++t)
            SEQGEN_FUZZ_EXPECT(y[std::size_t(b * T + t)] == x[std::size_t(b * T + t + 1)], "sample_windows shift");
      } catch (const ConfigError&) {
        SEQGEN_FUZZ_EXPECT(d.size(split) < T + 1, "sample_windows refused a long enough split");
      }
      const Index windows = d.num_eval_windows(split, T);
      if (windows > 0) {
        const Index count = std::min(windows, B);
        d.eval_windows(split, windows - count, count, T, x, y);
        for (Index b = 0; b < count; ++b)
          for (Index t = 0; t < T; ++t) {
            const Index s = offset + (windows - count + b) * T + t;
            SEQGEN_FUZZ_EXPECT(x[std::size_t(b * T + t)] == want[std::size_t(s)] &&
                                   y[std::size_t(b * T + t)] == want[std::size_t(s + 1)],
                               "eval_windows");
          }
      }
      try {
        StreamBatcher streams(d, split, B, T);
        const Index L = streams.stream_length();
        for (Index step = 0; step < 3; ++step) {
          const Index c = streams.cursor();
          bool wrapped = false;
          streams.next(x, y, wrapped);
          SEQGEN_FUZZ_EXPECT(wrapped == (c == 0), "StreamBatcher wrapped");
          for (Index b = 0; b < B; ++b)
            for (Index t = 0; t < T; ++t)
              SEQGEN_FUZZ_EXPECT(x[std::size_t(b * T + t)] == want[std::size_t(offset + b * L + c + t)] &&
                                     y[std::size_t(b * T + t)] == want[std::size_t(offset + b * L + c + t + 1)],
                                 "StreamBatcher::next");
        }
      } catch (const ConfigError&) {
        SEQGEN_FUZZ_EXPECT(d.size(split) / B < T + 1, "StreamBatcher refused a long enough split");
      }
    }
  } catch (const Error&) {
  }
  return 0;
}

inline std::vector<Seed> dataset_seeds() {
  const auto input = [](unsigned flags, unsigned val, unsigned B, unsigned T, const std::string& text) {
    std::string in;
    for (unsigned v : {flags, val, B, T}) put_u8(in, v);
    return in + text;
  };
  return {{"bytes", input(0, 26, 3, 5, "hello, world\nhello again\n")},
          {"characters", input(1, 64, 1, 7, unicode_sample() + unicode_sample())},
          {"fixed_vocabulary", input(2, 26, 2, 8, fixed_text().substr(0, 120))},
          {"bad_fraction", input(4 + 8, 0, 0, 0, "abc")}};
}

inline const bool registered_dataset = register_target({"dataset", fuzz_dataset, dataset_seeds, 4096});

}  // namespace seqgen_fuzz
