// The fuzz targets as regression tests: every file of fuzz/corpus/<target>/ (the seeds) and of
// fuzz/regressions/<target>/ (every input a fuzzer ever crashed on) goes through the same entry
// function as the libFuzzer program (fuzz/targets/<target>.hpp), built here by the project's compiler
// without sanitizers (the asan preset adds them). A finding escapes the entry function as an
// exception (FuzzFinding, std::bad_alloc, ...) and fails the test with the file's name.
// Also checks that the seeds are what they claim (valid checkpoints that load, tokenizers that
// parse), so the fuzzers start from inputs that reach the deep code, that the harness's
// reference parsers agree with the documented examples, and that the list of targets, their files
// and their corpus folders agree.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/all_targets.hpp"
#include "catch_compat.hpp"

namespace test_fuzz_regressions {  // see "Unity build" in tests/CMakeLists.txt

namespace {

namespace fs = std::filesystem;
using namespace seqgen;
using namespace seqgen_fuzz;

// SEQGEN_FUZZ_DIR when the build defines it, else the fuzz/ folder next to this file's folder.
fs::path fuzz_dir() {
#if defined(SEQGEN_FUZZ_DIR)
  return fs::path(SEQGEN_FUZZ_DIR);
#else
  return fs::path(__FILE__).parent_path().parent_path() / "fuzz";
#endif
}

std::string read_all(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.is_open());
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The regular files of a folder, sorted (none when it does not exist).
std::vector<fs::path> files_in(const fs::path& dir) {
  std::vector<fs::path> out;
  if (fs::is_directory(dir))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

void replay(const FuzzTarget& target, const fs::path& file) {
  const std::string bytes = read_all(file);
  INFO("target " << target.name << ", input " << file.string() << " (" << bytes.size() << " bytes)");
  CHECK_NOTHROW(target.run(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
}

}  // namespace

TEST_CASE("fuzz: every target's seed corpus replays without a finding", "[fuzz]") {
  REQUIRE(fs::is_directory(fuzz_dir() / "corpus"));
  for (const FuzzTarget& target : all_targets()) {
    const std::vector<fs::path> seeds = files_in(fuzz_dir() / "corpus" / target.name);
    INFO("target " << target.name);
    CHECK(seeds.size() >= 2);
    for (const fs::path& f : seeds) replay(target, f);
  }
}

TEST_CASE("fuzz: every file of fuzz/targets/ is a registered target, with a seed corpus", "[fuzz]") {
  std::vector<std::string> files, names;
  for (const fs::path& f : files_in(fuzz_dir() / "targets")) files.push_back(f.stem().string());
  for (const FuzzTarget& target : all_targets()) {
    names.push_back(target.name);
    INFO("target " << target.name);
    CHECK(fs::is_directory(fuzz_dir() / "corpus" / target.name));
    CHECK(target.max_len > 0);
  }
  std::sort(names.begin(), names.end());
  REQUIRE(!files.empty());
  CHECK(files == names);  // a file without its line in fuzz/all_targets.hpp is not fuzzed
}

TEST_CASE("fuzz: the committed corpus holds the seeds each target makes", "[fuzz]") {
  for (const FuzzTarget& target : all_targets()) {
    std::vector<std::string> made, committed;
    for (const Seed& seed : target.seeds()) made.push_back(seed.name);
    for (const fs::path& f : files_in(fuzz_dir() / "corpus" / target.name)) committed.push_back(f.filename().string());
    std::sort(made.begin(), made.end());
    INFO("target " << target.name << ": regenerate with fuzz/make_corpus (docs/fuzzing.md)");
    CHECK(made == committed);
  }
}

TEST_CASE("fuzz: every saved crash input replays without a finding", "[fuzz]") {
  const fs::path root = fuzz_dir() / "regressions";
  if (!fs::is_directory(root)) return;
  for (const auto& dir : fs::directory_iterator(root)) {
    if (!dir.is_directory()) continue;
    const FuzzTarget* target = find_target(dir.path().filename().string());
    INFO("fuzz/regressions/" << dir.path().filename().string() << " names no fuzz target");
    REQUIRE(target != nullptr);
    for (const fs::path& f : files_in(dir.path())) replay(*target, f);
  }
}

TEST_CASE("fuzz: the checkpoint seeds are valid and the reference parser agrees with the format document", "[fuzz]") {
  const std::string example = read_all(fuzz_dir() / "corpus/checkpoint/format_example");
  // docs/checkpoint-format.md: 88 bytes ending in the CRC 41 b5 62 81.
  REQUIRE(example.size() == 88);
  CHECK(ref_crc32("123456789") == 0xCBF43926u);
  CHECK(ref_le(example, 84, 4) == 0x8162B541u);
  std::vector<RefEntry> entries;
  REQUIRE(ref_parse_checkpoint(example, entries));
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].key == "a");
  CHECK(ref_le(entries[0].payload, 0, 8) == 0x0102030405060708u);
  CHECK((entries[1].type == 5 && entries[1].rows == 1 && entries[1].cols == 2));

  // A flipped bit is refused by both parsers; repaired (new CRC) the file is valid again.
  std::string flipped = example;
  flipped[40] ^= 0x10;
  CHECK_FALSE(ref_parse_checkpoint(flipped, entries));
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(flipped), FormatError, "CRC mismatch");
  CHECK(ref_parse_checkpoint(repair_checkpoint(flipped), entries));
  CHECK_NOTHROW(CheckpointReader::from_bytes(repair_checkpoint(flipped)));

  for (const fs::path& f : files_in(fuzz_dir() / "corpus/checkpoint")) {
    INFO(f.string());
    CHECK(ref_parse_checkpoint(read_all(f), entries));
  }
}

TEST_CASE("fuzz: the model seeds resume training on the fixed text", "[fuzz]") {
  const auto reader = [](const char* name) {
    return CheckpointReader::from_bytes(read_all(fuzz_dir() / "corpus" / name));
  };
  const auto gpt = Trainer<Gpt<float>>::load(reader("load_gpt/gpt_tied"), fixed_dataset());
  CHECK(gpt.step_count() == 2);
  CHECK(gpt.model.config.channels == 4);
  CHECK(gpt.tokenizer == fixed_tokenizer());
  CHECK(Trainer<Gpt<float>>::load(reader("load_gpt/gpt_untied_2_layers"), fixed_dataset())
            .model.config.layers == 2);
  CHECK(Trainer<LstmLm<float>>::load(reader("load_recurrent/lstm"), fixed_dataset()).step_count() == 2);
  CHECK(Trainer<GruLm<float>>::load(reader("load_recurrent/gru"), fixed_dataset()).step_count() == 2);
  CHECK(Trainer<RnnLm<float>>::load(reader("load_recurrent/rnn_2_layers"), fixed_dataset())
            .model.config.layers == 2);
}

TEST_CASE("fuzz: the reference UTF-8 validator follows Unicode Table 3-7", "[fuzz]") {
  std::u32string cps;
  CHECK(ref_utf8("\x7F\xC2\x80\xEF\xBF\xBF\xF4\x8F\xBF\xBF", cps));
  CHECK(cps == std::u32string{0x7F, 0x80, 0xFFFF, 0x10FFFF});
  for (const char* bad : {"\x80", "\xC1\xBF", "\xE0\x9F\xBF", "\xED\xA0\x80", "\xF0\x8F\xBF\xBF", "\xF4\x90\x80\x80",
                          "\xF5\x80\x80\x80", "\xE2\x98", "\xC2\xC2"}) {
    INFO("bytes " << bad);
    CHECK_FALSE(ref_utf8(bad, cps));
    CHECK_THROWS_AS(utf8::decode(bad), FormatError);
  }
}

TEST_CASE("fuzz: the brute-force stop-string matcher picks the earliest end, then the longest", "[fuzz]") {
  std::size_t start = 0;
  CHECK(ref_first_stop({"aab", "ab", "b"}, "xaab", start) == 0);  // all end at 4: the longest
  CHECK(start == 1);
  CHECK(ref_first_stop({"abc", "b"}, "abc", start) == 1);  // "b" ends first
  CHECK(start == 1);
  CHECK(ref_first_stop({"z"}, "abc", start) == -1);
}

}  // namespace test_fuzz_regressions
