// What several benchmark files share: a character tokenizer and random token data (a step's cost
// does not depend on the text), and a competing CPU-bound process for the Loaded/ cases.
#pragma once

#include <seqgen/seqgen.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace seqgen_bench {

// A tokenizer of V characters.
inline seqgen::Tokenizer characters(seqgen::Index V) {
  std::string symbols;
  for (seqgen::Index i = 0; i < V; ++i) symbols += char('!' + i);
  return seqgen::Tokenizer::characters(symbols);
}

// n random token ids below V.
inline std::vector<seqgen::Token> random_ids(seqgen::Index n, seqgen::Index V, std::uint64_t seed = 7) {
  seqgen::Rng rng(seed);
  std::vector<seqgen::Token> ids(n);
  for (seqgen::Token& id : ids) id = seqgen::Token(rng.next_u64() % std::uint64_t(V));
  return ids;
}

inline seqgen::TokenDataset random_tokens(seqgen::Index n, seqgen::Index V) {
  const std::vector<seqgen::Token> ids = random_ids(n, V);
  return seqgen::TokenDataset::from_tokens(seqgen::TokenSpan(ids.data(), seqgen::Index(ids.size())), V);
}

// Another program that wants a whole core for as long as this object lives: a child process
// spinning in a loop, as `sh -c 'while :; do :; done' &` would. For the Loaded/ cases, which
// measure what a user sees on a machine that is not theirs alone.
class BusyProcess {
 public:
  BusyProcess() {
    pid_ = fork();
    if (pid_ == 0) {
      for (volatile unsigned long i = 0;; i = i + 1) {
      }
    }
  }
  ~BusyProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  BusyProcess(const BusyProcess&) = delete;
  BusyProcess& operator=(const BusyProcess&) = delete;

 private:
  pid_t pid_ = -1;
};

}  // namespace seqgen_bench
