// The libFuzzer program of every target in all_targets.hpp. It runs the target it is named after:
// scripts/fuzz.sh builds it once and links build/fuzz/<target> to it, so
//   build/fuzz/load_gpt corpus/ -max_total_time=60
// fuzzes load_gpt. One program instead of one per target: the targets share most of the library,
// so all of them compile in about the time the largest one takes alone.
// Run under its own name with --list, it prints one line per target, "<name> <max_len>", for
// scripts/fuzz.sh.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "all_targets.hpp"

namespace {

const seqgen_fuzz::FuzzTarget* target = nullptr;

}  // namespace

// libFuzzer calls this before it reads its own flags.
extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  const std::string program = *argc > 0 ? (*argv)[0] : "";
  const std::string name = program.substr(program.find_last_of('/') + 1);
  if (*argc == 2 && std::string((*argv)[1]) == "--list") {
    for (const seqgen_fuzz::FuzzTarget& t : seqgen_fuzz::all_targets()) std::printf("%s %zu\n", t.name, t.max_len);
    std::exit(0);
  }
  target = seqgen_fuzz::find_target(name);
  if (target == nullptr) {
    std::fprintf(stderr, "seqgen_fuzz: run me through a link named after a target (I was run as '%s'):",
                 name.c_str());
    for (const seqgen_fuzz::FuzzTarget& t : seqgen_fuzz::all_targets()) std::fprintf(stderr, " %s", t.name);
    std::fprintf(stderr, "\n");
    std::exit(2);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) { return target->run(data, size); }

// Targets with a structure-aware mutator (the checkpoint targets: hostile values in well-formed
// entries half of the time) use it; the others libFuzzer's byte mutations alone.
extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);
extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned seed) {
  if (target->mutate == nullptr) return LLVMFuzzerMutate(data, size, max_size);
  return target->mutate(data, size, max_size, seed, LLVMFuzzerMutate);
}
