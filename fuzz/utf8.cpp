// libFuzzer target "utf8": see fuzz_targets.hpp for what it reads and checks, scripts/fuzz.sh to run it.
#include "fuzz_targets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return seqgen_fuzz::fuzz_utf8(data, size);
}
