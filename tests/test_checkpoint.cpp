#include <seqgen/io/checkpoint.hpp>
#include <seqgen/layers/linear.hpp>

#include <sys/resource.h>

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "test_util.hpp"

namespace test_checkpoint {  // see "Unity build" in tests/CMakeLists.txt

using namespace seqgen;
using seqgen_test::random_mat;
namespace fs = std::filesystem;

namespace {

// CRC-32 one bit at a time, straight from the definition: an independent check of the sliced tables.
std::uint32_t reference_crc32(std::string_view s) {
  std::uint32_t c = 0xFFFFFFFFu;
  for (unsigned char byte : s) {
    c ^= byte;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
  }
  return ~c;
}

std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

// The test's own little-endian encoder, written from docs/checkpoint-format.md, for hand-crafted files.
void le(std::string& out, std::uint64_t v, int nbytes) {
  for (int i = 0; i < nbytes; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
std::string entry(std::uint8_t type, const std::string& key, const std::string& payload) {
  std::string e(1, static_cast<char>(type));
  le(e, key.size(), 4);
  e += key;
  le(e, payload.size(), 8);
  return e + payload;
}
std::string u64(std::uint64_t v) {
  std::string s;
  le(s, v, 8);
  return s;
}
// Header + body + CRC with a correct file size and CRC.
std::string finish(const std::string& body, std::uint32_t count, std::uint32_t version = kCheckpointFormatVersion) {
  std::string out = "SEQGENCK";
  le(out, version, 4);
  le(out, count, 4);
  le(out, 24 + body.size() + 4, 8);
  out += body;
  le(out, reference_crc32(out), 4);
  return out;
}
void fix_crc(std::string& file) {
  const std::uint32_t c = reference_crc32(std::string_view(file).substr(0, file.size() - 4));
  for (int i = 0; i < 4; ++i) file[file.size() - 4 + i] = static_cast<char>((c >> (8 * i)) & 0xFF);
}

template <typename Scalar>
bool same_bits(const Mat<Scalar>& a, const Mat<Scalar>& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), sizeof(Scalar) * a.size()) == 0);
}
template <typename T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

// A small checkpoint with an int, a string and a (2, 2) float tensor.
std::string small_checkpoint() {
  CheckpointWriter w;
  w.put_int("step", 7);
  w.put_string("name", "gpt");
  w.put_tensor<float>("w", random_mat<float>(2, 2, 1));
  return w.to_bytes();
}

// A fresh folder under the system temp dir, removed (after restoring write permission) at the end.
struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("seqgen_test_checkpoint_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, ec);
    for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator();
         it.increment(ec))
      if (it->is_directory()) fs::permissions(it->path(), fs::perms::owner_all, ec);
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(path)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

// Two Linear layers as a stand-in for a model.
template <typename Scalar>
struct TwoLayers {
  Linear<Scalar> fc1, fc2;
  bool with_fc2;
  TwoLayers(std::uint64_t seed, Index out2 = 2, bool with_fc2_ = true) : with_fc2(with_fc2_) {
    Rng rng(seed);
    fc1 = Linear<Scalar>("fc1", 3, 4, rng);
    fc2 = Linear<Scalar>("fc2", 4, out2, rng);
  }
  template <class Visit>
  void for_each_param(Visit&& visit) {
    fc1.for_each_param(visit);
    if (with_fc2) fc2.for_each_param(visit);
  }
  std::vector<Mat<Scalar>> values() {
    std::vector<Mat<Scalar>> out;
    for_each_param([&](Param<Scalar>& p) { out.push_back(p.value); });
    return out;
  }
};

}  // namespace

TEST_CASE("crc32: IEEE check value, agreement with the bitwise definition, chaining", "[checkpoint][crc32]") {
  REQUIRE(crc32("123456789") == 0xCBF43926u);
  REQUIRE(crc32("") == 0u);
  REQUIRE(crc32("a") == 0xE8B7BE43u);
  std::string data;
  Rng rng(3);
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(rng.uniform_int(256)));
  // Every length and start offset up to past the 8-byte stride, so the tail loop and misalignment are covered.
  for (std::size_t start = 0; start < 9; ++start)
    for (std::size_t len = 0; start + len <= 40; ++len) {
      const std::string_view s = std::string_view(data).substr(start, len);
      REQUIRE(crc32(s) == reference_crc32(s));
    }
  REQUIRE(crc32(data) == reference_crc32(data));
  for (std::size_t split : {0, 1, 7, 8, 13, 300}) {
    const std::uint32_t first = crc32(std::string_view(data).substr(0, split));
    REQUIRE(crc32_update(first, data.data() + split, data.size() - split) == crc32(data));
  }
}

TEST_CASE("Checkpoint: the bytes on disk follow the documented layout", "[checkpoint]") {
  CheckpointWriter w;
  w.put_int("a", 0x0102030405060708);
  Mat<float> t(1, 2);
  t << 1.0f, -2.0f;
  w.put_tensor("t", t);
  // Written out by hand from docs/checkpoint-format.md.
  std::string expected = std::string("SEQGENCK") +
                         std::string("\x01\x00\x00\x00" "\x02\x00\x00\x00" "\x58\x00\x00\x00\x00\x00\x00\x00", 16) +
                         std::string("\x01" "\x01\x00\x00\x00" "a" "\x08\x00\x00\x00\x00\x00\x00\x00"
                                     "\x08\x07\x06\x05\x04\x03\x02\x01", 22) +
                         std::string("\x05" "\x01\x00\x00\x00" "t" "\x18\x00\x00\x00\x00\x00\x00\x00"
                                     "\x01\x00\x00\x00\x00\x00\x00\x00" "\x02\x00\x00\x00\x00\x00\x00\x00"
                                     "\x00\x00\x80\x3f" "\x00\x00\x00\xc0", 38);
  le(expected, reference_crc32(expected), 4);
  REQUIRE(expected.size() == 88);
  REQUIRE(expected.substr(84) == "\x41\xb5\x62\x81");  // zlib.crc32 of the first 84 bytes, from Python
  REQUIRE(w.to_bytes() == expected);
}

TEST_CASE("Checkpoint: every entry type round-trips bit-exactly, in memory and through a file", "[checkpoint]") {
  const std::int64_t ints[] = {0, -1, std::numeric_limits<std::int64_t>::min(), std::numeric_limits<std::int64_t>::max(),
                               0x0102030405060708};
  std::uint64_t nan_bits = 0x7FF4000000ABCDEFull;  // a signalling NaN with a payload
  double nan_payload;
  std::memcpy(&nan_payload, &nan_bits, 8);
  const double doubles[] = {-0.0, 1.0 / 3.0, std::numeric_limits<double>::denorm_min(),
                            -std::numeric_limits<double>::infinity(), std::numeric_limits<double>::max(), nan_payload};
  std::string all_bytes;
  for (int c = 0; c < 256; ++c) all_bytes.push_back(static_cast<char>(c));
  const std::string with_nul("a\0b", 3);

  Mat<float> f = random_mat<float>(3, 5, 11, 100.0);
  f(0, 0) = -0.0f;
  f(1, 0) = std::numeric_limits<float>::denorm_min();
  f(2, 0) = std::numeric_limits<float>::quiet_NaN();
  f(0, 1) = std::numeric_limits<float>::infinity();
  const Mat<double> d = random_mat<double>(4, 2, 12, 1e300);
  const Mat<float> empty_rows(0, 3);
  const Mat<double> empty(0, 0);
  const Mat<double> column = random_mat<double>(7, 1, 13);

  CheckpointWriter w;
  for (int i = 0; i < 5; ++i) w.put_int("int" + std::to_string(i), ints[i]);
  for (int i = 0; i < 6; ++i) w.put_double("double" + std::to_string(i), doubles[i]);
  w.put_string("str", "héllo");
  w.put_string("str_nul", with_nul);
  w.put_string("str_empty", "");
  w.put_bytes("bytes", all_bytes);
  w.put_bytes("bytes_empty", std::string_view());
  w.put_tensor("f", f);
  w.put_tensor("d", d);
  w.put_tensor("empty_rows", empty_rows);
  w.put_tensor("empty", empty);
  w.put_tensor("column", column);
  REQUIRE(w.has("column"));
  REQUIRE_FALSE(w.has("nothing"));

  TempDir dir;
  const std::string path = dir / "all.ckpt";
  w.save(path);
  REQUIRE(read_file(path) == w.to_bytes());

  for (const CheckpointReader& r : {CheckpointReader::from_bytes(w.to_bytes()), CheckpointReader::load(path)}) {
    REQUIRE(r.version() == kCheckpointFormatVersion);
    const std::vector<std::string> keys = r.keys();
    REQUIRE(keys.size() == 21);
    REQUIRE(keys.front() == "int0");
    REQUIRE(keys.back() == "column");
    for (int i = 0; i < 5; ++i) REQUIRE(r.get_int("int" + std::to_string(i)) == ints[i]);
    for (int i = 0; i < 6; ++i) REQUIRE(same_bits(r.get_double("double" + std::to_string(i)), doubles[i]));
    REQUIRE(r.get_string("str") == "héllo");
    REQUIRE(r.get_string("str_nul") == with_nul);
    REQUIRE(r.get_string("str_empty").empty());
    REQUIRE(r.get_bytes("bytes") == all_bytes);
    REQUIRE(r.get_bytes("bytes_empty").empty());
    Mat<float> f2, e2;
    Mat<double> d2, empty2(5, 5), column2;
    r.get_tensor("f", f2, 3, 5);
    r.get_tensor("d", d2, 4, 2);
    r.get_tensor("empty_rows", e2, 0, 3);
    r.get_tensor("empty", empty2, 0, 0);
    r.get_tensor("column", column2, 7, 1);
    REQUIRE(same_bits(f2, f));
    REQUIRE(same_bits(d2, d));
    REQUIRE((e2.rows() == 0 && e2.cols() == 3));
    REQUIRE((empty2.rows() == 0 && empty2.cols() == 0));
    REQUIRE(same_bits(column2, column));
    REQUIRE(r.has("f"));
    REQUIRE_FALSE(r.has("g"));
  }
  // An empty checkpoint is just the header and the CRC.
  const std::string nothing = CheckpointWriter().to_bytes();
  REQUIRE(nothing.size() == 28);
  REQUIRE(CheckpointReader::from_bytes(nothing).keys().empty());
}

TEST_CASE("Checkpoint: a file truncated to any length is a FormatError", "[checkpoint][errors]") {
  const std::string file = small_checkpoint();
  REQUIRE(file.size() > 60);
  for (std::size_t len = 0; len < file.size(); ++len) {
    INFO("length " << len);
    SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(file.substr(0, len)), FormatError, "truncated");
  }
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(file.substr(0, 20)), FormatError,
                     "truncated: 20 bytes cannot hold the 28-byte header");
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(file.substr(0, 40)), FormatError,
                     "truncated: the header says " + std::to_string(file.size()) + " bytes but there are only 40");
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(file + "x"), FormatError, "unexpected bytes after the end");
}

TEST_CASE("Checkpoint: a flipped byte is caught by the first check that sees it", "[checkpoint][errors]") {
  const std::string file = small_checkpoint();
  const std::size_t n = file.size();
  const auto flipped = [&](std::size_t at, unsigned char mask) {
    std::string f = file;
    f[at] = static_cast<char>(f[at] ^ mask);
    return f;
  };
  // Header: magic, version, file size are checked before the CRC; the entry count only by the CRC.
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(flipped(0, 0x20)), FormatError, "not a seqgen checkpoint");
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(flipped(11, 0x80)), FormatError,
                     "written by a newer seqgen: version 2147483649, this build reads up to 1");
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(flipped(8, 0x01)), FormatError, "invalid format version 0");
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(flipped(23, 0x01)), FormatError, "truncated: the header says");
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(flipped(16, 0x01)), FormatError, "unexpected bytes after the end");
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(flipped(12, 0x01)), FormatError, "CRC mismatch");
  // An entry header (the first entry's type byte) and the last byte of the tensor data.
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(flipped(24, 0x01)), FormatError, "CRC mismatch");
  const std::string payload_flip = flipped(n - 5, 0x01);
  const std::uint32_t stored = reference_crc32(std::string_view(file).substr(0, n - 4));
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(payload_flip), FormatError,
                     "CRC mismatch: stored " + hex32(stored) + ", computed " +
                         hex32(reference_crc32(std::string_view(payload_flip).substr(0, n - 4))));
  // The CRC itself: its top byte is the file's last.
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(flipped(n - 1, 0x10)), FormatError,
                     "CRC mismatch: stored " + hex32(stored ^ 0x10000000u) + ", computed " + hex32(stored));

  // Every single-bit flip anywhere is an error.
  for (std::size_t at = 0; at < n; ++at)
    for (int bit = 0; bit < 8; ++bit) {
      INFO("byte " << at << " bit " << bit);
      REQUIRE_THROWS_AS(CheckpointReader::from_bytes(flipped(at, static_cast<unsigned char>(1u << bit))), FormatError);
    }
}

TEST_CASE("Checkpoint: random corruption behind a valid CRC loads or throws FormatError, nothing else",
          "[checkpoint][errors]") {
  const std::string file = small_checkpoint();
  Rng rng(21);
  int rejected = 0, accepted = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string f = file;
    const int edits = 1 + static_cast<int>(rng.uniform_int(3));
    for (int k = 0; k < edits; ++k) {
      // Anywhere from the entry count on; large bytes make the sizes absurd.
      const std::size_t at = 12 + rng.uniform_int(f.size() - 16);
      if (at >= 16 && at < 24) continue;  // the file size: covered above
      f[at] = static_cast<char>(rng.uniform_int(2) ? 0xFF : rng.uniform_int(256));
    }
    fix_crc(f);
    try {
      const CheckpointReader r = CheckpointReader::from_bytes(f);
      ++accepted;
      for (const std::string& key : r.keys()) {  // whatever loaded must read back without crashing
        try {
          r.get_int(key);
          r.get_double(key);
          r.get_string(key);
          r.get_bytes(key);
          Mat<float> m;
          r.get_tensor(key, m, 2, 2);
        } catch (const FormatError&) {
        }
      }
    } catch (const FormatError&) {
      ++rejected;
    }
  }
  REQUIRE(rejected > 1000);
  REQUIRE(accepted > 100);
}

TEST_CASE("Checkpoint: wrong magic and newer versions are named as such", "[checkpoint][errors]") {
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(std::string("PK\x03\x04", 4) + std::string(100, '\0')), FormatError,
                     "not a seqgen checkpoint (it starts with bytes 50 4b 03 04 00 00 00 00");
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes("abc"), FormatError, "not a seqgen checkpoint");
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(""), FormatError, "truncated: 0 bytes");

  std::string newer = small_checkpoint();
  newer[8] = static_cast<char>(kCheckpointFormatVersion + 1);
  fix_crc(newer);
  SEQGEN_THROWS_WITH(CheckpointReader::from_bytes(newer), FormatError,
                     "written by a newer seqgen: version 2, this build reads up to 1");
}

TEST_CASE("Checkpoint: sizes that do not fit the file are rejected before anything is allocated",
          "[checkpoint][errors]") {
  const auto load = [](const std::string& bytes) { return CheckpointReader::from_bytes(bytes); };
  // The crafting helpers agree with the writer on a valid file.
  REQUIRE(load(finish(entry(1, "a", u64(5)), 1)).get_int("a") == 5);

  // A tensor claiming 2^62 elements with a 16-byte payload: checked against the bytes left.
  SEQGEN_THROWS_WITH(load(finish(entry(5, "big", u64(1ull << 31) + u64(1ull << 31)), 1)), FormatError,
                     "tensor 'big': shape (2147483648, 2147483648) is larger than the file");
  // A payload size of 2^62.
  std::string huge(1, '\x06');
  le(huge, 1, 4);
  huge += "h" + u64(1ull << 62) + u64(1) + u64(1);
  SEQGEN_THROWS_WITH(load(finish(huge, 1)), FormatError, "entry 'h': size 4611686018427387904 is larger than the file");
  // A key length of 2^32 - 1.
  std::string long_key(1, '\x01');
  le(long_key, 0xFFFFFFFFu, 4);
  SEQGEN_THROWS_WITH(load(finish(long_key + "abc", 1)), FormatError,
                     "entry #0: key length 4294967295 is larger than the file");
  // More entries announced than present.
  SEQGEN_THROWS_WITH(load(finish(entry(1, "a", u64(5)), 2)), FormatError, "entry #1: header is larger than the file");
  // rows * cols overflows, and a shape that does not match the payload.
  SEQGEN_THROWS_WITH(load(finish(entry(5, "t", u64(1ull << 32) + u64(1ull << 32)), 1)), FormatError,
                     "tensor 't': shape (4294967296, 4294967296) overflows");
  // (Another entry follows, so the file is long enough for 24 bytes.)
  SEQGEN_THROWS_WITH(load(finish(entry(5, "t", u64(2) + u64(3) + std::string(20, '\0')) + entry(1, "a", u64(1)), 2)),
                     FormatError, "tensor 't': shape (2, 3) needs 24 bytes of data, the entry holds 20");
  SEQGEN_THROWS_WITH(load(finish(entry(5, "t", u64(2) + u64(3) + std::string(28, '\0')), 1)), FormatError,
                     "tensor 't': shape (2, 3) needs 24 bytes of data, the entry holds 28");
  SEQGEN_THROWS_WITH(load(finish(entry(6, "t", u64(2)), 1)), FormatError,
                     "tensor 't': a 8-byte payload cannot hold its shape");
  // Types, keys and leftovers.
  SEQGEN_THROWS_WITH(load(finish(entry(9, "t", ""), 1)), FormatError, "entry 't': unknown entry type 9");
  SEQGEN_THROWS_WITH(load(finish(entry(0, "t", ""), 1)), FormatError, "entry 't': unknown entry type 0");
  SEQGEN_THROWS_WITH(load(finish(entry(1, "a", u64(1)) + entry(3, "a", "x"), 2)), FormatError, "duplicate entry 'a'");
  SEQGEN_THROWS_WITH(load(finish(entry(1, "a", "abcd"), 1)), FormatError, "entry 'a': an int64 payload is 4 bytes");
  SEQGEN_THROWS_WITH(load(finish(entry(2, "a", ""), 1)), FormatError, "entry 'a': a float64 payload is 0 bytes");
  SEQGEN_THROWS_WITH(load(finish(entry(3, "", "x"), 1)), FormatError, "entry #0 has an empty key");
  SEQGEN_THROWS_WITH(load(finish(entry(1, "a", u64(1)) + "zz", 1)), FormatError,
                     "unexpected bytes after the last entry (2 of them)");
  SEQGEN_THROWS_WITH(load(finish(std::string("\x01\x01\x00\x00\x00" "a" "\x08\x00", 8), 1)), FormatError,
                     "entry 'a': header is larger than the file (2 bytes left)");
}

TEST_CASE("Checkpoint: getters check presence, type, precision and shape", "[checkpoint][errors]") {
  CheckpointWriter w;
  w.put_int("i", 1);
  w.put_string("s", "x");
  w.put_bytes("b", "y");
  w.put_tensor<double>("w", random_mat(3, 4, 5));
  w.put_tensor<float>("f", random_mat<float>(2, 1, 6));
  const CheckpointReader r = CheckpointReader::from_bytes(w.to_bytes());

  SEQGEN_THROWS_WITH(r.get_int("nope"), FormatError, "checkpoint (in memory): missing entry 'nope'");
  SEQGEN_THROWS_WITH(r.get_int("s"), FormatError, "entry 's' is a string, expected an int64");
  SEQGEN_THROWS_WITH(r.get_double("i"), FormatError, "entry 'i' is an int64, expected a float64");
  SEQGEN_THROWS_WITH(r.get_string("b"), FormatError, "entry 'b' is bytes, expected a string");
  SEQGEN_THROWS_WITH(r.get_bytes("w"), FormatError, "entry 'w' is a float64 tensor, expected bytes");

  Mat<double> out = Mat<double>::Constant(2, 2, 9.0);
  const Mat<double> before = out;
  SEQGEN_THROWS_WITH(r.get_tensor("w", out, 4, 3), FormatError, "tensor 'w' has shape (3, 4), expected (4, 3)");
  SEQGEN_THROWS_WITH(r.get_tensor("f", out, 2, 1), FormatError, "tensor 'f' is stored as float32, expected float64");
  SEQGEN_THROWS_WITH(r.get_tensor("i", out, 1, 1), FormatError, "entry 'i' is an int64, expected a float64 tensor");
  SEQGEN_THROWS_WITH(r.get_tensor("x", out, 1, 1), FormatError, "missing tensor 'x'");
  REQUIRE(same_bits(out, before));
  Mat<float> fout;
  SEQGEN_THROWS_WITH(r.check_tensor<float>("w", 3, 4), FormatError, "tensor 'w' is stored as float64, expected float32");
  r.check_tensor<float>("f", 2, 1);
  r.get_tensor("f", fout, 2, 1);
  REQUIRE(same_bits(fout, random_mat<float>(2, 1, 6)));
}

TEST_CASE("CheckpointWriter: keys are unique across types and non-empty", "[checkpoint][errors]") {
  CheckpointWriter w;
  w.put_int("a", 1);
  SEQGEN_THROWS_WITH(w.put_tensor<float>("a", Mat<float>(1, 1)), ConfigError, "CheckpointWriter: duplicate entry 'a'");
  SEQGEN_THROWS_WITH(w.put_string("a", "x"), ConfigError, "duplicate entry 'a'");
  SEQGEN_THROWS_WITH(w.put_double("", 1.0), ConfigError, "CheckpointWriter: empty key");
  // Rejected puts leave no trace: the file holds the one entry.
  REQUIRE(CheckpointReader::from_bytes(w.to_bytes()).keys() == std::vector<std::string>{"a"});
}

TEST_CASE("write_params / read_params: round trip, all-or-nothing errors", "[checkpoint][params]") {
  TwoLayers<float> a(1), b(2);
  CheckpointWriter w;
  w.put_int("step", 100);  // entries outside the prefix are ignored by read_params
  write_params(w, a);
  REQUIRE(w.has("param/fc1.weight"));
  REQUIRE(w.has("param/fc2.bias"));
  const CheckpointReader r = CheckpointReader::from_bytes(w.to_bytes());
  read_params(r, b);
  const auto va = a.values(), vb = b.values();
  REQUIRE(va.size() == 4);
  for (std::size_t i = 0; i < va.size(); ++i) REQUIRE(same_bits(va[i], vb[i]));

  // A custom prefix next to the default one.
  TwoLayers<float> ema(3), ema2(4);
  write_params(w, ema, "ema/");
  const CheckpointReader r2 = CheckpointReader::from_bytes(w.to_bytes());
  read_params(r2, ema2, "ema/");
  REQUIRE(same_bits(ema2.fc2.weight.value, ema.fc2.weight.value));
  read_params(r2, b);  // the ema/ tensors are not under param/

  // Missing: the checkpoint has fc1 only. fc1 (visited first) must not be loaded either.
  {
    TwoLayers<float> one(5, 2, false), target(6);
    CheckpointWriter w1;
    write_params(w1, one);
    const auto before = target.values();
    SEQGEN_THROWS_WITH(read_params(CheckpointReader::from_bytes(w1.to_bytes()), target), FormatError,
                       "missing tensor 'param/fc2.weight'");
    const auto after = target.values();
    for (std::size_t i = 0; i < before.size(); ++i) REQUIRE(same_bits(before[i], after[i]));
  }
  // Extra: the checkpoint has fc2, the module does not.
  {
    TwoLayers<float> target(7, 2, false);
    const auto before = target.values();
    SEQGEN_THROWS_WITH(read_params(r, target), FormatError,
                       "unexpected tensor 'param/fc2.weight': the module has no parameter 'fc2.weight'");
    const auto after = target.values();
    for (std::size_t i = 0; i < before.size(); ++i) REQUIRE(same_bits(before[i], after[i]));
  }
  // Wrong shape in the second layer, wrong precision.
  {
    TwoLayers<float> target(8, 3);
    const auto before = target.values();
    SEQGEN_THROWS_WITH(read_params(r, target), FormatError,
                       "tensor 'param/fc2.weight' has shape (2, 4), expected (3, 4)");
    const auto after = target.values();
    for (std::size_t i = 0; i < before.size(); ++i) REQUIRE(same_bits(before[i], after[i]));
    TwoLayers<double> as_double(9);
    SEQGEN_THROWS_WITH(read_params(r, as_double), FormatError,
                       "tensor 'param/fc1.weight' is stored as float32, expected float64");
  }
}

TEST_CASE("Checkpoint: save replaces the previous file atomically and leaves no temporary file",
          "[checkpoint][io]") {
  TempDir dir;
  const std::string path = dir / "model.ckpt";
  CheckpointWriter first, second;
  first.put_int("step", 1);
  second.put_int("step", 2);
  second.put_tensor<float>("w", random_mat<float>(5, 5, 1));
  first.save(path);
  REQUIRE(CheckpointReader::load(path).get_int("step") == 1);
  second.save(path);
  REQUIRE(CheckpointReader::load(path).get_int("step") == 2);
  REQUIRE(read_file(path) == second.to_bytes());
  REQUIRE(dir.names() == std::vector<std::string>{"model.ckpt"});

  SEQGEN_THROWS_WITH(CheckpointReader::load(dir / "absent.ckpt"), IoError,
                     "cannot open checkpoint '" + (dir / "absent.ckpt") + "': No such file or directory");
  SEQGEN_THROWS_WITH(CheckpointReader::load(dir.path.string()), IoError, "is not a regular file");
  write_file(dir / "junk", "not a checkpoint at all");
  SEQGEN_THROWS_WITH(CheckpointReader::load(dir / "junk"), FormatError,
                     "checkpoint '" + (dir / "junk") + "': not a seqgen checkpoint");
}

TEST_CASE("Checkpoint: a failed save throws IoError and leaves the previous file byte-identical", "[checkpoint][io]") {
  TempDir dir;
  CheckpointWriter w;
  w.put_string("what", "new");
  w.put_tensor<float>("w", random_mat<float>(128, 128, 2));  // 64 KiB of data

  SECTION("a folder that does not exist") {
    const std::string path = dir / "missing/model.ckpt";
    SEQGEN_THROWS_WITH(w.save(path), IoError, "cannot save checkpoint '" + path + "'");
    SEQGEN_THROWS_WITH(w.save(path), IoError, "No such file or directory");
    REQUIRE(dir.names().empty());
  }
  SECTION("a path that is a folder") {
    const std::string path = dir / "sub";
    fs::create_directory(path);
    SEQGEN_THROWS_WITH(w.save(path), IoError, "cannot rename");
    SEQGEN_THROWS_WITH(w.save(path), IoError, "Is a directory");
    REQUIRE(fs::is_directory(path));
    REQUIRE(dir.names() == std::vector<std::string>{"sub"});
  }
  SECTION("a folder without write permission (skipped as root, who bypasses it)") {
    const std::string sub = dir / "ro";
    fs::create_directory(sub);
    const std::string path = sub + "/model.ckpt";
    const std::string previous = small_checkpoint();
    write_file(path, previous);
    fs::permissions(sub, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                             fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
    const bool bypassed = static_cast<bool>(std::ofstream(sub + "/probe"));
    if (!bypassed) {
      SEQGEN_THROWS_WITH(w.save(path), IoError, "cannot save checkpoint '" + path + "'");
      SEQGEN_THROWS_WITH(w.save(path), IoError, "Permission denied");
      REQUIRE(read_file(path) == previous);
      std::vector<std::string> names;
      for (const auto& e : fs::directory_iterator(sub)) names.push_back(e.path().filename().string());
      REQUIRE(names == std::vector<std::string>{"model.ckpt"});
    }
  }
  SECTION("a disk that fills up mid-write (RLIMIT_FSIZE)") {
    const std::string path = dir / "model.ckpt";
    const std::string previous = small_checkpoint();
    write_file(path, previous);
    struct Limit {  // restored however the section ends
      rlimit saved{};
      void (*handler)(int);
      Limit() {
        getrlimit(RLIMIT_FSIZE, &saved);
        handler = std::signal(SIGXFSZ, SIG_IGN);  // make write() fail with EFBIG instead of killing us
        rlimit small = saved;
        small.rlim_cur = 16 * 1024;
        setrlimit(RLIMIT_FSIZE, &small);
      }
      ~Limit() {
        setrlimit(RLIMIT_FSIZE, &saved);
        std::signal(SIGXFSZ, handler);
      }
    };
    bool threw = false;
    std::string message;
    {
      Limit limit;
      try {
        w.save(path);
      } catch (const IoError& e) {
        threw = true;
        message = e.what();
      }
    }
    REQUIRE(threw);
    REQUIRE(message.find("cannot save checkpoint '" + path + "': write to '" + path + ".tmp.") != std::string::npos);
    REQUIRE(message.find("File too large") != std::string::npos);
    REQUIRE(read_file(path) == previous);
    REQUIRE(dir.names() == std::vector<std::string>{"model.ckpt"});
  }
}

}  // namespace test_checkpoint
