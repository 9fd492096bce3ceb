// train: trains a GPT or an RNN/LSTM/GRU language model on a text file.
//
//   ./train --data input.txt --model gpt --minutes 3 --out model.ckpt
//   ./train --data input.txt --resume model.ckpt --steps 2000     # continue exactly where it stopped
//   ./train --data my.txt --init gpt2_124M.bin --llmc-tokenizer gpt2_tokenizer.bin --out ft.ckpt  # fine-tune GPT-2
//
// --init starts from a pretrained GPT-2 (llm.c's gpt2_124M.bin or Hugging Face's model.safetensors)
// with GPT-2's tokenizer (--llmc-tokenizer, or --encoder-json with --vocab-bpe): the file fixes
// the model's shape and the tokenizer; the run is an ordinary one, saved as a seqgen checkpoint
// that --resume continues and generate reads.
//
// Every --log-interval steps and every evaluation also go to a JSON-lines log, by default next to
// the checkpoint (model.metrics.jsonl for model.ckpt; metrics_log.hpp), continued on --resume.
//
// The last line is a summary:
//   final: steps=… train_loss=… val_loss=… val_bits_per_char=… val_tokens=… val_chars=… tokens_per_s=… checkpoint=…
// val_bits_per_char is the loss in bits per character of the held-out text the final evaluation
// scored, whatever the tokenizer: nats/token × val_tokens ÷ val_chars ÷ ln 2.
//
// Exit status (docs/reliability.md):
//   0    done; the checkpoint holds the last step
//   1    an error: bad input, an option out of range, a file that cannot be read or written
//        (the reason on stderr; a checkpoint that could not be written keeps its previous contents)
//   2    the command line does not parse (unknown option, missing value)
//   3    a NaN or infinite loss or gradient norm (beyond --skip-nonfinite): the checkpoint is left
//        as the last save before it wrote it
//   130  SIGINT (Ctrl-C), 143 SIGTERM: a checkpoint of the last finished step was saved
//
// Under mpirun (built with MPI: the seqgen::mpi target), the ranks train one model on the global
// --batch, each on its share of the sequences (docs/distributed.md): rank 0 alone prints, logs and
// writes the checkpoint; tokens/s counts every rank; a signal on any rank stops every rank at the
// same step, which saves once; an error on one rank ends the whole job with its message. --zero
// shards the AdamW moments over the ranks (ZeRO stage 1).
#include "cli_common.hpp"
#include "metrics_log.hpp"

#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <new>
#include <optional>

#if defined(SEQGEN_MPI)
#include <seqgen/distributed/data_parallel.hpp>
#endif

namespace {

using cli::kExitError;
using cli::kExitUsage;
constexpr int kExitNonFinite = 3;

// SIGINT and SIGTERM ask the loop to stop; the handler is then reset, so a second Ctrl-C during
// the final save kills the program at once (the save is atomic, so the old checkpoint survives).
// SIGXFSZ (a file size limit, ulimit -f) is ignored, so that a save past the limit fails with
// EFBIG and is reported like any other failed write instead of killing the program.
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) { g_signal = sig; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGXFSZ, SIG_IGN);
}

#if defined(SEQGEN_MPI)
seqgen::MpiSession* g_mpi = nullptr;  // main()'s
#endif
bool is_rank0() {
#if defined(SEQGEN_MPI)
  return g_mpi->rank() == 0;
#else
  return true;
#endif
}

// What the program is doing, for the message of an allocation that fails anyway.
const char* g_phase = "starting";

struct Args {
  std::string model = "gpt";
  seqgen::Index layers = 4, channels = 256, heads = 4, embedding = 64, context = 0;
  double dropout = 0.0;
  bool untie = false;
  seqgen::TrainOptions train;
  double minutes = 0;
  std::string data, tokenizer = "char", out = "model.ckpt", resume;
  seqgen::Index vocab_size = 1024;  // --tokenizer bpe
  std::string out_target;  // where the checkpoint is written: --out, with a symlink followed
  bool overwrite = false;
  double val_fraction = 0.1;
  std::int64_t eval_interval = 200, eval_windows = 40, final_eval_windows = std::int64_t(1) << 40, sample_interval = 1000, sample_tokens = 200;
  std::int64_t save_interval = 0, log_interval = 50;
  std::string metrics;  // the JSON-lines log; empty with --no-metrics
  bool no_metrics = false;
  int threads = 0;
  bool zero = false;  // under mpirun: the AdamW moments sharded over the ranks
  bool recompute = false;  // GPT: activation checkpointing (Trainer::set_recompute)
  bool warmup_given = false;
  std::string init;                        // a pretrained GPT-2 file to start from
  cli::Gpt2TokenizerFiles gpt2_tokenizer;  // its tokenizer
};

// A checkpoint could not be written: reported as it is, not followed by another attempt to save.
struct SaveFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// A sample cut short by SIGINT or SIGTERM.
struct Interrupted {};

// --out must never replace an input, a device or a checkpoint the user did not hand over: an
// existing file is replaced only when it is the checkpoint being resumed, or when --overwrite is
// given and it is a seqgen checkpoint. Everything a save will need is checked now, before the
// first step (CheckpointWriter::check_destination), so a bad path costs no training time.
void check_output(const Args& args) {
  using seqgen::check;
  using seqgen::IoError;
  check<IoError>(!args.out.empty(), "--out is empty: give the checkpoint a file name");
  const std::string& out = args.out_target;
  check<IoError>(!cli::same_file(out, args.data), "--out '", args.out, "' is the training text --data '", args.data,
                 "': refusing to overwrite an input; choose another --out");
  struct stat st;
  if (::stat(out.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    const bool resuming_it = !args.resume.empty() && cli::same_file(out, args.resume);
    const bool checkpoint = cli::looks_like_checkpoint(out);
    check<IoError>(resuming_it || checkpoint || st.st_size == 0, "--out '", args.out,
                   "' exists and is not a seqgen checkpoint: refusing to replace it, even with --overwrite");
    check<IoError>(resuming_it || args.overwrite || st.st_size == 0, "--out '", args.out,
                   "' already holds a checkpoint: continue it with --resume '", args.out,
                   "', replace it with --overwrite, or choose another --out");
  }
  if (!args.metrics.empty()) {
    // The log is appended to on --resume and started anew otherwise: never over an input, the
    // checkpoint, or a file a new run was not allowed to replace.
    const std::string& m = args.metrics;
    for (const std::string* other : {&args.data, &args.out, &args.resume})
      check<IoError>(other->empty() || !cli::same_file(m, *other), "--metrics '", m, "' is the same file as '", *other,
                     "': choose another --metrics");
    check<IoError>(m != args.out && m != args.resume, "--metrics '", m, "' is the checkpoint's name: choose another");
    cli::require_regular_file(m, "--metrics");
    check<IoError>(!args.resume.empty() || args.overwrite || cli::file_size(m) <= 0, "--metrics '", m,
                   "' already holds a log: continue it with --resume, replace it with --overwrite, or choose another "
                   "--metrics (--no-metrics: none)");
  }
  seqgen::CheckpointWriter::check_destination(out);
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string format_duration(double s) {
  char buf[32];
  const long t = std::lround(s);
  std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

// The held-out text an evaluation scores, to turn nats/token into bits/char: the targets of its
// windows, tokens 1 .. windows·T of the validation split, and the characters (UTF-8 code points;
// a byte that is not UTF-8 counts as one) they decode to.
struct ScoredText {
  seqgen::Index tokens = 0;
  std::int64_t chars = 0;
  double chars_per_token() const { return tokens > 0 && chars > 0 ? double(chars) / double(tokens) : 1.0; }
};
ScoredText scored_text(const seqgen::TokenDataset& data, const seqgen::Tokenizer& tok, seqgen::Index T,
                       std::int64_t windows) {
  using namespace seqgen;
  ScoredText s;
  s.tokens = std::min<std::int64_t>(windows, data.num_eval_windows(Split::val, T)) * T;
  if (tok.kind() == Tokenizer::Kind::characters) {
    s.chars = s.tokens;
    return s;
  }
  for (Index i = 1; i <= s.tokens; ++i)
    for (unsigned char c : tok.decode_token(data.at(Split::val, i))) s.chars += (c & 0xC0) != 0x80;
  return s;
}
struct Units {
  double cpt = 1, final_cpt = 1;  // characters per token of the periodic and of the final evaluations
  ScoredText final_text;
};

// --tokenizer bpe: the vocabulary is learned from the training part of the text only. The split
// is made on tokens (the last ⌊n·f⌋ are held out), so the learning text is the first (1 - f) of
// the bytes, then shortened, if need be, until it ends where the held-out tokens begin.
seqgen::Tokenizer learn_bpe(const std::string& text, seqgen::Index vocab_size, double val_fraction) {
  using namespace seqgen;
  const auto t0 = Clock::now();
  BpeTrainOptions o;
  o.vocab_size = vocab_size;
  std::size_t cut = std::size_t(double(text.size()) * (1.0 - val_fraction));
  for (int round = 0;; ++round) {
    Tokenizer tok = Tokenizer::bpe(train_bpe(std::string_view(text).substr(0, cut), o));
    if (val_fraction == 0) return tok;
    const std::vector<Token> ids = tok.encode(text);
    const auto n_val = std::size_t(std::floor(double(ids.size()) * val_fraction + 1e-9));  // as TokenDataset
    std::size_t val_start = 0;  // byte offset of the first held-out token
    for (std::size_t i = 0; i + n_val < ids.size(); ++i) val_start += tok.bpe_vocab()->token(ids[i]).size();
    if (val_start >= cut || round == 3) {
      std::printf("tokenizer: bpe, %lld tokens learned from the first %zu bytes (held-out text starts at byte %zu)"
                  " in %.1f s\n", (long long)tok.vocab_size(), cut, val_start, seconds_since(t0));
      check<ConfigError>(val_start >= cut, "--tokenizer bpe: could not keep the held-out text out of the vocabulary's "
                                           "training text (", cut - val_start, " bytes overlap)");
      return tok;
    }
    cut = val_start;
  }
}

template <typename Model>
int run(seqgen::Trainer<Model>& trainer, const Args& args, const Units& units, double estimate) {
  using namespace seqgen;
  // mpirun hands rank 0 a terminal of its own even when its output goes to a file: progress lines.
#if defined(SEQGEN_MPI)
  const bool tty = isatty(STDOUT_FILENO) && !g_mpi->active();
#else
  const bool tty = isatty(STDOUT_FILENO);
#endif
  const TrainOptions& o = trainer.options;
  const double tokens_per_step = double(o.batch * o.seq_len);
  const auto start = Clock::now();
  const std::int64_t first_step = trainer.step_count();
  double loss_sum = 0, last_train_loss = NAN, val_loss = NAN;
  std::int64_t loss_count = 0;
  cli::MetricsLog log;
  double log_loss_sum = 0;  // the train losses since the last "step" line
  std::int64_t log_loss_count = 0;
  if (!args.metrics.empty()) {
    log.open(args.metrics, args.resume.empty() ? -1 : first_step);
    log.write({{"type", args.resume.empty() ? "start" : "resume"}, {"step", first_step}, {"model", args.model},
               {"params", count_params(trainer.model)}, {"batch", o.batch}, {"seq_len", o.seq_len},
               {"steps", o.steps}, {"threads", seqgen::num_threads()}, {"checkpoint", args.out},
               {"elapsed", log.elapsed_offset()}});
  }
  const auto tokens_at = [&](std::int64_t step) { return step * std::int64_t(o.batch * o.seq_len); };
  int fits = args.minutes > 0 ? 0 : 2;  // schedule fits still to do for a time budget
  bool in_step = false;
  std::int64_t saved_step = -1;  // the step of the last checkpoint this process wrote
#if defined(SEQGEN_MPI)
  std::optional<DataParallel<Model>> dp;  // several ranks: this one's share of each batch
  if (g_mpi->world() > 1) {
    DataParallelOptions dpo;
    dpo.shard_optimizer = args.zero;
    dp.emplace(g_mpi->comm(), trainer, dpo);
  }
#else
  const std::optional<int> dp;
#endif

  auto save = [&] {
    g_phase = "saving";
    try {
#if defined(SEQGEN_MPI)
      if (dp) dp->save(args.out_target);  // every rank; rank 0 writes
      else
#endif
      trainer.save(args.out_target);
    } catch (const std::exception& e) {
      throw SaveFailed(std::string(e.what()) + "; '" + args.out + "' keeps its previous contents" +
                       (saved_step >= 0 ? " (step " + std::to_string(saved_step) + ")" : std::string()));
    }
    saved_step = trainer.step_count();
  };

  // Periodic evaluations read eval_windows windows; the last one reads the whole split. Without a
  // validation split (--val-fraction 0) there is nothing to evaluate.
  const bool validate = trainer.data().size(Split::val) > 0;
  trainer.should_stop = [] { return g_signal != 0; };
  auto eval = [&](Index windows) {
    if (!validate) return;
    g_phase = "evaluating";
    val_loss = trainer.evaluate(Split::val, windows);
    const double cpt = windows == args.final_eval_windows ? units.final_cpt : units.cpt;
    log.write({{"type", "eval"}, {"step", trainer.step_count()}, {"tokens", tokens_at(trainer.step_count())},
               {"val_loss", val_loss}, {"val_bits_per_char", val_loss / std::log(2.0) / cpt},
               {"windows", std::min<Index>(windows, trainer.data().num_eval_windows(Split::val, o.seq_len))},
               {"elapsed", log.elapsed_offset() + seconds_since(start)}});
    if (tty) std::printf("\n");
    std::printf("step %lld: val_loss %.4f nats/token, %.4f bits/char\n", (long long)trainer.step_count(), val_loss,
                val_loss / std::log(2.0) / cpt);
    std::fflush(stdout);
  };
  // Streamed as it is produced, and cut short within a token by SIGINT or SIGTERM.
  auto sample = [&] {
    g_phase = "sampling";
    Rng rng(o.seed + std::uint64_t(trainer.step_count()));
    SamplingOptions so;
    so.temperature = 0.8;
    std::printf("--- sample ---\n");
    try {
      generate_text(trainer.model, trainer.tokenizer, "", args.sample_tokens, so, rng, [](const std::string& piece) {
        if (g_signal) throw Interrupted{};
        std::fwrite(piece.data(), 1, piece.size(), stdout);
      });
    } catch (const Interrupted&) {
      std::printf(" [interrupted]");
    }
    std::printf("\n--------------\n");
    std::fflush(stdout);
  };

  // Anything thrown mid-run (an evaluation, a sample) first saves the progress; a failed save or a
  // failed step does not (a step that throws is half done, a non-finite one must not be saved).
  try {
  // Several ranks stop on the signal they agreed on after a step, never on one that reached only
  // some of them since: a rank leaving the loop alone would wait forever in another collective.
  std::sig_atomic_t agreed_signal = 0;
  while (trainer.step_count() < o.steps && !(dp ? agreed_signal : g_signal)) {
    g_phase = "training";
    in_step = true;
    const double loss = trainer.step();
    in_step = false;
    double elapsed = seconds_since(start);
#if defined(SEQGEN_MPI)
    if (dp) {  // the ranks agree on a signal and on the time, so that they stop at the same step
      double agreed[2] = {double(g_signal), elapsed};
      dp->max(agreed, 2);
      agreed_signal = std::sig_atomic_t(agreed[0]);
      if (agreed_signal) g_signal = agreed_signal;
      elapsed = agreed[1];
    }
#endif
    if (trainer.last_step_skipped()) {
      std::fprintf(stderr, "%strain: step %lld skipped: loss %g, gradient norm %g (%lld of --skip-nonfinite %lld)\n",
                   tty ? "\n" : "", (long long)trainer.step_count() + 1, loss, trainer.last_grad_norm(),
                   (long long)trainer.skipped_steps(), (long long)o.skip_nonfinite);
      continue;
    }
    loss_sum += loss;
    ++loss_count;
    log_loss_sum += loss;
    ++log_loss_count;
    last_train_loss = loss;
    const std::int64_t done = trainer.step_count() - first_step;
    // With a time budget, the schedule's length is fitted to the measured step time: roughly
    // after 10 steps, then once more after 30% of the budget, when the slow first steps (cold
    // caches, page faults) no longer weigh on the estimate. The refit moves the cosine slightly.
    const double budget = args.minutes * 60;
    if (fits < 2 && done >= 10 && (fits == 0 || elapsed > 0.3 * budget)) {
      // --minutes is at most 1e6, so this fits an int64 unless steps take under ~1e-7 s.
      const auto planned = std::int64_t(std::min(double(done) * budget / elapsed, 1e15));
      trainer.options.steps = std::max<std::int64_t>(trainer.step_count() + 1, first_step + planned);
      if (!args.warmup_given) trainer.options.warmup = std::min<std::int64_t>(100, trainer.options.steps / 10);
      trainer.options.warmup = std::min(trainer.options.warmup, trainer.options.steps);
      ++fits;
    }
    if (args.minutes > 0 && elapsed > args.minutes * 60) break;
    const double tps = double(done) * tokens_per_step / elapsed;
    const double eta = double(o.steps - trainer.step_count()) * elapsed / double(done);
    if (tty) {
      std::printf("\rstep %lld/%lld  loss %.4f  lr %.2e  %.0f tok/s  %s elapsed  ETA %s   ",
                  (long long)trainer.step_count(), (long long)o.steps, loss, trainer.learning_rate(), tps,
                  format_duration(elapsed).c_str(), format_duration(eta).c_str());
      std::fflush(stdout);
    } else if (trainer.step_count() % args.log_interval == 0 || done == 1) {
      std::printf("step %lld/%lld loss %.4f lr %.2e tok/s %.0f elapsed %s eta %s\n", (long long)trainer.step_count(),
                  (long long)o.steps, loss, trainer.learning_rate(), tps, format_duration(elapsed).c_str(),
                  format_duration(eta).c_str());
      std::fflush(stdout);
    }
    if (trainer.step_count() % args.log_interval == 0 || done == 1) {
      log.write({{"type", "step"}, {"step", trainer.step_count()}, {"tokens", tokens_at(trainer.step_count())},
                 {"train_loss", log_loss_sum / double(log_loss_count)},
                 {"lr", WarmupCosineLr{o.lr, o.min_lr, o.warmup, o.steps}(trainer.step_count() - 1)},
                 {"grad_norm", trainer.last_grad_norm()}, {"tokens_per_s", tps},
                 {"elapsed", log.elapsed_offset() + elapsed}});
      log_loss_sum = 0;
      log_loss_count = 0;
    }
    if (args.eval_interval > 0 && trainer.step_count() % args.eval_interval == 0) eval(args.eval_windows);
    if (args.sample_tokens > 0 && args.sample_interval > 0 && trainer.step_count() % args.sample_interval == 0 &&
        is_rank0())
      sample();
    if (args.save_interval > 0 && trainer.step_count() % args.save_interval == 0) save();
  }
  } catch (const seqgen::NonFiniteError& e) {
    std::fprintf(stderr, "%strain: error: %s\ntrain: stopped without saving: '%s' %s. Lower --lr, keep --clip on, or "
                 "tolerate such steps with --skip-nonfinite N\n",
                 tty ? "\n" : "", e.what(), args.out.c_str(),
                 saved_step >= 0 ? ("holds step " + std::to_string(saved_step)).c_str()
                                 : "was not written by this run");
    return kExitNonFinite;
  } catch (const SaveFailed&) {
    throw;
  } catch (const std::exception&) {
    if (in_step || dp) throw;  // several ranks: the save is a collective the others are not in
    std::fprintf(stderr, "\ntrain: saving step %lld to %s before reporting the error\n",
                 (long long)trainer.step_count(), args.out.c_str());
    save();
    throw;
  }
  if (tty) std::printf("\n");
  const double elapsed = seconds_since(start);
  const std::int64_t done = trainer.step_count() - first_step;
  save();
  if (g_signal) {
    if (is_rank0())
      std::fprintf(stderr, "train: %s received, checkpoint saved to %s at step %lld\n",
                   g_signal == SIGINT ? "SIGINT" : "SIGTERM", args.out.c_str(), (long long)trainer.step_count());
    return 128 + g_signal;
  }
  if (!g_signal) eval(args.final_eval_windows);
  const double peak = peak_resident_bytes();
  if (!g_signal && args.sample_tokens > 0 && is_rank0()) sample();
  if (g_signal) return 128 + g_signal;  // interrupted during the final evaluation: the checkpoint is saved
  std::printf("memory: estimated %.1f MiB, peak resident %.1f MiB\n", estimate / (1 << 20), peak / (1 << 20));
  char val[160] = "val_loss=none val_bits_per_char=none";  // no validation split
  if (validate)
    std::snprintf(val, sizeof val, "val_loss=%.4f val_bits_per_char=%.4f val_tokens=%lld val_chars=%lld", val_loss,
                  val_loss / std::log(2.0) / units.final_cpt, (long long)units.final_text.tokens,
                  (long long)units.final_text.chars);
  std::printf("final: steps=%lld train_loss=%.4f %s tokens_per_s=%.0f checkpoint=%s\n", (long long)trainer.step_count(),
              loss_count ? loss_sum / double(loss_count) : last_train_loss, val, done > 0 ? double(done) * tokens_per_step / elapsed : 0.0,
              args.out.c_str());
  return 0;
}

// Starts a run of a model of `config`, or resumes the one in `ckpt`, once the memory it will need
// is known to be there.
template <typename Model>
int start_or_resume(const CLI::App& app, const Args& args, const seqgen::Tokenizer& tok,
                    const seqgen::TokenDataset& data, const seqgen::CheckpointReader* ckpt,
                    const decltype(Model::config)& fresh_config, int threads,
                    std::optional<seqgen::Gpt<float>>& pretrained) {
  using namespace seqgen;
  Units cpt;
  {
    const Index T = ckpt ? ckpt->get_int("train.seq_len") : args.train.seq_len;
    cpt.final_text = scored_text(data, tok, T, args.final_eval_windows);
    cpt.final_cpt = cpt.final_text.chars_per_token();
    cpt.cpt = scored_text(data, tok, T, args.eval_windows).chars_per_token();
  }
  g_phase = "building the model";
  // The memory a run will need (--recompute is checked against the model kind by Trainer).
  const auto training_need = [&](const decltype(Model::config)& config, Index B, Index T) {
    if constexpr (std::is_same_v<Model, Gpt<float>>) return training_bytes(config, B, T, threads, args.recompute);
    return training_bytes(config, B, T, threads);
  };
  if (ckpt) {
    const TrainOptions stored = read_options(*ckpt);
    const double need = training_need(load_config<Model>(*ckpt), stored.batch, stored.seq_len);
    require_memory(need, "resuming '" + args.resume + "' (batch " + std::to_string(stored.batch) + ", seq_len " +
                             std::to_string(stored.seq_len) + ", fixed by the checkpoint)");
    auto trainer = Trainer<Model>::load(*ckpt, data);
    trainer.set_recompute(args.recompute);
    // Options that may change on resume are applied, and said so.
    TrainOptions o = trainer.options;
    const auto change = [&](const char* option, auto& field, auto value) {
      if (app.count(option) == 0 || field == value) return;
      std::printf("resume: %s %s replaces the checkpoint's %s\n", option, cli::number_text(value).c_str(),
                  cli::number_text(field).c_str());
      field = value;
    };
    // --steps sets the run's new total; without it the run continues to its stored total.
    if (app.count("--steps") && args.train.steps < trainer.step_count())
      std::printf("resume: the checkpoint is at step %lld, past --steps %lld: no step to train\n",
                  (long long)trainer.step_count(), (long long)args.train.steps);
    change("--steps", o.steps, std::max(args.train.steps, trainer.step_count()));
    change("--lr", o.lr, args.train.lr);
    change("--min-lr", o.min_lr, args.train.min_lr);
    change("--warmup", o.warmup, args.train.warmup);
    if (!args.warmup_given) o.warmup = std::min(o.warmup, o.steps);
    change("--weight-decay", o.weight_decay, args.train.weight_decay);
    change("--clip", o.clip, args.train.clip);
    // --skip-nonfinite sets the budget of the whole run, the steps skipped before included.
    change("--skip-nonfinite", o.skip_nonfinite, args.train.skip_nonfinite);
    trainer.set_options(o);
    std::printf("resumed %s at step %lld of %lld\n", args.resume.c_str(), (long long)trainer.step_count(),
                (long long)trainer.options.steps);
    return run(trainer, args, cpt, need);
  }
  const double need = training_need(fresh_config, args.train.batch, args.train.seq_len);
  require_memory(need, "training this model at --batch " + std::to_string(args.train.batch) + " --seq-len " +
                           std::to_string(args.train.seq_len),
                 "lower --batch, --seq-len, --channels or --layers");
  Rng init_rng(args.train.seed);
  const auto fresh_model = [&]() -> Model {
    if constexpr (std::is_same_v<Model, Gpt<float>>)
      if (pretrained) return std::move(*pretrained);  // --init: the weights of the GPT-2 file
    return Model(fresh_config, init_rng);
  };
  Trainer<Model> trainer(fresh_model(), tok, data, args.train);
  trainer.set_recompute(args.recompute);
  if (!args.init.empty()) std::printf("init: the weights of '%s'\n", args.init.c_str());
  std::printf("model: %s, %lld parameters, %.1f MFLOP per token per step; data: %lld train / %lld val tokens\n",
              args.model.c_str(), (long long)count_params(trainer.model),
              trainer.model.train_flops_per_token(trainer.options.seq_len) / 1e6,
              (long long)data.size(Split::train), (long long)data.size(Split::val));
  return run(trainer, args, cpt, need);
}

// Options that belong to one family of models are an error with another.
void check_model_options(const CLI::App& app, const std::string& kind) {
  const bool gpt = kind == "gpt";
  for (const char* option : {"--heads", "--context", "--dropout", "--untie", "--recompute"})
    seqgen::check<seqgen::ConfigError>(gpt || app.count(option) == 0, option, " applies to gpt models, not ", kind);
  seqgen::check<seqgen::ConfigError>(!gpt || app.count("--embedding") == 0,
                                     "--embedding applies to rnn, lstm and gru models, not gpt (use --channels)");
}

// On --resume, the options the checkpoint fixes (the model, the tokenizer, the batch, the
// sequence length, the seed, the split) may be repeated but not changed.
void check_fixed_options(const CLI::App& app, const Args& args, const seqgen::CheckpointReader& r,
                         const seqgen::Tokenizer& tok, const std::string& kind) {
  const auto fixed = [&](const char* option, bool same, const std::string& given, const std::string& stored) {
    seqgen::check<seqgen::ConfigError>(app.count(option) == 0 || same, option, " ", given, " conflicts with --resume '",
                                       args.resume, "', whose run has ", stored,
                                       " (the checkpoint fixes it: start a new run to change it)");
  };
  const auto fixed_int = [&](const char* option, std::int64_t given, const char* key) {
    const std::int64_t stored = r.get_int(key);
    fixed(option, given == stored, std::to_string(given), std::string(key) + " = " + std::to_string(stored));
  };
  const auto fixed_double = [&](const char* option, double given, const char* key) {
    const double stored = r.get_double(key);
    fixed(option, given == stored, cli::number_text(given), std::string(key) + " = " + cli::number_text(stored));
  };
  fixed_int("--layers", args.layers, "config.layers");
  if (kind == "gpt") {
    fixed_int("--channels", args.channels, "config.channels");
    fixed_int("--heads", args.heads, "config.heads");
    fixed_int("--context", args.context, "config.context");
    fixed_double("--dropout", args.dropout, "config.dropout");
    fixed("--untie", r.get_int("config.tie_weights") == 0, "", "tied embeddings");
  } else {
    fixed_int("--channels", args.channels, "config.hidden");
    fixed_int("--embedding", args.embedding, "config.embedding");
  }
  fixed_int("--seq-len", args.train.seq_len, "train.seq_len");
  fixed_int("--batch", args.train.batch, "train.batch");
  fixed_int("--seed", std::int64_t(args.train.seed), "train.seed");
  fixed_double("--val-fraction", args.val_fraction, "data.val_fraction");
  const std::string stored_tok = tok.kind() == seqgen::Tokenizer::Kind::bytes ? "byte"
                                 : tok.kind() == seqgen::Tokenizer::Kind::bpe ? "bpe" : "char";
  fixed("--tokenizer", args.tokenizer == stored_tok, args.tokenizer, "a " + stored_tok + " tokenizer");
  fixed("--vocab-size", tok.kind() == seqgen::Tokenizer::Kind::bpe && args.vocab_size == tok.vocab_size(),
        std::to_string(args.vocab_size), "a " + stored_tok + " tokenizer of " + std::to_string(tok.vocab_size()) + " tokens");
}

}  // namespace

int train_main(int argc, char** argv) {
  using namespace seqgen;
  using cli::add_number;
  constexpr Index kMaxDim = Index(1) << 24, kMaxTokens = Index(1) << 20;
  constexpr std::int64_t kMaxSteps = std::int64_t(1) << 53;
  Args args;
  TrainOptions& t = args.train;
  CLI::App app{"Train a GPT or RNN/LSTM/GRU language model on a text file"};
  app.option_defaults()->always_capture_default();  // --help shows every default
  app.add_option("--data", args.data, "Training text file")->required();
  app.add_option("--model", args.model, "Model kind")->check(CLI::IsMember({"gpt", "rnn", "lstm", "gru"}));
  add_number(app, "--layers", args.layers, Index(1), kMaxDim, "Layers (L)");
  add_number(app, "--channels", args.channels, Index(1), kMaxDim, "GPT width C, or RNN hidden size H");
  add_number(app, "--heads", args.heads, Index(1), kMaxDim, "GPT attention heads (NH), dividing --channels");
  add_number(app, "--embedding", args.embedding, Index(1), kMaxDim, "RNN token embedding width");
  add_number(app, "--context", args.context, Index(1), kMaxDim, "GPT context length (default: --seq-len)");
  add_number(app, "--seq-len,-T", t.seq_len, Index(1), kMaxTokens, "Tokens per training sequence (T)");
  add_number(app, "--batch,-B", t.batch, Index(1), kMaxTokens, "Sequences per batch (B)");
  add_number(app, "--steps", t.steps, std::int64_t(1), kMaxSteps, "Training steps (with --resume: the new total)");
  add_number(app, "--minutes", args.minutes, 0.0, 1e6, "Time budget in minutes; the schedule is fitted to it");
  add_number(app, "--lr", t.lr, 1e-12, 1e6, "Peak learning rate");
  add_number(app, "--min-lr", t.min_lr, 0.0, 1e6, "Learning rate at the end of the cosine decay, <= --lr");
  add_number(app, "--warmup", t.warmup, std::int64_t(0), kMaxSteps, "Linear warm-up steps, <= --steps (default: 100, or a tenth of a shorter run)");
  add_number(app, "--weight-decay", t.weight_decay, 0.0, 1e3, "AdamW decoupled weight decay (matrices only)");
  add_number(app, "--clip", t.clip, 0.0, 1e30, "Max global gradient norm (0: off)");
  add_number(app, "--dropout", args.dropout, 0.0, 0.99, "GPT dropout probability");
  app.add_flag("--untie", args.untie, "GPT: separate output head instead of the token embedding");
  app.add_option("--tokenizer", args.tokenizer,
                 "char (Unicode code points), byte, or bpe (byte-level BPE learned from the training part of --data)")
      ->check(CLI::IsMember({"char", "byte", "bpe"}));
  add_number(app, "--vocab-size", args.vocab_size, Index(256), Index(65536),
             "--tokenizer bpe: tokens (256 bytes + merges; fewer when the text runs out of repeated pairs)");
  add_number(app, "--val-fraction", args.val_fraction, 0.0, 0.9,
             "Fraction of the text held out at its end (0: no validation)");
  add_number(app, "--eval-interval", args.eval_interval, std::int64_t(0), kMaxSteps,
             "Steps between validation losses (0: only at the end)");
  add_number(app, "--eval-windows", args.eval_windows, std::int64_t(1), std::int64_t(1) << 40,
             "Validation windows of T tokens per evaluation");
  add_number(app, "--final-eval-windows", args.final_eval_windows, std::int64_t(1), std::int64_t(1) << 40,
             "Validation windows at the end (default: all)");
  add_number(app, "--sample-interval", args.sample_interval, std::int64_t(0), kMaxSteps,
             "Steps between samples (0: only at the end; --sample-tokens 0: none)");
  add_number(app, "--sample-tokens", args.sample_tokens, std::int64_t(0), std::int64_t(1) << 20,
             "Length of each sample");
  add_number(app, "--save-interval", args.save_interval, std::int64_t(0), kMaxSteps,
             "Steps between checkpoints (0: only at the end)");
  add_number(app, "--log-interval", args.log_interval, std::int64_t(1), kMaxSteps,
             "Steps between progress lines (when not on a terminal) and --metrics lines");
  app.add_option("--metrics", args.metrics,
                 "JSON-lines log of the training and validation losses, appended to on --resume (default: the "
                 "--out name with .metrics.jsonl)");
  app.add_flag("--no-metrics", args.no_metrics, "Write no --metrics log");
  app.add_option("--out,-o", args.out, "Checkpoint to write (default: model.ckpt, or the --resume file)");
  app.add_flag("--overwrite", args.overwrite, "Replace an existing checkpoint at --out, and its --metrics log (a new run refuses otherwise)");
  app.add_option("--resume", args.resume, "Checkpoint to continue from");
  add_number(app, "--seed", t.seed, std::uint64_t(0), std::numeric_limits<std::uint64_t>::max(), "Random seed");
  add_number(app, "--threads", args.threads, 0, 4096, "Threads (0: every usable CPU; more than that are capped)");
  app.add_flag("--recompute", args.recompute,
               "GPT: keep only each block's input and run its forward again in backward: much less memory for long "
               "--seq-len, a slower step, the same results (any run may resume with or without it)");
  app.add_flag("--zero", args.zero,
               "Under mpirun: each rank keeps the AdamW moments of 1/N of the weights only (ZeRO stage 1); the "
               "same training and checkpoints (no effect on one process)");
  app.add_option("--init", args.init,
                 "Fine-tune a pretrained GPT-2: llm.c's gpt2_124M.bin or Hugging Face's model.safetensors (it fixes "
                 "the model's shape; give its tokenizer with --llmc-tokenizer or --encoder-json + --vocab-bpe)");
  cli::add_gpt2_tokenizer_options(app, args.gpt2_tokenizer, "--llmc-tokenizer");
  add_number(app, "--skip-nonfinite", t.skip_nonfinite, std::int64_t(0), kMaxSteps,
             "Steps with a NaN/Inf loss or gradient norm to skip (no update) before stopping, over the whole run");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;  // --help is a success; every other parse error is usage
  } catch (const cli::UsageError& e) {
    std::fprintf(stderr, "train: error: %s\nRun with --help for more information.\n", e.what());
    return kExitUsage;
  } catch (const ConfigError& e) {
    std::fprintf(stderr, "train: error: %s\n", e.what());
    return kExitError;
  }
  args.warmup_given = app.count("--warmup") > 0;
  // The default warm-up is 100 steps, or a tenth of a shorter run.
  if (!args.warmup_given) t.warmup = std::min<std::int64_t>(100, t.steps / 10);
  const bool resume = app.count("--resume") > 0;
  if (app.count("--out") == 0 && resume) args.out = args.resume;
  if (args.no_metrics) {
    args.metrics.clear();
  } else if (app.count("--metrics") == 0) {
    args.metrics = std::filesystem::path(args.out).replace_extension(".metrics.jsonl").string();
  } else if (args.metrics.empty()) {
    std::fprintf(stderr, "train: error: --metrics is empty: give the log a file name, or use --no-metrics\n");
    return kExitUsage;
  }
  if (!is_rank0()) {  // rank 0 alone prints, logs and writes
    args.metrics.clear();
    if (!std::freopen("/dev/null", "w", stdout)) return kExitError;
  }

  install_signal_handlers();
  try {
    const int threads = cli::configure_threads(args.threads, "train");
    check<ConfigError>(!resume || !args.resume.empty(), "--resume is empty: give the checkpoint to continue");
    cli::require_regular_file(args.data, "--data");
    if (resume) cli::require_regular_file(args.resume, "--resume");
    args.out_target = cli::output_target(args.out);
    if (is_rank0()) check_output(args);

    Tokenizer tok = Tokenizer::bytes();
    std::string kind = args.model;
    std::optional<CheckpointReader> ckpt;
    std::optional<Gpt<float>> pretrained;  // --init
    check<ConfigError>(!args.gpt2_tokenizer.given() || app.count("--init"), "--llmc-tokenizer, --encoder-json and "
                       "--vocab-bpe give the tokenizer of an --init GPT-2 file");
    g_phase = "reading the checkpoint";
    if (app.count("--init")) {
      check<ConfigError>(!resume, "--init starts a new run from a GPT-2 file; --resume continues a seqgen checkpoint: "
                                  "give one of them");
      check<ConfigError>(!args.init.empty(), "--init is empty: give the GPT-2 file to start from");
      for (const char* option : {"--layers", "--channels", "--context", "--untie", "--tokenizer", "--vocab-size",
                                 "--embedding"})
        check<ConfigError>(app.count(option) == 0, option, " comes from --init '", args.init,
                           "' (a GPT-2 file fixes the model's shape and its tokenizer)");
      check<ConfigError>(args.model == "gpt", "--init loads a gpt model, not ", args.model);
      g_phase = "loading the --init model";
      tok = cli::load_gpt2_tokenizer(args.gpt2_tokenizer, args.init);
      pretrained = cli::load_gpt2_model(args.init, app.count("--heads") ? args.heads : 0, tok);
      // Dropout is a training option, not part of the file.
      pretrained->config.dropout = args.dropout;
      pretrained->drop = Dropout<float>(args.dropout);
      for (auto& block : pretrained->blocks) block.drop = Dropout<float>(args.dropout);
      check<ConfigError>(t.seq_len <= pretrained->config.context, "--seq-len ", t.seq_len,
                         " exceeds the context ", pretrained->config.context, " of --init '", args.init, "'");
      args.tokenizer = "bpe";
      std::printf("init: '%s' (%s), GPT-2 of C = %lld, L = %lld, NH = %lld, V = %lld, context %lld\n",
                  args.init.c_str(), gpt2_format_name(gpt2_file_format(args.init)),
                  (long long)pretrained->config.channels, (long long)pretrained->config.layers,
                  (long long)pretrained->config.heads, (long long)pretrained->config.vocab_size,
                  (long long)pretrained->config.context);
    }
    if (resume) {
      ckpt = CheckpointReader::load(args.resume);
      check<ConfigError>(!is_exported_model(*ckpt), "--resume '", args.resume,
                         "' is an exported model (weights only, no optimizer state): resume from the training "
                         "checkpoint it was exported from");
      kind = checkpoint_model_kind(*ckpt);
      // The model comes from the checkpoint; a --model that names another kind is a mistake.
      check<ConfigError>(app.count("--model") == 0 || args.model == kind, "--model ", args.model,
                         " conflicts with --resume '", args.resume, "', which holds a '", kind, "' model");
      tok = Tokenizer::from_bytes(ckpt->get_bytes("tokenizer"));
      check_model_options(app, kind);
      check_fixed_options(app, args, *ckpt, tok, kind);
      args.model = kind;
      args.val_fraction = ckpt->get_double("data.val_fraction", 0, 0.9);  // the split the run trained on
    } else {
      if (!pretrained) check_model_options(app, kind);
      check<ConfigError>(t.min_lr <= t.lr, "--min-lr ", t.min_lr, " must not exceed --lr ", t.lr);
      check<ConfigError>(t.warmup <= t.steps, "--warmup ", t.warmup, " must not exceed --steps ", t.steps);
      t.validate();  // before the model is allocated
    }
    const Index T = resume ? ckpt->get_int("train.seq_len", 1, kMaxTokens) : t.seq_len;

    const double text_size = cli::file_size(args.data);
    if (text_size > 0)
      require_memory(text_bytes(text_size), "--data '" + args.data + "' (" + format_bytes(text_size) +
                                                ", read and tokenized)");
    g_phase = "reading --data";
    const std::string text = read_text_file(args.data);
    if (!resume && !pretrained && args.tokenizer == "char") tok = Tokenizer::characters(text);
    if (!resume && !pretrained && args.tokenizer == "bpe") tok = learn_bpe(text, args.vocab_size, args.val_fraction);
    check<ConfigError>(resume || args.tokenizer == "bpe" || app.count("--vocab-size") == 0,
                       "--vocab-size applies to --tokenizer bpe, not ", args.tokenizer);
    const TokenDataset data = TokenDataset::from_text(text, tok, args.val_fraction);
    const Index train_tokens = data.size(Split::train);
    check<ConfigError>(train_tokens > T, "--data '", args.data, "' has ", train_tokens,
                       " training tokens, fewer than one window of T = ", T,
                       " tokens and its target: use a longer text or lower --seq-len");
    // A validation split must hold one window, or the run could not report a validation loss.
    const Index val = data.size(Split::val);
    check<ConfigError>(args.val_fraction == 0 || val > T, "--val-fraction ", args.val_fraction, " holds out ", val,
                       " tokens of --data '", args.data, "', fewer than one window of T = ", T,
                       " tokens and its target: raise --val-fraction, lower --seq-len, or use --val-fraction 0 to "
                       "train without validation");

    const CheckpointReader* stored = ckpt ? &*ckpt : nullptr;
    return visit_model_kind(kind, [&](auto type) {
      using Model = typename decltype(type)::type;
      typename Model::Config c;  // a new run's; a resumed one takes the checkpoint's
      c.vocab_size = tok.vocab_size();
      c.layers = args.layers;
      if constexpr (std::is_same_v<typename Model::Config, GptConfig>) {  // the options each family reads
        c.context = args.context > 0 ? args.context : t.seq_len;
        c.channels = args.channels;
        c.heads = args.heads;
        c.dropout = args.dropout;
        c.tie_weights = !args.untie;
      } else {
        c.cell = Model::kCell;
        c.embedding = args.embedding;
        c.hidden = args.channels;
      }
      if constexpr (std::is_same_v<Model, Gpt<float>>)
        if (pretrained) c = pretrained->config;
      if (!resume) c.validate();
      return start_or_resume<Model>(app, args, tok, data, stored, c, threads, pretrained);
    });
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "train: error: out of memory while %s (an allocation failed): lower --batch, --seq-len, "
                 "--channels or --layers, or free memory\n", g_phase);
    return kExitError;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train: error: %s\n", e.what());
    return kExitError;
  }
}

int main(int argc, char** argv) {
#if defined(SEQGEN_MPI)
  seqgen::MpiSession mpi(argc, argv);  // MPI only when a launcher started this process
  g_mpi = &mpi;
  const int status = train_main(argc, argv);
  // A rank that fails (its message is on stderr) ends the whole job: the others may be waiting for
  // it in a collective. A signal ends every rank at the same step, after one save.
  if (mpi.world() > 1 && status != 0 && status != 128 + SIGINT && status != 128 + SIGTERM) mpi.abort(status, "");
  return status;
#else
  return train_main(argc, argv);
#endif
}
