// What every fuzz target shares: the finding it throws, the framing of its input, a temporary
// file for the readers that take a path, and the registry of targets.
//
// Contract of every entry function fuzz_<target>(data, size):
//   - hostile bytes may make seqgen throw: a seqgen::Error is a normal outcome and is caught there;
//   - everything else is a finding and escapes: a FuzzFinding (a property the target checks does
//     not hold), std::bad_alloc, any other exception; crashes and sanitizer reports abort the process.
//
// Multi-part inputs are framed by FuzzInput: fixed-width little-endian numbers and
// length-prefixed byte strings, read until the input runs out (then zeros and empty strings), so
// every byte string is a valid input. The seed writers (put_*) build the same framing.
//
// A target is one file, fuzz/targets/<name>.hpp, ending in its registration
//   inline const bool registered_<name> = register_target({"<name>", fuzz_<name>, <name>_seeds, max_len});
// and one #include line in fuzz/all_targets.hpp. The libFuzzer program, make_corpus, the
// regression test and scripts/fuzz.sh all take the list from all_targets().
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "seqgen/seqgen.hpp"

namespace seqgen_fuzz {

using namespace seqgen;

// A property of the library that did not hold: not a seqgen::Error, so nothing catches it.
struct FuzzFinding : std::logic_error {
  using std::logic_error::logic_error;
};

#define SEQGEN_FUZZ_EXPECT(cond, what)                                                              \
  do {                                                                                              \
    if (!(cond))                                                                                    \
      throw ::seqgen_fuzz::FuzzFinding(std::string(__FILE__ ":") + std::to_string(__LINE__) + ": " + \
                                       (what) + " (failed: " #cond ")");                            \
  } while (0)

// ---------------------------------------------------------------------------------------------
// Input framing

class FuzzInput {
 public:
  FuzzInput(const std::uint8_t* data, std::size_t size) : p_(reinterpret_cast<const char*>(data)), n_(size) {}

  std::uint8_t u8() { return pos_ < n_ ? static_cast<std::uint8_t>(p_[pos_++]) : 0; }
  std::uint16_t u16() {
    const unsigned lo = u8();
    return static_cast<std::uint16_t>(lo | unsigned(u8()) << 8);
  }
  std::uint32_t u32() {
    const std::uint32_t lo = u16();
    return lo | std::uint32_t(u16()) << 16;
  }
  // Up to `count` bytes: fewer when the input ends first.
  std::string_view bytes(std::size_t count) {
    count = std::min(count, n_ - pos_);
    const std::string_view out(p_ + pos_, count);
    pos_ += count;
    return out;
  }
  std::string_view sized8() { return bytes(u8()); }    // u8 length, then the bytes
  std::string_view sized16() { return bytes(u16()); }  // u16 length, then the bytes
  std::string_view rest() { return bytes(n_ - pos_); }

 private:
  const char* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
};

inline void put_u8(std::string& out, unsigned v) { out += static_cast<char>(v & 0xFF); }
inline void put_u16(std::string& out, unsigned v) {
  put_u8(out, v);
  put_u8(out, v >> 8);
}
inline void put_u32(std::string& out, std::uint32_t v) {
  put_u16(out, v & 0xFFFF);
  put_u16(out, v >> 16);
}
inline void put_sized8(std::string& out, std::string_view s) {
  put_u8(out, static_cast<unsigned>(s.size()));
  out += s;
}
inline void put_sized16(std::string& out, std::string_view s) {
  put_u16(out, static_cast<unsigned>(s.size()));
  out += s;
}

// The little-endian number of `nbytes` bytes at b[at].
inline std::uint64_t ref_le(std::string_view b, std::size_t at, int nbytes) {
  std::uint64_t v = 0;
  for (int i = nbytes - 1; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(b[at + std::size_t(i)]);
  return v;
}

// A file holding `bytes` for the lifetime of this object, for the readers that take a path.
// Named by target and pid, so parallel fuzzers never share one.
class TempFile {
 public:
  TempFile(const char* target, std::string_view bytes) {
    const char* dir = std::getenv("TMPDIR");
    path_ = std::string(dir && *dir ? dir : "/tmp") + "/seqgen_fuzz_" + target + "_" + std::to_string(::getpid());
    std::FILE* f = std::fopen(path_.c_str(), "wb");
    if (!f) throw std::runtime_error("fuzz harness: cannot create " + path_);
    const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
    if (std::fclose(f) != 0 || !ok) throw std::runtime_error("fuzz harness: cannot write " + path_);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }
  // What the file holds now (a writer given path() may have replaced it).
  std::string contents() const {
    std::ifstream in(path_, std::ios::binary);
    if (!in) throw std::runtime_error("fuzz harness: cannot read " + path_);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }

 private:
  std::string path_;
};

// ---------------------------------------------------------------------------------------------
// The registry

// One file of a target's seed corpus, fuzz/corpus/<target>/<name>.
struct Seed {
  std::string name;
  std::string bytes;
};

// libFuzzer's own byte mutation (LLVMFuzzerMutate): (data, size, max_size) -> new size.
using MutateBytes = std::size_t (*)(std::uint8_t* data, std::size_t size, std::size_t max_size);

struct FuzzTarget {
  const char* name;                                       // also its file and its corpus folder
  int (*run)(const std::uint8_t* data, std::size_t size);  // the entry function (contract above)
  std::vector<Seed> (*seeds)();                           // what make_corpus writes to fuzz/corpus/<name>/
  std::size_t max_len;                                    // longest input tried: a little above the largest seed
  // A structure-aware mutator (LLVMFuzzerCustomMutator), or nullptr for libFuzzer's byte mutations.
  std::size_t (*mutate)(std::uint8_t* data, std::size_t size, std::size_t max_size, unsigned seed,
                        MutateBytes mutate_bytes) = nullptr;
};

inline std::vector<FuzzTarget>& target_registry() {
  static std::vector<FuzzTarget> targets;
  return targets;
}

// Called once per target, from the initializer of its `registered_<name>`; the targets are listed
// in the order of the #includes of fuzz/all_targets.hpp. GCC and Clang run these initializers
// before main (the standard would let them wait until the variable is used, which it never is);
// tests/test_fuzz_regressions.cpp checks that every file of fuzz/targets/ is in the list.
inline bool register_target(const FuzzTarget& target) {
  for (const FuzzTarget& t : target_registry()) {
    if (std::string_view(t.name) == target.name) {
      std::fprintf(stderr, "seqgen_fuzz: two fuzz targets are named '%s'\n", target.name);
      std::abort();
    }
  }
  target_registry().push_back(target);
  return true;
}

inline const std::vector<FuzzTarget>& all_targets() { return target_registry(); }

inline const FuzzTarget* find_target(std::string_view name) {
  for (const FuzzTarget& t : all_targets())
    if (name == t.name) return &t;
  return nullptr;
}

}  // namespace seqgen_fuzz
