// libFuzzer target "load_recurrent": see fuzz_targets.hpp for what it reads and checks, scripts/fuzz.sh to run it.
#include "fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return seqgen_fuzz::fuzz_load_recurrent(data, size);
}

// Half structure-aware (hostile values in well-formed entries), half libFuzzer's byte mutations.
extern "C" std::size_t LLVMFuzzerMutate(std::uint8_t* data, std::size_t size, std::size_t max_size);
extern "C" std::size_t LLVMFuzzerCustomMutator(std::uint8_t* data, std::size_t size, std::size_t max_size,
                                               unsigned seed) {
  return seqgen_fuzz::mutate_checkpoint(data, size, max_size, seed, LLVMFuzzerMutate);
}
