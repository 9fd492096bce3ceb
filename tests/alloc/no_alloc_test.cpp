// Counts heap allocations during training and decoding steps after the first: there must be none.
// And counts the thread teams opened during them: seqgen's own (core/parallel.hpp, run on its
// thread pool) and OpenMP's, of which there must be none.
//
// Every allocation in the process goes through malloc (operator new and Eigen's aligned_malloc
// both call it), so this program defines malloc, calloc, realloc and the aligned variants itself,
// counts the calls, and forwards them to glibc's implementations. With GCC's OpenMP runtime it
// does the same for GOMP_parallel, where every `#pragma omp parallel` of the program begins (Eigen's,
// if one of its products ran threaded): the count must be 0. A separate executable, so the
// interposed functions touch no other test.
#include <seqgen/seqgen.hpp>

#include <dlfcn.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
}

namespace {
std::atomic<long> g_allocations{0};
std::atomic<bool> g_counting{false};
// A place for a debugger's breakpoint: `gdb -ex 'break counted_allocation' seqgen_no_alloc_test`.
__attribute__((noinline)) void counted_allocation() { asm volatile(""); }
void count() {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  counted_allocation();
}
// Teams begun through the OpenMP runtime while counting.
std::atomic<long> g_omp_teams{0};
}  // namespace

// libgomp's entry for `#pragma omp parallel` (and `parallel for` with a static schedule), which
// GCC emits; clang's libomp has another entry, so the team count runs with GCC only.
#if defined(_OPENMP) && defined(__GNUC__) && !defined(__clang__)
#define SEQGEN_COUNTS_OMP_TEAMS 1
extern "C" void GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags) {
  using Real = void (*)(void (*)(void*), void*, unsigned, unsigned);
  static const Real real = reinterpret_cast<Real>(dlsym(RTLD_NEXT, "GOMP_parallel"));
  if (g_counting.load(std::memory_order_relaxed)) g_omp_teams.fetch_add(1, std::memory_order_relaxed);
  real(fn, data, num_threads, flags);
}
#else
#define SEQGEN_COUNTS_OMP_TEAMS 0
#endif

extern "C" {
void* malloc(std::size_t n) {
  count();
  return __libc_malloc(n);
}
void* calloc(std::size_t n, std::size_t size) {
  count();
  return __libc_calloc(n, size);
}
void* realloc(void* p, std::size_t n) {
  count();
  return __libc_realloc(p, n);
}
void* memalign(std::size_t alignment, std::size_t n) {
  count();
  return __libc_memalign(alignment, n);
}
void* aligned_alloc(std::size_t alignment, std::size_t n) {
  count();
  return __libc_memalign(alignment, n);
}
int posix_memalign(void** p, std::size_t alignment, std::size_t n) {
  count();
  *p = __libc_memalign(alignment, n);
  return *p ? 0 : 12;  // ENOMEM
}
}

namespace {

using namespace seqgen;

constexpr Index kVocab = 65;

Tokenizer tokenizer65() {
  std::string symbols;
  for (int i = 0; i < kVocab; ++i) symbols += char('!' + i);
  return Tokenizer::characters(symbols);
}

TokenDataset random_tokens(Index n) {
  Rng rng(7);
  std::vector<Token> ids(n);
  for (Token& id : ids) id = Token(rng.next_u64() % kVocab);
  return TokenDataset::from_tokens(TokenSpan(ids.data(), Index(ids.size())), kVocab);
}

TrainOptions options(Index B, Index T) {
  TrainOptions o;
  o.batch = B;
  o.seq_len = T;
  o.steps = 100;
  o.warmup = 2;
  return o;
}

// What a counted stretch of steps did.
struct Counts {
  long allocations = 0;
  long omp_teams = 0;     // teams the OpenMP runtime began (GCC only)
  long seqgen_teams = 0;  // teams seqgen opened (core/parallel.hpp)
};

template <class Steps>
Counts count_during(Steps&& steps) {
  g_allocations = 0;
  g_omp_teams = 0;
  const long teams_before = teams_opened();
  g_counting = true;
  steps();
  g_counting = false;
  return Counts{g_allocations.load(), g_omp_teams.load(), teams_opened() - teams_before};
}

// During `steps` training steps after the first.
template <class Model>
Counts allocations_after_first_step(Trainer<Model>& trainer, int steps) {
  trainer.step();
  return count_during([&] {
    for (int i = 0; i < steps; ++i) trainer.step();
  });
}

// During `steps` decoding steps of the decoder's sequences, after a prefill and a first step.
template <class Decoder>
Counts allocations_per_decode(Decoder& decoder, int steps) {
  const Index B = decoder.batch_size();
  const std::vector<std::vector<Token>> start(B, std::vector<Token>{1});
  decoder.prefill(start);
  const std::vector<Token> tokens(B, 2);
  decoder.step(TokenSpan(tokens.data(), B));
  return count_during([&] {
    for (int i = 0; i < steps; ++i) decoder.step(TokenSpan(tokens.data(), B));
  });
}

int check(const char* what, const Counts& c) {
  std::printf("%-34s %ld allocations, %ld thread teams opened by seqgen", what, c.allocations, c.seqgen_teams);
  if (SEQGEN_COUNTS_OMP_TEAMS) std::printf(", %ld OpenMP teams", c.omp_teams);
  std::printf("\n");
  // seqgen's teams run on its own threads (core/thread_pool.hpp), so any OpenMP team is foreign.
  const bool foreign_teams = SEQGEN_COUNTS_OMP_TEAMS && c.omp_teams != 0;
  if (foreign_teams) std::printf("FAIL: an OpenMP thread team was opened during the step\n");
  return c.allocations == 0 && !foreign_teams ? 0 : 1;
}

}  // namespace

int main() {
  // The sanity check that the counter works at all: a vector allocates.
  g_counting = true;
  { std::vector<float> v(1000); (void)v; }
  g_counting = false;
  if (g_allocations.load() == 0) {
    std::printf("FAIL: the allocation counter saw nothing\n");
    return 1;
  }
  // And the team counter: a large Eigen product runs on Eigen's own threads when OpenMP is on
  // (which is why seqgen's products never go through one; core/gemm.hpp).
  if (SEQGEN_COUNTS_OMP_TEAMS && num_threads() > 1) {
    Mat<float> a = Mat<float>::Ones(512, 512), b;
    const Counts c = count_during([&] { b.noalias() = a * a; });
    std::printf("%-34s %ld thread teams opened by seqgen, %ld OpenMP teams\n", "an Eigen product (the control)",
                c.seqgen_teams, c.omp_teams);
    if (c.omp_teams == 0 || c.seqgen_teams != 0) {
      std::printf("FAIL: the team counter did not see Eigen's team\n");
      return 1;
    }
  } else {
    std::printf("(thread teams are not counted: %s)\n",
                SEQGEN_COUNTS_OMP_TEAMS ? "one thread" : "not GCC's OpenMP runtime");
  }

  const TokenDataset data = random_tokens(1 << 16);
  int failures = 0;
  {
    // GPT config S with fewer layers and sequences: the same products (threaded GEMMs, attention
    // per (b, h) over T = 256).
    GptConfig c;
    c.vocab_size = kVocab;
    c.context = 256;
    c.channels = 256;
    c.layers = 2;
    c.heads = 4;
    c.dropout = 0.1;
    Rng rng(1);
    Trainer<Gpt<float>> trainer(Gpt<float>(c, rng), tokenizer65(), data, options(2, 256));
    failures += check("GPT training step (with dropout)", allocations_after_first_step(trainer, 3));
    GptDecoder<float> decoder(trainer.model, 1);
    failures += check("GPT decoding step (KV cache)", allocations_per_decode(decoder, 20));
    // 8 sequences at once: products worth a team, so the pass runs on several threads.
    GptDecoder<float> batch(trainer.model, 8);
    const Counts c8 = allocations_per_decode(batch, 20);
    failures += check("GPT decoding step, 8 sequences", c8);
    if (num_threads() > 1 && c8.seqgen_teams == 0) {
      std::printf("FAIL: the 8-sequence decoding step ran on one thread\n");
      ++failures;
    }
  }
  {
    // The same with the flash attention kernel (the default chooses it only for long sequences).
    GptConfig c;
    c.vocab_size = kVocab;
    c.context = 256;
    c.channels = 256;
    c.layers = 2;
    c.heads = 4;
    Rng rng(1);
    Trainer<Gpt<float>> trainer(Gpt<float>(c, rng), tokenizer65(), data, options(2, 256));
    for (auto& block : trainer.model.blocks) block.attn.kernel = AttentionKernel::flash;
    failures += check("GPT training step (flash)", allocations_after_first_step(trainer, 3));
  }
  for (CellKind cell : {CellKind::rnn, CellKind::lstm, CellKind::gru}) {
    RecurrentConfig c;
    c.cell = cell;
    c.vocab_size = kVocab;
    c.embedding = 128;
    c.hidden = 256;
    c.layers = 2;
    Rng rng(1);
    const std::string what = std::string(cell_name(cell)) + " training step";
    if (cell == CellKind::rnn) {
      Trainer<RnnLm<float>> trainer(RnnLm<float>(c, rng), tokenizer65(), data, options(16, 32));
      failures += check(what.c_str(), allocations_after_first_step(trainer, 3));
    } else if (cell == CellKind::lstm) {
      Trainer<LstmLm<float>> trainer(LstmLm<float>(c, rng), tokenizer65(), data, options(16, 32));
      failures += check(what.c_str(), allocations_after_first_step(trainer, 3));
      auto decoder = make_decoder(static_cast<const LstmLm<float>&>(trainer.model), 1);
      failures += check("lstm decoding step", allocations_per_decode(decoder, 20));
    } else {
      Trainer<GruLm<float>> trainer(GruLm<float>(c, rng), tokenizer65(), data, options(16, 32));
      failures += check(what.c_str(), allocations_after_first_step(trainer, 3));
    }
  }
  return failures == 0 ? 0 : 1;
}
