// Writes the seed corpus of every fuzz target into <dir>/<target>/: the seeds each target makes
// with seqgen's own code (its <target>_seeds() in fuzz/targets/<target>.hpp), each first run
// through its target, which must find nothing. The output is deterministic; it is generated once
// and committed:
//   g++ -std=c++17 -O1 -I include -I /usr/include/eigen3 fuzz/make_corpus.cpp $(pkg-config --cflags --libs libpcre2-8) -o build/fuzz/make_corpus
//   build/fuzz/make_corpus fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "all_targets.hpp"

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  using namespace seqgen_fuzz;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  try {
    for (const FuzzTarget& target : all_targets()) {
      const fs::path dir = fs::path(argv[1]) / target.name;
      fs::create_directories(dir);
      for (const Seed& seed : target.seeds()) {
        target.run(reinterpret_cast<const std::uint8_t*>(seed.bytes.data()), seed.bytes.size());
        std::ofstream out(dir / seed.name, std::ios::binary);
        out.write(seed.bytes.data(), std::streamsize(seed.bytes.size()));
        check<IoError>(bool(out), "make_corpus: cannot write ", (dir / seed.name).string());
        std::printf("%-16s %-22s %6zu bytes\n", target.name, seed.name.c_str(), seed.bytes.size());
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "make_corpus: %s\n", e.what());
    return 1;
  }
  return 0;
}
