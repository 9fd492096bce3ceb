// The memory a training run or a generation will hold at its peak, computed from the config and
// the sizes asked for, before anything is allocated (core/memory.hpp compares it with what the
// process may use). Counted from the buffers the code keeps, N = B·T tokens, floats of 4 bytes:
//
//   parameters        value, gradient and the two AdamW moments: 4 per parameter; a save then
//                     encodes values and moments once more (CheckpointWriter holds the file)
//   GPT, per token    residual stream, the head's probabilities (V), backward scratch (which
//                     holds LN_f's output after forward): (L + 3)·C + V + 3; the blocks' one
//                     shared set of scratch (TransformerBlock::Cache::take_scratch: gradients,
//                     GELU's output, a LayerNorm output) 10·C; per block 9·C + A + 4 (q/k/v,
//                     attention output, x1, MLP hidden before GELU, two LayerNorms' statistics),
//                     with dropout + 4·C per block (branch outputs, masks), + C of scratch and
//                     2·C for the embedding (before dropout, mask); A is what the attention
//                     kernel keeps per token: 2·NH for the flash kernel (each query's log-sum-exp, and D in
//                     backward), NH·T for the reference (its probabilities P), whose backward also
//                     has a (T, T) scratch per thread; CausalSelfAttention::flash_by_default(T)
//                     says which runs; with recompute (Gpt::Activations::recompute) one block's
//                     cache in place of L
//   GPT evaluation    the forward alone on windows of 32 sequences, kept beside the training ones
//   recurrent         per token: embedding and its gradient 2·E, the head V + 1, scratch 2·H, and
//                     per layer H of output plus what its cell keeps (RNN 3·H, LSTM and GRU 11·H)
//   text              the file, its tokens (4 bytes while encoding, 2 kept) and the validation
//                     text decoded once
//   process           16 MiB, and 4 MiB per thread (stacks, product buffers)
// and a tenth more for what is not counted (the allocator's own overhead, small buffers).
//
// tests/memory_test.sh checks the estimate against the peak resident memory `train` measures.
#pragma once

#include <algorithm>

#include "seqgen/models/gpt.hpp"
#include "seqgen/models/recurrent_lm.hpp"

namespace seqgen {

namespace detail {
inline constexpr double kFloat = 4;
inline constexpr double kMargin = 1.1;
inline double process_bytes(int threads) { return (16.0 + 4.0 * double(threads > 0 ? threads : 1)) * 1024 * 1024; }
}  // namespace detail

// Floats the attention of one block keeps per token beyond its (C, N) matrices, at sequence length
// T, with the kernel a default CausalSelfAttention runs (or the reference's, when `reference`).
inline double attention_floats_per_token(const GptConfig& c, Index T, bool training, bool reference = false) {
  const double NH = double(c.heads);
  if (!reference && CausalSelfAttention<float>::flash_by_default(T)) return training ? 2 * NH : NH;
  return NH * double(T);
}

// Floats a GPT forward (training: with backward) keeps per token, at sequence length T.
// `recompute`: Gpt::Activations::recompute (one block's cache in place of L).
inline double gpt_floats_per_token(const GptConfig& c, Index T, bool training, bool reference_attention = false,
                                   bool recompute = false) {
  const double C = double(c.channels), V = double(c.vocab_size), L = double(c.layers);
  const bool dropout = training && c.dropout > 0;
  // The model's own buffers and the blocks' shared scratch (in inference, GELU's output and a
  // LayerNorm output alone).
  double model = training ? (L + 3) * C + V + 3 + 10 * C : (L + 2) * C + V + 1 + 5 * C;
  double block = 9 * C + attention_floats_per_token(c, T, training, reference_attention) + 4;
  if (dropout) {
    model += 3 * C;
    block += 4 * C;
  }
  return model + (recompute && training ? 1 : L) * block;
}

// Floats a recurrent LM keeps per token in a training step.
inline double recurrent_floats_per_token(const RecurrentConfig& c) {
  const double E = double(c.embedding), H = double(c.hidden), V = double(c.vocab_size), L = double(c.layers);
  const double cell = c.cell == CellKind::rnn ? 3 * H : 11 * H;
  return 2 * E + V + 1 + 2 * H + L * (H + cell);
}

// The text of `file_bytes` bytes read, tokenized and split.
inline double text_bytes(double file_bytes) { return 7 * file_bytes; }

// Peak bytes of training at batch B and sequence length T (text excluded); `recompute` as
// Gpt::Activations::recompute.
inline double training_bytes(const GptConfig& c, Index B, Index T, int threads, bool recompute = false) {
  const double P = c.num_params<double>();
  const double eval_tokens = 32.0 * double(T);
  // The reference attention's backward: a (T, T) block per thread.
  const double reference_scratch =
      CausalSelfAttention<float>::flash_by_default(T) ? 0 : double(T) * double(T) * double(std::max(threads, 1));
  return detail::kMargin * (detail::kFloat * (7 * P +
                                              gpt_floats_per_token(c, T, true, false, recompute) * double(B) * double(T) +
                                              gpt_floats_per_token(c, T, false) * eval_tokens + reference_scratch) +
                            detail::process_bytes(threads));
}
inline double training_bytes(const RecurrentConfig& c, Index B, Index T, int threads) {
  const double P = c.num_params<double>(), H = double(c.hidden), G = double(c.gates());
  return detail::kMargin * (detail::kFloat * (7 * P + recurrent_floats_per_token(c) * double(B) * double(T) +
                                              recurrent_floats_per_token(c) * double(T) + double(c.layers) * G * H * H) +
                            detail::process_bytes(threads));
}

// Peak bytes of generating `samples` continuations of a prompt of `prompt_tokens` tokens, each
// `new_tokens` long, besides the model's weights: the decoder's buffers, the logits and the
// samplers (3 doubles per logit), and each sample's history of tokens.
//   GPT        a (2C, samples·context) KV cache per layer, the block weights copied into panels
//              (12·C²·L), and a prefill of at most 256 tokens at a time (counted as a forward
//              that keeps NH·context scores per token); a prompt longer than the context is cut
//              to its last `context` tokens before it is copied per sample
//   recurrent  the prompt's prefill keeps every layer's cache for every prompt token
inline double generation_bytes(const GptConfig& c, Index samples, Index prompt_tokens, Index new_tokens,
                               int threads) {
  const double S = double(samples), C = double(c.channels), L = double(c.layers), V = double(c.vocab_size);
  const double ctx = double(c.context), prompt = std::min(ctx, double(prompt_tokens));
  const double chunk = std::min(256.0, std::max(S, S * prompt));
  const double history = S * (prompt + double(new_tokens));
  return detail::kFloat * (2 * L * C * S * ctx + 12 * C * C * L + chunk * gpt_floats_per_token(c, c.context, false, true) +
                           S * V + history) +
         8.0 * 3 * S * V + detail::process_bytes(threads);
}
inline double generation_bytes(const RecurrentConfig& c, Index samples, Index prompt_tokens, Index new_tokens,
                               int threads) {
  const double S = double(samples), H = double(c.hidden), L = double(c.layers), V = double(c.vocab_size);
  const double history = S * (double(prompt_tokens) + double(new_tokens));
  const double prefill = S * double(prompt_tokens) * recurrent_floats_per_token(c);
  return detail::kFloat * (prefill + 2 * L * H * S + S * V + history) + 8.0 * 3 * S * V +
         detail::process_bytes(threads);
}

}  // namespace seqgen
