// train: trains a GPT or an RNN/LSTM/GRU language model on a text file.
//
//   ./train --data input.txt --model gpt --minutes 3 --out model.ckpt
//   ./train --data input.txt --resume model.ckpt --steps 2000     # continue exactly where it stopped
//
// The last line is a summary:
//   final: steps=… train_loss=… val_loss=… val_bits_per_char=… tokens_per_s=… checkpoint=…
//
// Exit status (docs/reliability.md):
//   0    done; the checkpoint holds the last step
//   1    an error: bad input, an option out of range, a file that cannot be read or written
//        (the reason on stderr; a checkpoint that could not be written keeps its previous contents)
//   2    the command line does not parse (unknown option, missing value)
//   3    a NaN or infinite loss or gradient norm (beyond --skip-nonfinite): the checkpoint is left
//        as the last save before it wrote it
//   130  SIGINT (Ctrl-C), 143 SIGTERM: a checkpoint of the last finished step was saved
#include <CLI/CLI.hpp>
#include <seqgen/seqgen.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>

namespace {

constexpr int kExitError = 1, kExitUsage = 2, kExitNonFinite = 3;

// SIGINT and SIGTERM ask the loop to stop; the handler is then reset, so a second Ctrl-C during
// the final save kills the program at once (the save is atomic, so the old checkpoint survives).
volatile std::sig_atomic_t g_signal = 0;
extern "C" void on_signal(int sig) { g_signal = sig; }

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

struct Args {
  std::string model = "gpt";
  seqgen::Index layers = 4, channels = 256, heads = 4, embedding = 64, context = 0;
  double dropout = 0.0;
  bool untie = false;
  seqgen::TrainOptions train;
  double minutes = 0;
  std::string data, tokenizer = "char", out = "model.ckpt", resume;
  double val_fraction = 0.1;
  std::int64_t eval_interval = 200, eval_windows = 40, final_eval_windows = std::int64_t(1) << 40, sample_interval = 1000, sample_tokens = 200;
  std::int64_t save_interval = 0;
  int threads = 0;
  bool warmup_given = false;
  bool steps_given = false;
  bool skip_given = false;
};

// A checkpoint could not be written: reported as it is, not followed by another attempt to save.
struct SaveFailed : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An input file must be a regular file: opening a FIFO would block forever, a device never ends.
// Missing files and folders are left to the readers, whose messages say so.
void require_regular_file(const std::string& path, const char* what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) return;
  seqgen::check<seqgen::IoError>(S_ISREG(st.st_mode), what, " '", path,
                                 "' is not a regular file (a FIFO, socket or device?)");
}

// Checked before training, so a run does not learn for hours and then fail to save: the folder of
// `out` must exist and be writable. A disk that fills up later is reported by the save itself.
void require_writable_folder(const std::string& out) {
  std::string dir = std::filesystem::path(out).parent_path().string();
  if (dir.empty()) dir = ".";
  struct stat st;
  const int found = ::stat(dir.c_str(), &st) == 0 ? 0 : errno;
  seqgen::check<seqgen::IoError>(found == 0, "cannot write checkpoint '", out, "': its folder '", dir, "': ",
                                 std::strerror(found));
  seqgen::check<seqgen::IoError>(S_ISDIR(st.st_mode), "cannot write checkpoint '", out, "': '", dir,
                                 "' is not a folder");
  const int writable = ::access(dir.c_str(), W_OK) == 0 ? 0 : errno;
  seqgen::check<seqgen::IoError>(writable == 0, "cannot write checkpoint '", out, "': its folder '", dir,
                                 "' is not writable: ", std::strerror(writable));
  seqgen::check<seqgen::IoError>(!std::filesystem::is_directory(out), "cannot write checkpoint '", out,
                                 "': it is a folder");
}

// Refuses a model whose weights, gradients and AdamW moments (16 bytes per parameter) plus the
// logits and one activation per layer (a lower bound of what training holds) exceed the machine's
// memory: allocating it would end in std::bad_alloc at best, the OOM killer at worst.
void require_memory(double params, double tokens, double width) {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return;
  const double physical = double(pages) * double(page);
  const double need = 16 * params + 4 * tokens * width;
  seqgen::check<seqgen::ConfigError>(need <= physical, "the model and batch need at least ", need / 1e9,
                                     " GB to train, more than this machine's ", physical / 1e9,
                                     " GB of memory (lower --channels, --layers, --batch or --seq-len)");
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string format_duration(double s) {
  char buf[32];
  const long t = std::lround(s);
  std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

// Characters per token of the validation text, to turn nats/token into bits/char.
double chars_per_token(const seqgen::TokenDataset& data, const seqgen::Tokenizer& tok) {
  const seqgen::Index n = data.size(seqgen::Split::val);
  if (n == 0 || tok.kind() == seqgen::Tokenizer::Kind::characters) return 1.0;
  std::vector<seqgen::Token> ids(n);
  for (seqgen::Index i = 0; i < n; ++i) ids[i] = data.at(seqgen::Split::val, i);
  const std::string text = tok.decode(ids);
  std::size_t chars = 0;
  for (unsigned char c : text) chars += (c & 0xC0) != 0x80;
  return double(chars) / double(n);
}

template <typename Model>
int run(seqgen::Trainer<Model>& trainer, const Args& args, double cpt) {
  using namespace seqgen;
  const bool tty = isatty(STDOUT_FILENO);
  const TrainOptions& o = trainer.options;
  const double tokens_per_step = double(o.batch * o.seq_len);
  const auto start = Clock::now();
  const std::int64_t first_step = trainer.step_count();
  double loss_sum = 0, last_train_loss = NAN, val_loss = NAN;
  std::int64_t loss_count = 0;
  int fits = args.minutes > 0 ? 0 : 2;  // schedule fits still to do for a time budget
  bool in_step = false;
  std::int64_t saved_step = -1;  // the step of the last checkpoint this process wrote

  auto save = [&] {
    try {
      trainer.save(args.out);
    } catch (const std::exception& e) {
      throw SaveFailed(std::string(e.what()) + "; '" + args.out + "' keeps its previous contents" +
                       (saved_step >= 0 ? " (step " + std::to_string(saved_step) + ")" : std::string()));
    }
    saved_step = trainer.step_count();
  };

  // Periodic evaluations read eval_windows windows; the last one reads the whole split.
  auto eval = [&](Index windows) {
    val_loss = trainer.data().size(Split::val) > o.seq_len ? trainer.evaluate(Split::val, windows) : NAN;
    if (tty) std::printf("\n");
    std::printf("step %lld: val_loss %.4f nats/token, %.4f bits/char\n", (long long)trainer.step_count(), val_loss,
                val_loss / std::log(2.0) / cpt);
    std::fflush(stdout);
  };
  auto sample = [&] {
    Rng rng(o.seed + std::uint64_t(trainer.step_count()));
    SamplingOptions so;
    so.temperature = 0.8;
    std::printf("--- sample ---\n%s\n--------------\n",
                generate_text(trainer.model, trainer.tokenizer, "", args.sample_tokens, so, rng).c_str());
    std::fflush(stdout);
  };

  // Anything thrown mid-run (an evaluation, a sample) first saves the progress; a failed save or a
  // failed step does not (a step that throws is half done, a non-finite one must not be saved).
  try {
  while (trainer.step_count() < o.steps && !g_signal) {
    in_step = true;
    const double loss = trainer.step();
    in_step = false;
    if (trainer.last_step_skipped()) {
      std::fprintf(stderr, "%strain: step %lld skipped: loss %g, gradient norm %g (%lld of --skip-nonfinite %lld)\n",
                   tty ? "\n" : "", (long long)trainer.step_count() + 1, loss, trainer.last_grad_norm(),
                   (long long)trainer.skipped_steps(), (long long)o.skip_nonfinite);
      continue;
    }
    loss_sum += loss;
    ++loss_count;
    last_train_loss = loss;
    const double elapsed = seconds_since(start);
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
    } else if (trainer.step_count() % 50 == 0 || done == 1) {
      std::printf("step %lld/%lld loss %.4f lr %.2e tok/s %.0f elapsed %s eta %s\n", (long long)trainer.step_count(),
                  (long long)o.steps, loss, trainer.learning_rate(), tps, format_duration(elapsed).c_str(),
                  format_duration(eta).c_str());
      std::fflush(stdout);
    }
    if (args.eval_interval > 0 && trainer.step_count() % args.eval_interval == 0) eval(args.eval_windows);
    if (args.sample_tokens > 0 && args.sample_interval > 0 && trainer.step_count() % args.sample_interval == 0)
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
    if (in_step) throw;
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
    std::fprintf(stderr, "train: %s received, checkpoint saved to %s at step %lld\n",
                 g_signal == SIGINT ? "SIGINT" : "SIGTERM", args.out.c_str(), (long long)trainer.step_count());
    return 128 + g_signal;
  }
  if (!g_signal) eval(args.final_eval_windows);
  if (!g_signal && args.sample_tokens > 0) sample();
  if (g_signal) return 128 + g_signal;  // interrupted during the final evaluation: the checkpoint is saved
  std::printf("final: steps=%lld train_loss=%.4f val_loss=%.4f val_bits_per_char=%.4f tokens_per_s=%.0f checkpoint=%s\n",
              (long long)trainer.step_count(), loss_count ? loss_sum / double(loss_count) : last_train_loss, val_loss,
              val_loss / std::log(2.0) / cpt, done > 0 ? double(done) * tokens_per_step / elapsed : 0.0,
              args.out.c_str());
  return 0;
}

template <typename Model>
int start_or_resume(const Args& args, const seqgen::Tokenizer& tok, const seqgen::TokenDataset& data,
                    const seqgen::CheckpointReader* ckpt, Model fresh_model = Model()) {
  const double cpt = chars_per_token(data, tok);
  if (ckpt) {
    auto trainer = seqgen::Trainer<Model>::load(*ckpt, args.resume, data);
    // --steps sets the run's new total; without it the run continues to its stored total.
    if (args.steps_given) {
      trainer.options.steps = std::max(trainer.step_count(), args.train.steps);
      trainer.options.warmup = std::min(trainer.options.warmup, trainer.options.steps);
    }
    // --skip-nonfinite sets the budget of the whole run, the steps skipped before included.
    if (args.skip_given) trainer.options.skip_nonfinite = args.train.skip_nonfinite;
    std::printf("resumed %s at step %lld of %lld\n", args.resume.c_str(), (long long)trainer.step_count(),
                (long long)trainer.options.steps);
    return run(trainer, args, cpt);
  }
  seqgen::Trainer<Model> trainer(std::move(fresh_model), tok, data, args.train);
  std::printf("model: %s, %lld parameters, %.1f MFLOP per token per step; data: %lld train / %lld val tokens\n",
              args.model.c_str(), (long long)seqgen::count_params(trainer.model),
              seqgen::ModelTraits<Model>::train_flops_per_token(trainer.model, trainer.options.seq_len) / 1e6, (long long)data.size(seqgen::Split::train),
              (long long)data.size(seqgen::Split::val));
  return run(trainer, args, cpt);
}

}  // namespace

int main(int argc, char** argv) {
  using namespace seqgen;
  Args args;
  CLI::App app{"Train a GPT or RNN/LSTM/GRU language model on a text file"};
  app.add_option("--data", args.data, "Training text file")->required();
  app.add_option("--model", args.model, "Model kind")->check(CLI::IsMember({"gpt", "rnn", "lstm", "gru"}));
  app.add_option("--layers", args.layers, "Layers (L)");
  app.add_option("--channels", args.channels, "GPT width C, or RNN hidden size H");
  app.add_option("--heads", args.heads, "GPT attention heads (NH)");
  app.add_option("--embedding", args.embedding, "RNN token embedding width");
  app.add_option("--context", args.context, "GPT context length (default: --seq-len)");
  app.add_option("--seq-len,-T", args.train.seq_len, "Tokens per training sequence (T)");
  app.add_option("--batch,-B", args.train.batch, "Sequences per batch (B)");
  app.add_option("--steps", args.train.steps, "Training steps (with --resume: the new total)");
  app.add_option("--minutes", args.minutes, "Time budget in minutes; the schedule is fitted to it");
  app.add_option("--lr", args.train.lr, "Peak learning rate");
  app.add_option("--min-lr", args.train.min_lr, "Learning rate at the end of the cosine decay");
  app.add_option("--warmup", args.train.warmup, "Linear warm-up steps");
  app.add_option("--weight-decay", args.train.weight_decay, "AdamW decoupled weight decay (matrices only)");
  app.add_option("--clip", args.train.clip, "Max global gradient norm (0: off)");
  app.add_option("--dropout", args.dropout, "GPT dropout probability");
  app.add_flag("--untie", args.untie, "GPT: separate output head instead of the token embedding");
  app.add_option("--tokenizer", args.tokenizer, "char (Unicode code points) or byte")
      ->check(CLI::IsMember({"char", "byte"}));
  app.add_option("--val-fraction", args.val_fraction, "Fraction of the text held out at its end");
  app.add_option("--eval-interval", args.eval_interval, "Steps between validation losses (0: only at the end)");
  app.add_option("--eval-windows", args.eval_windows, "Validation windows of T tokens per evaluation");
  app.add_option("--final-eval-windows", args.final_eval_windows, "Validation windows at the end (default: all)");
  app.add_option("--sample-interval", args.sample_interval, "Steps between samples (0: only at the end; --sample-tokens 0: none)");
  app.add_option("--sample-tokens", args.sample_tokens, "Length of each sample");
  app.add_option("--save-interval", args.save_interval, "Steps between checkpoints (0: only at the end)");
  app.add_option("--out,-o", args.out, "Checkpoint to write");
  app.add_option("--resume", args.resume, "Checkpoint to continue from");
  app.add_option("--seed", args.train.seed, "Random seed");
  app.add_option("--threads", args.threads, "Threads (default: all cores)");
  app.add_option("--skip-nonfinite", args.train.skip_nonfinite,
                 "Steps with a NaN/Inf loss or gradient norm to skip (no update) before stopping, over the whole run");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitUsage;  // --help is a success; every other parse error is usage
  }
  args.warmup_given = app.count("--warmup") > 0;
  args.steps_given = app.count("--steps") > 0;
  args.skip_given = app.count("--skip-nonfinite") > 0;
  // The default warm-up is 100 steps, or a tenth of a shorter run.
  if (!args.warmup_given) args.train.warmup = std::min<std::int64_t>(100, args.train.steps / 10);
  if (app.count("--out") == 0 && !args.resume.empty()) args.out = args.resume;

  install_signal_handlers();
  try {
    check<ConfigError>(args.threads >= 0 && args.threads <= 4096, "--threads must be in [0, 4096] (0: all cores), got ",
                       args.threads);
    if (args.threads > 0) set_num_threads(args.threads);
    check<ConfigError>(args.eval_windows > 0 && args.final_eval_windows > 0,
                       "--eval-windows and --final-eval-windows must be positive");
    check<ConfigError>(args.eval_interval >= 0 && args.sample_interval >= 0 && args.sample_tokens >= 0 &&
                           args.save_interval >= 0,
                       "--eval-interval, --sample-interval, --sample-tokens and --save-interval must be >= 0");
    check<ConfigError>(args.minutes >= 0 && args.minutes <= 1e6, "--minutes must be in [0, 1e6], got ", args.minutes);
    check<ConfigError>(app.count("--context") == 0 || args.context > 0, "--context must be positive, got ",
                       args.context);
    check<ConfigError>(args.train.skip_nonfinite >= 0, "--skip-nonfinite must be >= 0, got ",
                       args.train.skip_nonfinite);
    const bool resume = !args.resume.empty();
    require_regular_file(args.data, "--data");
    if (resume) require_regular_file(args.resume, "--resume");
    require_writable_folder(args.out);
    Tokenizer tok = Tokenizer::bytes();
    std::string kind = args.model;
    std::optional<CheckpointReader> ckpt;
    if (resume) {
      ckpt = CheckpointReader::load(args.resume);
      tok = Tokenizer::from_bytes(ckpt->get_bytes("tokenizer"));
      kind = checkpoint_model_kind(*ckpt);
      const double stored = ckpt->get_double("data.val_fraction");  // the split the run trained on
      if (app.count("--val-fraction") && args.val_fraction != stored)
        std::fprintf(stderr, "train: --val-fraction %g ignored: a resumed run keeps its split, %g\n",
                     args.val_fraction, stored);
      args.val_fraction = stored;
    }
    check<FormatError>(kind == "gpt" || kind == "rnn" || kind == "lstm" || kind == "gru", "checkpoint '",
                       args.resume, "' holds an unknown model kind '", kind, "'");
    // The model comes from the checkpoint; a --model that names another kind is a mistake.
    check<ConfigError>(!resume || app.count("--model") == 0 || args.model == kind, "--model ", args.model,
                       " conflicts with --resume '", args.resume, "', which holds a '", kind, "' model");
    if (!resume) args.train.validate();  // before the model is allocated
    const std::string text = read_text_file(args.data);
    if (!resume && args.tokenizer == "char") tok = Tokenizer::characters(text);
    const TokenDataset data = TokenDataset::from_text(text, tok, args.val_fraction);
    Rng init_rng(args.train.seed);
    if (kind == "gpt") {
      GptConfig c;
      c.vocab_size = tok.vocab_size();
      c.context = args.context > 0 ? args.context : args.train.seq_len;
      c.channels = args.channels;
      c.layers = args.layers;
      c.heads = args.heads;
      c.dropout = args.dropout;
      c.tie_weights = !args.untie;
      if (resume) return start_or_resume<Gpt<float>>(args, tok, data, &*ckpt);
      c.validate();
      require_memory(c.num_params<double>(), double(args.train.batch) * double(args.train.seq_len),
                     double(c.vocab_size + c.layers * c.channels));
      return start_or_resume(args, tok, data, nullptr, Gpt<float>(c, init_rng));
    }
    RecurrentConfig c;
    c.vocab_size = tok.vocab_size();
    c.embedding = args.embedding;
    c.hidden = args.channels;
    c.layers = args.layers;
    if (!resume) {
      c.cell = kind == "rnn" ? CellKind::rnn : kind == "lstm" ? CellKind::lstm : CellKind::gru;
      c.validate();
      require_memory(c.num_params<double>(), double(args.train.batch) * double(args.train.seq_len),
                     double(c.vocab_size + c.layers * c.hidden));
    }
    if (kind == "rnn") {
      c.cell = CellKind::rnn;
      return resume ? start_or_resume<RnnLm<float>>(args, tok, data, &*ckpt)
                    : start_or_resume(args, tok, data, nullptr, RnnLm<float>(c, init_rng));
    }
    if (kind == "lstm") {
      c.cell = CellKind::lstm;
      return resume ? start_or_resume<LstmLm<float>>(args, tok, data, &*ckpt)
                    : start_or_resume(args, tok, data, nullptr, LstmLm<float>(c, init_rng));
    }
    c.cell = CellKind::gru;
    return resume ? start_or_resume<GruLm<float>>(args, tok, data, &*ckpt)
                    : start_or_resume(args, tok, data, nullptr, GruLm<float>(c, init_rng));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train: error: %s\n", e.what());
    return kExitError;
  }
}
