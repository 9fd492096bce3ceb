// Training a language model on a token dataset, with checkpoints that resume exactly.
//
// One step:  batch → forward → backward → clip the global gradient norm → set the learning rate
// from the schedule → AdamW. The trainer is written once against the model contract
// (docs/architecture.md); the one thing it chooses by model is how a batch is read:
//   a model without state (GPT):    B random windows of T+1 tokens (TokenDataset::sample_windows);
//   a model that carries its state  the next T tokens of B contiguous streams (StreamBatcher), the
//   (the recurrent family):         state carried from the previous step (truncated BPTT) and reset
//                                   when the streams wrap.
//
// Exact resume: a checkpoint holds everything a step reads — weights, AdamW moments and step
// count, the random generator, the stream cursor and carried hidden state, the options — so
// N steps, save, load, M steps gives bit-identical weights and losses to N + M steps in one run
// (at a fixed thread count; see README "Determinism").
//
// Numerical health: a step whose loss or global gradient norm is NaN or infinite applies no
// update. Up to TrainOptions::skip_nonfinite such steps over the whole run are skipped: no
// optimizer step, no moment update, the step counter (hence the schedule and AdamW's bias
// correction) does not advance, the batch is consumed and a recurrent model's carried state is
// reset. One more throws NonFiniteError naming the step. save() refuses weights that are not
// finite, so a diverged run never overwrites a good checkpoint.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "seqgen/data/dataset.hpp"
#include "seqgen/data/tokenizer.hpp"
#include "seqgen/io/checkpoint.hpp"
#include "seqgen/models/model_io.hpp"
#include "seqgen/optim/adam.hpp"
#include "seqgen/optim/clip.hpp"
#include "seqgen/optim/schedule.hpp"

namespace seqgen {

namespace detail {
// Whether a model's Activations can recompute (Gpt::Activations::recompute).
template <class Activations, class = void>
struct has_recompute : std::false_type {};
template <class Activations>
struct has_recompute<Activations, std::void_t<decltype(Activations::recompute)>> : std::true_type {};
}  // namespace detail

// Training met a NaN or infinite loss or gradient norm (beyond TrainOptions::skip_nonfinite), or
// save() was asked to write non-finite weights.
struct NonFiniteError : Error {
  using Error::Error;
};

struct TrainOptions {
  Index batch = 16;     // B
  Index seq_len = 128;  // T
  std::int64_t steps = 1000;  // total steps of the schedule
  double lr = 1e-3;
  double min_lr = 1e-4;
  std::int64_t warmup = 100;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.99;
  double clip = 1.0;  // max global gradient norm; 0 turns clipping off
  std::uint64_t seed = 1337;
  std::int64_t skip_nonfinite = 0;  // non-finite steps tolerated (and skipped) over the whole run

  void validate() const {
    check<ConfigError>(batch > 0 && batch <= (Index(1) << 20), "TrainOptions: batch must be in [1, 2^20], got ", batch);
    check<ConfigError>(seq_len > 0 && seq_len <= (Index(1) << 20), "TrainOptions: seq_len must be in [1, 2^20], got ",
                       seq_len);
    check<ConfigError>(steps > 0, "TrainOptions: steps must be positive, got ", steps);
    check<ConfigError>(std::isfinite(lr) && lr > 0 && min_lr >= 0 && min_lr <= lr,
                       "TrainOptions: need 0 <= min_lr <= lr, lr > 0 and finite, got lr=", lr, " min_lr=", min_lr);
    check<ConfigError>(warmup >= 0 && warmup <= steps, "TrainOptions: warmup must be in [0, steps=", steps, "], got ",
                       warmup);
    check<ConfigError>(std::isfinite(weight_decay) && weight_decay >= 0,
                       "TrainOptions: weight_decay must be finite and >= 0, got ", weight_decay);
    check<ConfigError>(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
                       "TrainOptions: beta1 and beta2 must be in [0, 1), got ", beta1, " and ", beta2);
    check<ConfigError>(std::isfinite(clip) && clip >= 0, "TrainOptions: clip must be finite and >= 0, got ", clip);
    check<ConfigError>(skip_nonfinite >= 0, "TrainOptions: skip_nonfinite must be >= 0, got ", skip_nonfinite);
  }
};

inline void write_options(CheckpointWriter& w, const TrainOptions& o) {
  w.put_int("train.batch", o.batch);
  w.put_int("train.seq_len", o.seq_len);
  w.put_int("train.steps", o.steps);
  w.put_double("train.lr", o.lr);
  w.put_double("train.min_lr", o.min_lr);
  w.put_int("train.warmup", o.warmup);
  w.put_double("train.weight_decay", o.weight_decay);
  w.put_double("train.beta1", o.beta1);
  w.put_double("train.beta2", o.beta2);
  w.put_double("train.clip", o.clip);
  w.put_int("train.seed", static_cast<std::int64_t>(o.seed));
  w.put_int("train.skip_nonfinite", o.skip_nonfinite);
}
// The options stored in a checkpoint, each read with its valid range (TrainOptions::validate), so
// that an error names the file and the field.
inline TrainOptions read_options(const CheckpointReader& r) {
  constexpr std::int64_t kMaxSize = std::int64_t(1) << 20, kMaxSteps = std::int64_t(1) << 53;
  TrainOptions o;
  o.batch = r.get_int("train.batch", 1, kMaxSize);
  o.seq_len = r.get_int("train.seq_len", 1, kMaxSize);
  o.steps = r.get_int("train.steps", 1, kMaxSteps);
  o.lr = r.get_double("train.lr", std::numeric_limits<double>::min(), std::numeric_limits<double>::max());
  o.min_lr = r.get_double("train.min_lr", 0, o.lr);
  o.warmup = r.get_int("train.warmup", 0, o.steps);
  o.weight_decay = r.get_double("train.weight_decay", 0, std::numeric_limits<double>::max());
  o.beta1 = r.get_double("train.beta1", 0, std::nextafter(1.0, 0.0));
  o.beta2 = r.get_double("train.beta2", 0, std::nextafter(1.0, 0.0));
  o.clip = r.get_double("train.clip", 0, std::numeric_limits<double>::max());
  o.seed = static_cast<std::uint64_t>(r.get_int("train.seed"));
  if (r.has("train.skip_nonfinite"))  // absent in checkpoints written before this field was added
    o.skip_nonfinite = r.get_int("train.skip_nonfinite", 0, kMaxSteps);
  detail::naming_checkpoint(r, [&] { o.validate(); });
  return o;
}

template <typename Model>
class Trainer {
 public:
  using Scalar = float;
  static_assert(std::is_same_v<decltype(Model::lm_head), Param<float>>, "Trainer trains float models");
  // Contiguous streams with the state carried, or independent random windows.
  static constexpr bool kStreams = Model::kCarriesState;

  Model model;
  Tokenizer tokenizer;
  TrainOptions options;
  // Called after backward, with every gradient of the batch in model's Param::grad, before the
  // gradient norm is measured and the update applied. Empty by default; it may read or edit the
  // gradients (logging, or a test injecting a NaN). Not saved in checkpoints.
  std::function<void(Model&)> on_gradients;
  // Asked between the batches of evaluate(); when it returns true, evaluate() stops and returns
  // the mean over the windows read so far (a program's Ctrl-C). Empty by default.
  std::function<bool()> should_stop;
  // Data parallelism (see the file comment; empty for one process): called after backward with
  // this replica's gradients and its loss; must replace both by their means over all replicas.
  std::function<void(Model&, double& loss)> reduce_gradients;
  // Data parallelism overlapped with backward (empty otherwise): model.backward calls it as the
  // gradients of tensors first_final_tensor, … become final (GradientsReady, core/param.hpp).
  std::function<void(Model&, Index first_final_tensor)> gradients_ready;
  // Data parallelism with the optimizer state sharded over the replicas (ZeRO-1,
  // distributed/sharded_adamw.hpp; both empty otherwise). After reduce_gradients, each replica
  // holds its slice of the mean gradient only: clip_sharded(max_norm) replaces the gradient norm and
  // the clipping (it returns the global norm, and clips unless max_norm is 0), and
  // step_sharded(model, optimizer) replaces optimizer.step(model): an AdamW step on the slice, with
  // the options and step count of `optimizer` (which then holds no moments of its own), after
  // which every replica holds every updated parameter.
  std::function<double(double max_norm)> clip_sharded;
  std::function<void(Model&, AdamW<Scalar>&)> step_sharded;

  // A fresh run. The dataset must outlive the trainer.
  Trainer(Model model_, Tokenizer tokenizer_, const TokenDataset& data, const TrainOptions& options_)
      : model(std::move(model_)),
        tokenizer(std::move(tokenizer_)),
        options(options_),
        data_(&data),
        rng_(options_.seed),
        optimizer_(adam_options(options_)) {
    options.validate();
    check<ConfigError>(tokenizer.vocab_size() == model.config.vocab_size, "Trainer: the tokenizer has ",
                       tokenizer.vocab_size(), " symbols but the model's vocab_size is ", model.config.vocab_size);
    check<ConfigError>(data.vocab_size() == model.config.vocab_size, "Trainer: the dataset's vocabulary has ",
                       data.vocab_size(), " symbols but the model's vocab_size is ", model.config.vocab_size);
    check<ConfigError>(options.seq_len <= model.max_seq_len(), "Trainer: seq_len ", options.seq_len,
                       " exceeds the model's context ", model.max_seq_len());
    if constexpr (kStreams) streams_.emplace(data, Split::train, options.batch, options.seq_len);
    state_ = model.zero_state(options.batch);  // all B streams until set_shard
    optimizer_.init_state(model);
  }

  // A GPT's activation checkpointing (Gpt::Activations::recompute): a training step keeps one
  // block's activations instead of every block's and runs L − 1 blocks' forward twice. The steps'
  // results are the same bit for bit, so it is no part of the run's state: a run may resume with
  // or without it. ConfigError for a recurrent model (it keeps no per-block activations to drop).
  void set_recompute(bool on) {
    if constexpr (detail::has_recompute<typename Model::Activations>::value) {
      act_.recompute = on;
    } else {
      check<ConfigError>(!on, "Trainer: recomputing activations is for GPT models, not ", Model::kind());
    }
  }

  // Resumes a run from a checkpoint saved by save(). The model kind must be Model's.
  static Trainer load(const std::string& path, const TokenDataset& data) {
    return load(CheckpointReader::load(path), data);
  }
  // The same from a checkpoint already read. `data` must be the text the run trained on, split
  // with the stored data.val_fraction.
  static Trainer load(const CheckpointReader& r, const TokenDataset& data) {
    const std::int64_t tokens = r.get_int("data.train_tokens"), crc = r.get_int("data.train_crc32");
    const std::uint32_t data_crc = data.checksum(Split::train);
    check<FormatError>(tokens == data.size(Split::train) && crc == data_crc, r.source(),
                       " was trained on a different text: it read ", tokens, " training tokens with CRC-32 ", crc,
                       ", the data given has ", data.size(Split::train), " with CRC-32 ", data_crc,
                       " (another file, or another --val-fraction?)");
    const TrainOptions options = read_options(r);
    Model model = load_model<Model>(r);
    Tokenizer tokenizer = load_tokenizer(r, model.config.vocab_size);
    // Stored options that do not fit the stored model are a damaged checkpoint.
    Trainer t = detail::naming_checkpoint(
        r, [&] { return Trainer(std::move(model), std::move(tokenizer), data, options); });
    const std::string flags = r.get_bytes("param.decay");
    check<FormatError>(flags.size() == std::size_t(t.model.num_tensors()), r.source(), ": ", flags.size(),
                       " weight-decay flags for ", t.model.num_tensors(), " parameters");
    std::size_t k = 0;
    t.model.for_each_param([&](Param<Scalar>& p) { p.decay = flags[k++] == '1'; });
    t.optimizer_.for_each_state([&](const std::string& name, Mat<Scalar>& m) {
      r.get_tensor("optim/" + name, m, m.rows(), m.cols());
    });
    t.step_ = r.get_int("train.step");
    // Far beyond any real run, and low enough that counting on from it can never overflow.
    check<FormatError>(t.step_ >= 0 && t.step_ <= (std::int64_t(1) << 53), r.source(), ": step count ", t.step_,
                       " is outside [0, 2^53]");
    if (r.has("train.skipped_nonfinite")) t.skipped_ = r.get_int("train.skipped_nonfinite");
    check<FormatError>(t.skipped_ >= 0, r.source(), ": negative count of skipped steps ", t.skipped_);
    t.optimizer_.set_steps(t.step_);
    Rng::State s;
    for (int i = 0; i < 4; ++i) s[i] = static_cast<std::uint64_t>(r.get_int("rng." + std::to_string(i)));
    t.rng_.set_state(s);
    if constexpr (kStreams) t.streams_->set_cursor(r.get_int("data.cursor"));
    read_state(r, t.state_);
    return t;
  }

  // Replaces the options that may change during a run (learning rates, warm-up, steps, weight
  // decay, betas, clipping, the non-finite budget). The batch, sequence length and seed shape the
  // data the run reads and cannot change: ConfigError if they differ.
  void set_options(const TrainOptions& o) {
    o.validate();
    check<ConfigError>(o.batch == options.batch && o.seq_len == options.seq_len && o.seed == options.seed,
                       "Trainer::set_options: batch, seq_len and seed cannot change during a run (", options.batch,
                       ", ", options.seq_len, ", ", options.seed, " -> ", o.batch, ", ", o.seq_len, ", ", o.seed, ")");
    options = o;
    const auto a = adam_options(o);
    optimizer_.options.beta1 = a.beta1;
    optimizer_.options.beta2 = a.beta2;
    optimizer_.options.weight_decay = a.weight_decay;
  }

  // Makes this trainer replica `rank` of `world` (see the file comment): it runs forward and
  // backward on sequences [rank·B/world, (rank+1)·B/world) of every global batch, and keeps the
  // carried state of those streams only, cut from the state of all B streams it holds now (a fresh
  // or loaded trainer's). Once per trainer; the batch must divide by the world size.
  void set_shard(Index rank, Index world) {
    check<ConfigError>(world >= 1 && rank >= 0 && rank < world, "Trainer::set_shard: need 0 <= rank < world, got rank ",
                       rank, " of ", world);
    check<ConfigError>(options.batch % world == 0, "Trainer::set_shard: the global batch ", options.batch,
                       " must divide by the number of processes ", world, " (each reads batch / processes sequences)");
    check<ConfigError>(world_ == 1, "Trainer::set_shard: already sharded (rank ", rank_, " of ", world_, ")");
    rank_ = rank;
    world_ = world;
    const Index local = options.batch / world;
    typename Model::State mine = model.zero_state(local);
    for_each_state_matrix(mine, state_, [&](Mat<Scalar>& to, Mat<Scalar>& from) {
      to = from.middleCols(rank * local, local);
    });
    state_ = std::move(mine);
  }
  Index rank() const { return rank_; }
  Index world() const { return world_; }
  // The carried state of this replica's streams (all B of them for one process).
  const typename Model::State& state() const { return state_; }

  // Calls visit(a, b) on each pair of matching matrices (H, streams) of two states of a model
  // (nothing for a model without state).
  template <class Visit>
  static void for_each_state_matrix(typename Model::State& a, typename Model::State& b, Visit&& visit) {
    if constexpr (kStreams) {
      for (std::size_t l = 0; l < a.size(); ++l) {
        visit(a[l].h, b[l].h);
        if constexpr (detail::HasCellState<std::decay_t<decltype(a[l])>>::value) visit(a[l].c, b[l].c);
      }
    }
  }

  // Saves everything needed to continue exactly; atomic (see CheckpointWriter::save). Throws
  // NonFiniteError, writing nothing, if a weight is NaN or infinite.
  //
  // A replica of a recurrent model (set_shard with world > 1) holds only its streams' state: it
  // must pass the state of all B streams as `all_streams` (DataParallel::save gathers it).
  void save(const std::string& path, const typename Model::State* all_streams = nullptr) const {
    check<ConfigError>(!kStreams || world_ == 1 || all_streams != nullptr, "Trainer::save: replica ", rank_, " of ",
                       world_, " holds the carried state of its own streams only; pass the state of all ",
                       options.batch, " streams");
    model.for_each_param([&](const Param<Scalar>& p) {
      check<NonFiniteError>(p.value.allFinite(), "Trainer::save: parameter '", p.name,
                            "' holds a NaN or infinite value at step ", step_, "; not writing '", path, "'");
    });
    std::size_t moments = 0;
    optimizer_.for_each_state([&](const std::string&, const Mat<Scalar>&) { ++moments; });
    check<ConfigError>(moments == 2 * std::size_t(model.num_tensors()), "Trainer::save: replica ", rank_, " of ",
                       world_, " holds a slice of the AdamW moments only (ZeRO-1); save with DataParallel::save, ",
                       "which gathers them");
    CheckpointWriter w;
    w.put_string("model.kind", Model::kind());
    write_config(w, model.config);
    w.put_bytes("tokenizer", tokenizer.to_bytes());
    write_params(w, model);
    std::string flags;
    model.for_each_param([&](const Param<Scalar>& p) { flags += p.decay ? '1' : '0'; });
    w.put_bytes("param.decay", flags);
    w.put_double("data.val_fraction", data_->val_fraction());
    w.put_int("data.train_tokens", data_->size(Split::train));
    w.put_int("data.train_crc32", data_->checksum(Split::train));
    optimizer_.for_each_state(
        [&](const std::string& name, const Mat<Scalar>& tensor) { w.put_tensor("optim/" + name, tensor); });
    write_options(w, options);
    w.put_int("train.step", step_);
    w.put_int("train.skipped_nonfinite", skipped_);
    for (int i = 0; i < 4; ++i) w.put_int("rng." + std::to_string(i), static_cast<std::int64_t>(rng_.state()[i]));
    if constexpr (kStreams) w.put_int("data.cursor", streams_->cursor());
    write_state(w, all_streams ? *all_streams : state_);
    w.save(path);
  }

  // One optimizer step; returns the training loss of its batch. Also sets last_grad_norm() and
  // last_step_skipped(). A non-finite loss or gradient norm skips the update while the budget
  // options.skip_nonfinite lasts, and then throws NonFiniteError (see the file comment).
  double step() {
    const Index B = options.batch, T = options.seq_len;
    const Index local = B / world_;  // this replica's sequences
    zero_grad(model);
    if constexpr (kStreams) {
      bool wrapped = false;
      streams_->next(inputs_, targets_, wrapped);
      if (wrapped) Model::reset_state(state_);
    } else {
      data_->sample_windows(Split::train, B, T, rng_, inputs_, targets_);
    }
    const TokenSpan inputs(inputs_.data() + rank_ * local * T, local * T);
    const TokenSpan targets(targets_.data() + rank_ * local * T, local * T);
    double loss;
    if (world_ == 1) {
      loss = model.forward(inputs, targets, local, T, state_, act_, rng_, true);
    } else {
      // The replicas' generators must stay equal (they draw the windows), so dropout masks come
      // from a generator of their own, fixed by the seed, the batch count and the rank (masks of
      // a run on N replicas are not those of one process).
      Rng dropout_rng(options.seed ^ (0x9E3779B97F4A7C15ull * std::uint64_t(step_ + skipped_ + 1)) ^
                      (std::uint64_t(rank_) << 48));
      loss = model.forward(inputs, targets, local, T, state_, act_, dropout_rng, true);
    }
    if (gradients_ready)
      model.backward(inputs, targets, local, T, act_, [this](Index first) { gradients_ready(model, first); });
    else
      model.backward(inputs, targets, local, T, act_);
    if (reduce_gradients) reduce_gradients(model, loss);
    if (on_gradients) on_gradients(model);
    // A non-finite norm leaves the gradients unscaled (clip_grad_norm); they are not used then.
    if (clip_sharded) grad_norm_ = clip_sharded(options.clip);
    else grad_norm_ = options.clip > 0 ? clip_grad_norm(model, options.clip) : grad_norm(model);
    skipped_last_ = !std::isfinite(loss) || !std::isfinite(grad_norm_);
    if (skipped_last_) {
      check<NonFiniteError>(skipped_ < options.skip_nonfinite, "Trainer: step ", step_ + 1, " has a non-finite ",
                            std::isfinite(loss) ? "gradient norm" : "loss", " (loss ", loss, ", gradient norm ",
                            grad_norm_, "); its update was not applied. ", skipped_, " non-finite steps were skipped ",
                            "before, skip_nonfinite allows ", options.skip_nonfinite);
      ++skipped_;
      Model::reset_state(state_);  // the chunk's final state may be the culprit
      return loss;
    }
    optimizer_.options.lr = learning_rate();
    if (step_sharded) step_sharded(model, optimizer_);
    else optimizer_.step(model);
    ++step_;
    return loss;
  }

  // Mean loss (nats/token) over the first max_windows consecutive windows of T tokens of the
  // split (all of them when max_windows is larger). A model without state scores each window on
  // its own, in batches of 32; one that carries its state reads the windows one at a time, in
  // order, with the state carried, as it would read the text.
  double evaluate(Split split, Index max_windows) {
    check<ConfigError>(max_windows > 0, "Trainer::evaluate: max_windows must be positive, got ", max_windows);
    const Index T = options.seq_len;
    const Index n = std::min(max_windows, data_->num_eval_windows(split, T));
    check<ConfigError>(n > 0, "Trainer::evaluate: the ", split_name(split), " split is shorter than one window of ",
                       T + 1, " tokens");
    const Index batch = kStreams ? 1 : 32;
    auto state = model.zero_state(batch);
    Rng unused(0);  // no dropout outside training
    double total = 0;
    for (Index first = 0; first < n; first += batch) {
      const Index count = std::min(batch, n - first);
      data_->eval_windows(split, first, count, T, eval_inputs_, eval_targets_);
      total += double(count) * model.forward(eval_inputs_, eval_targets_, count, T, state, eval_act_, unused, false);
      if (should_stop && should_stop()) return total / double(first + count);
    }
    return total / double(n);
  }

  double learning_rate() const {
    return WarmupCosineLr{options.lr, options.min_lr, options.warmup, options.steps}(step_);
  }
  // Updates applied so far (skipped steps are not counted).
  std::int64_t step_count() const { return step_; }
  // Non-finite steps skipped so far in the whole run, and whether the last step() was one.
  std::int64_t skipped_steps() const { return skipped_; }
  bool last_step_skipped() const { return skipped_last_; }
  double last_grad_norm() const { return grad_norm_; }
  const TokenDataset& data() const { return *data_; }
  Rng& rng() { return rng_; }
  // AdamW, with its moments and step count (for data parallelism: distributed/).
  AdamW<Scalar>& optimizer() { return optimizer_; }

 private:
  static typename AdamW<Scalar>::Options adam_options(const TrainOptions& o) {
    typename AdamW<Scalar>::Options a;
    a.lr = o.lr;
    a.beta1 = o.beta1;
    a.beta2 = o.beta2;
    a.weight_decay = o.weight_decay;
    a.decoupled = true;
    return a;
  }
  const TokenDataset* data_;
  Rng rng_;
  AdamW<Scalar> optimizer_;
  std::int64_t step_ = 0;
  std::int64_t skipped_ = 0;
  Index rank_ = 0, world_ = 1;  // set_shard
  bool skipped_last_ = false;
  double grad_norm_ = 0;
  std::vector<Token> inputs_, targets_, eval_inputs_, eval_targets_;
  typename Model::Activations act_, eval_act_;
  std::optional<StreamBatcher> streams_;  // models that carry their state only
  typename Model::State state_;  // carried from step to step (empty for a model without state)
};

}  // namespace seqgen
