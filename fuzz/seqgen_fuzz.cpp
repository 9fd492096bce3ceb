// The libFuzzer program of every target in fuzz_targets.hpp. It runs the target it is named after:
// scripts/fuzz.sh builds it once and links build/fuzz/<target> to it, so
//   build/fuzz/load_gpt corpus/ -max_total_time=60
// fuzzes load_gpt. One program instead of one per target: the targets share most of the library,
// so all eight compile in about the time the largest one takes alone.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "fuzz_targets.hpp"

namespace {

const seqgen_fuzz::FuzzTarget* target = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  const std::string program = *argc > 0 ? (*argv)[0] : "";
  const std::string name = program.substr(program.find_last_of('/') + 1);
  for (const seqgen_fuzz::FuzzTarget& t : seqgen_fuzz::all_targets())
    if (name == t.name) target = &t;
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

// Checkpoint inputs: half structure-aware mutations (hostile values in well-formed entries), half
// libFuzzer's byte mutations. Other inputs: libFuzzer's byte mutations alone.
extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);
extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned seed) {
  if (!target->checkpoint_input) return LLVMFuzzerMutate(data, size, max_size);
  return seqgen_fuzz::mutate_checkpoint(data, size, max_size, seed, LLVMFuzzerMutate);
}
