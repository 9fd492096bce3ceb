// Counts heap allocations during training steps after the first: there must be none.
//
// Every allocation in the process goes through malloc (operator new and Eigen's aligned_malloc
// both call it), so this program defines malloc, calloc, realloc and the aligned variants itself,
// counts the calls, and forwards them to glibc's implementations. A separate executable, so the
// interposed allocator touches no other test.
#include <seqgen/seqgen.hpp>

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
}  // namespace

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

// Allocations during `steps` training steps after the first.
template <class Model>
long allocations_after_first_step(Trainer<Model>& trainer, int steps) {
  trainer.step();
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < steps; ++i) trainer.step();
  g_counting = false;
  return g_allocations.load();
}

// Allocations during `steps` decoding steps of one sequence, after a prefill and a first step.
template <class Decoder>
long allocations_per_decode(Decoder& decoder, int steps) {
  const std::vector<std::vector<Token>> start = {{1}};
  decoder.prefill(start);
  Token token = 2;
  decoder.step(TokenSpan(&token, 1));
  g_allocations = 0;
  g_counting = true;
  for (int i = 0; i < steps; ++i) decoder.step(TokenSpan(&token, 1));
  g_counting = false;
  return g_allocations.load();
}

int check(const char* what, long allocations) {
  std::printf("%-40s %ld allocations\n", what, allocations);
  return allocations == 0 ? 0 : 1;
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
