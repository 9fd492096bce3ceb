// What `train` and `generate` share: numeric options parsed whole and checked against a stated
// range, checks of the files a program reads and writes, the thread count, and one-line messages
// for failures that would otherwise reach the user as bare runtime text (std::bad_alloc, libgomp).
#pragma once

#include <CLI/CLI.hpp>
#include <seqgen/seqgen.hpp>

#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <type_traits>

namespace cli {

constexpr int kExitError = 1, kExitUsage = 2;

// A value that is not a number of the option's type (exit status 2, as any command line that
// does not parse).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T>
std::string number_text(T v) {
  std::ostringstream out;
  out << v;
  return out.str();
}

// Parses the whole of `text` as a T: no empty value, no trailing characters. An integer may be
// written in exponent form when its value is whole ("1e4"). Sets `overflow` (and returns 0) for a
// number beyond T's range, which is then out of the option's range too.
template <typename T>
T parse_number(const std::string& option, const std::string& text, bool& overflow) {
  overflow = false;
  const auto bad = [&](const char* why) { return UsageError(option + ": '" + text + "' is not " + why); };
  if (text.empty()) throw bad(std::is_integral_v<T> ? "an integer (the value is empty)" : "a number (the value is empty)");
  const char* first = text.data();
  const char* last = text.data() + text.size();
  T value{};
  const auto [end, error] = std::from_chars(first, last, value);
  if (error == std::errc() && end == last) return value;
  if (error == std::errc::result_out_of_range && end == last) {
    overflow = true;
    return T{};
  }
  if constexpr (std::is_integral_v<T>) {
    double d = 0;
    const auto [dend, derror] = std::from_chars(first, last, d);
    const bool whole = dend == last && (derror == std::errc::result_out_of_range ||
                                        (derror == std::errc() && std::isfinite(d) && d == std::floor(d)));
    if (!whole) throw bad("an integer");
    if (derror == std::errc() && d >= double(std::numeric_limits<T>::lowest()) && d < double(std::numeric_limits<T>::max()))
      return static_cast<T>(d);
    overflow = true;
    return T{};
  } else {
    throw bad("a number");
  }
}

// Adds a numeric option whose value must lie in [lo, hi]; its default and range are shown in --help. A value
// that is not a number is a usage error (status 2); one out of range a ConfigError (status 1).
template <typename T>
CLI::Option* add_number(CLI::App& app, const std::string& names, T& target, T lo, T hi, const std::string& help,
                        const std::string& range_text = "") {
  const std::string option = names.substr(0, names.find(','));
  const std::string range = range_text.empty() ? "[" + number_text(lo) + ", " + number_text(hi) + "]" : range_text;
  auto* opt = app.add_option_function<std::string>(
      names,
      [&target, lo, hi, option, range](const std::string& text) {
        bool overflow = false;
        const T v = parse_number<T>(option, text, overflow);
        // !(v >= lo): NaN is out of every range.
        if (overflow || !(v >= lo && v <= hi))
          throw seqgen::ConfigError(option + " must be in " + range + ", got " + (overflow ? text : number_text(v)));
        target = v;
      },
      help + " " + range);
  opt->type_name(std::is_integral_v<T> ? "INT" : "NUM");
  // --help shows the value the option starts with, unless the help text says what the default is.
  if (help.find("(default:") == std::string::npos) opt->default_str(number_text(target));
  opt->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);  // as for the other options: the last one counts
  return opt;
}

// An input must be a regular file: opening a FIFO would block forever, a device never ends. Missing
// files and folders are left to the readers, whose messages say so.
inline void require_regular_file(const std::string& path, const char* what) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) return;
  seqgen::check<seqgen::IoError>(S_ISREG(st.st_mode), what, " '", path,
                                 "' is not a regular file (a FIFO, socket or device?)");
}

// Whether two paths name the same file (through symlinks, hard links or other spellings).
inline bool same_file(const std::string& a, const std::string& b) {
  struct stat sa, sb;
  return ::stat(a.c_str(), &sa) == 0 && ::stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

// Whether `path` starts with the magic bytes of a seqgen checkpoint.
inline bool looks_like_checkpoint(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  char magic[8] = {};
  const bool ok = std::fread(magic, 1, sizeof magic, f) == sizeof magic && std::memcmp(magic, "SEQGENCK", 8) == 0;
  std::fclose(f);
  return ok;
}

// The path a checkpoint is written to for `--out path`: a symlink is followed (the link stays and
// its target is replaced), anything else is used as given.
inline std::string output_target(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return path;
  std::error_code ec;
  const auto target = std::filesystem::weakly_canonical(path, ec);
  seqgen::check<seqgen::IoError>(!ec, "--out '", path, "': ", ec.message());
  return target.string();
}

// CPUs this process may run on (its affinity mask), at least 1.
inline int usable_cpus() {
  cpu_set_t set;
  if (::sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  const long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? int(n) : 1;
}

// Sets seqgen's thread count from --threads (0: every usable CPU). More threads than CPUs are
// capped, with a note; when the system refuses threads (ulimit -u, -v) the team is what it could
// start, also with a note. The threads are started here, before the large allocations, and reused
// by every later parallel loop. Returns the count used.
inline int configure_threads(int requested, const char* program) {
  const int cpus = usable_cpus();
  int n = requested == 0 ? cpus : requested;
  if (n > cpus) {
    std::fprintf(stderr, "%s: --threads %d is more than the %d CPU%s this process may run on; using %d\n", program,
                 requested, cpus, cpus == 1 ? "" : "s", cpus);
    n = cpus;
  }
  seqgen::set_num_threads(n);
  int started = 1;
  seqgen::parallel_team(true, [&](int t, int nt) {
    if (t == 0) started = nt;
  });
  if (started < n) {
    std::fprintf(stderr, "%s: the system refused to start %d threads (a process or memory limit?); using %d\n", program,
                 n, started);
    seqgen::set_num_threads(started);
  }
  return started;
}

// Size of a file in bytes, or -1 when it cannot be stat'ed (the reader will then say why).
inline double file_size(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? double(st.st_size) : -1;
}

// ---- Pretrained GPT-2 files (llm.c's gpt2_124M.bin, Hugging Face's model.safetensors) ----------

// GPT-2's tokenizer, from llm.c's tokenizer.bin or from encoder.json + vocab.bpe (Hugging Face:
// vocab.json + merges.txt, the same formats).
struct Gpt2TokenizerFiles {
  std::string llmc, encoder_json, vocab_bpe;
  bool given() const { return !llmc.empty() || !encoder_json.empty() || !vocab_bpe.empty(); }
};

// Adds the options; `llmc_names` is "--tokenizer,--llmc-tokenizer" where --tokenizer is free.
inline void add_gpt2_tokenizer_options(CLI::App& app, Gpt2TokenizerFiles& f, const std::string& llmc_names) {
  app.add_option(llmc_names, f.llmc, "GPT-2 file's tokenizer: llm.c's gpt2_tokenizer.bin");
  app.add_option("--encoder-json", f.encoder_json,
                 "GPT-2 file's tokenizer: encoder.json (or Hugging Face's vocab.json), with --vocab-bpe");
  app.add_option("--vocab-bpe", f.vocab_bpe,
                 "GPT-2 file's tokenizer: vocab.bpe (or Hugging Face's merges.txt), with --encoder-json");
}

inline seqgen::Tokenizer load_gpt2_tokenizer(const Gpt2TokenizerFiles& f, const std::string& model_path) {
  using namespace seqgen;
  check<ConfigError>(f.given(), "'", model_path,
                     "' is a GPT-2 file, which holds no tokenizer: give llm.c's --tokenizer gpt2_tokenizer.bin, or "
                     "--encoder-json with --vocab-bpe");
  const bool llmc = !f.llmc.empty(), pair = !f.encoder_json.empty() || !f.vocab_bpe.empty();
  check<ConfigError>(llmc != pair, "give one tokenizer: llm.c's tokenizer.bin or --encoder-json with --vocab-bpe, "
                                   "not both");
  if (llmc) {
    require_regular_file(f.llmc, "tokenizer.bin");
    return Tokenizer::bpe(LlmcTokenizer::load(f.llmc).to_vocab("tokenizer.bin '" + f.llmc + "'"));
  }
  check<ConfigError>(!f.encoder_json.empty() && !f.vocab_bpe.empty(), "--encoder-json and --vocab-bpe go together");
  require_regular_file(f.encoder_json, "--encoder-json");
  require_regular_file(f.vocab_bpe, "--vocab-bpe");
  return gpt2::load_tokenizer(f.encoder_json, f.vocab_bpe);
}

// A GPT-2 file's model and a tokenizer that fits it. `heads` 0: as load_gpt2_file decides.
inline seqgen::Gpt<float> load_gpt2_model(const std::string& path, seqgen::Index heads, const seqgen::Tokenizer& tok) {
  using namespace seqgen;
  require_regular_file(path, "GPT-2 model");
  const double size = file_size(path);
  // The weights, their gradients (a model is trained or decoded), and float16/bfloat16 widening.
  if (size > 0) require_memory(4 * size, "loading '" + path + "' (" + format_bytes(size) + ")");
  Gpt<float> m = load_gpt2_file<float>(path, heads);
  check<ConfigError>(tok.vocab_size() == m.config.vocab_size, "the tokenizer has ", tok.vocab_size(),
                     " tokens but the model '", path, "' has a vocabulary of ", m.config.vocab_size);
  return m;
}

}  // namespace cli
