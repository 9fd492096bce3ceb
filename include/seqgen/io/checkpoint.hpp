// A self-describing binary checkpoint: named entries of a few types, little-endian on disk whatever
// the host, closed by a CRC-32. The byte layout (docs/checkpoint-format.md), all integers little-endian:
//
//   header   "SEQGENCK" | u32 format version | u32 entry count | u64 file size      (24 bytes)
//   entry    u8 type | u32 key length | key | u64 payload size | payload             (repeated)
//   trailer  u32 CRC-32 (crc32.hpp) of every byte before it
//
//   type  payload
//   1     int64    8 bytes, two's complement
//   2     float64  8 bytes, the IEEE-754 bit pattern
//   3     string   the bytes
//   4     bytes    the bytes (a blob: same encoding as string, a different type)
//   5, 6  tensor   u64 rows | u64 cols | rows·cols float32 (5) or float64 (6), column-major like Mat
//
// Tensors keep their own precision, so a float model resumes bit-identically.
//
// CheckpointWriter collects entries in memory; save() is atomic: it writes a temporary file in the
// same folder, fsyncs it, renames it over the target and fsyncs the folder, so a crash or a full
// disk leaves the previous file or the new one, never a mix.
//
// CheckpointReader validates the whole file before any getter runs, in this order (a file is untrusted):
//   magic -> header length -> version -> file size vs header -> CRC -> every entry's sizes against the
//   bytes that are actually there.
// A corrupted or hostile file gives a FormatError naming the problem, never a read out of bounds or
// an allocation sized by an unchecked number. The version is checked before the CRC so that a file
// from a newer seqgen (whose layout after the header may differ) says so instead of "CRC mismatch".
//
// write_params / read_params store a module's parameters as tensors named prefix + Param::name.
// POSIX only (open, write, fsync, rename).
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/core/memory.hpp"
#include "seqgen/core/param.hpp"
#include "seqgen/io/crc32.hpp"

namespace seqgen {

// The newest format version this build writes and reads.
inline constexpr std::uint32_t kCheckpointFormatVersion = 1;

enum class EntryType : std::uint8_t { Int64 = 1, Float64 = 2, String = 3, Bytes = 4, TensorF32 = 5, TensorF64 = 6 };

namespace detail {

inline constexpr char kCheckpointMagic[8] = {'S', 'E', 'Q', 'G', 'E', 'N', 'C', 'K'};
inline constexpr std::size_t kCheckpointHeaderSize = 24;  // magic, version, entry count, file size
inline constexpr std::size_t kCheckpointCrcSize = 4;

// Explicit little-endian encoding, whatever the host. GCC and Clang compile these byte shifts to one
// plain load or store on little-endian hosts (checked: tensors encode and decode at memcpy speed).
inline void store_le(char* p, std::uint64_t v, int nbytes) {
  for (int i = 0; i < nbytes; ++i) p[i] = static_cast<char>(static_cast<unsigned char>(v >> (8 * i)));
}
inline std::uint32_t load_le32(const char* p) {
  return detail::load_le32(reinterpret_cast<const unsigned char*>(p));  // from crc32.hpp
}
inline std::uint64_t load_le64(const char* p) { return load_le32(p) | std::uint64_t(load_le32(p + 4)) << 32; }
inline void append_le(std::string& out, std::uint64_t v, int nbytes) {
  char buf[8];
  store_le(buf, v, nbytes);
  out.append(buf, static_cast<std::size_t>(nbytes));
}

// float <-> u32 and double <-> u64 bit patterns, the types a tensor element is stored as.
template <typename Scalar>
struct TensorTraits;
template <>
struct TensorTraits<float> {
  using Bits = std::uint32_t;
  static constexpr EntryType type = EntryType::TensorF32;
  static Bits load(const char* p) { return load_le32(p); }
};
template <>
struct TensorTraits<double> {
  using Bits = std::uint64_t;
  static constexpr EntryType type = EntryType::TensorF64;
  static Bits load(const char* p) { return load_le64(p); }
};

inline const char* entry_type_name(EntryType type) {
  switch (type) {
    case EntryType::Int64: return "an int64";
    case EntryType::Float64: return "a float64";
    case EntryType::String: return "a string";
    case EntryType::Bytes: return "bytes";
    case EntryType::TensorF32: return "a float32 tensor";
    case EntryType::TensorF64: return "a float64 tensor";
  }
  return "an unknown type";
}

inline std::string hex32(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", static_cast<unsigned>(v));
  return buf;
}

inline std::string errno_text(int error) { return std::generic_category().message(error); }

}  // namespace detail

class CheckpointWriter {
 public:
  // Each put_* adds one entry. Keys are non-empty and unique across all types, else ConfigError.
  void put_int(const std::string& key, std::int64_t value) {
    detail::store_le(begin_entry(key, EntryType::Int64, 8), static_cast<std::uint64_t>(value), 8);
  }
  void put_double(const std::string& key, double value) {
    std::uint64_t bits;
    std::memcpy(&bits, &value, 8);
    detail::store_le(begin_entry(key, EntryType::Float64, 8), bits, 8);
  }
  void put_string(const std::string& key, std::string_view value) { put_raw(key, EntryType::String, value); }
  void put_bytes(const std::string& key, std::string_view value) { put_raw(key, EntryType::Bytes, value); }

  // Stored in Scalar's own precision (float32 or float64), column-major.
  template <typename Scalar>
  void put_tensor(const std::string& name, const Mat<Scalar>& value) {
    using Bits = typename detail::TensorTraits<Scalar>::Bits;
    constexpr int kSize = sizeof(Bits);
    const std::size_t n = static_cast<std::size_t>(value.size());
    char* p = begin_entry(name, detail::TensorTraits<Scalar>::type, 16 + n * kSize);
    detail::store_le(p, static_cast<std::uint64_t>(value.rows()), 8);
    detail::store_le(p + 8, static_cast<std::uint64_t>(value.cols()), 8);
    p += 16;
    const Scalar* x = value.data();
    for (std::size_t i = 0; i < n; ++i, p += kSize) {
      Bits bits;
      std::memcpy(&bits, x + i, kSize);
      detail::store_le(p, bits, kSize);
    }
  }

  bool has(const std::string& key) const { return keys_.count(key) != 0; }

  // The whole file as it would be saved.
  std::string to_bytes() const {
    std::string out = header();
    out.reserve(out.size() + body_.size() + detail::kCheckpointCrcSize);
    out += body_;
    detail::append_le(out, crc(), 4);
    return out;
  }

  // Atomically replaces `path` (see the file comment). Throws IoError naming the file and the
  // system's reason; on failure the temporary file is removed and a previous file at `path` is untouched.
  void save(const std::string& path) const;

  // Checks, without writing it, that save(path) can create its temporary file and put it in place:
  // `path` is not empty, not a folder, device or FIFO, its folder exists and is writable, and the
  // names fit the file system. Throws IoError naming the file and the reason. (A full disk is
  // found only by the save itself.)
  static void check_destination(const std::string& path);

 private:
  // Appends type, key and payload size, makes room for the payload and returns where it goes.
  char* begin_entry(const std::string& key, EntryType type, std::size_t payload_size) {
    check<ConfigError>(!key.empty(), "CheckpointWriter: empty key");
    check<ConfigError>(key.size() <= std::numeric_limits<std::uint32_t>::max(), "CheckpointWriter: key of ",
                       key.size(), " bytes is too long");
    check<ConfigError>(count_ < std::numeric_limits<std::uint32_t>::max(), "CheckpointWriter: too many entries");
    check<ConfigError>(keys_.insert(key).second, "CheckpointWriter: duplicate entry '", key, "'");
    ++count_;
    body_.push_back(static_cast<char>(type));
    detail::append_le(body_, key.size(), 4);
    body_ += key;
    detail::append_le(body_, payload_size, 8);
    const std::size_t at = body_.size();
    body_.resize(at + payload_size);
    return &body_[at];
  }
  void put_raw(const std::string& key, EntryType type, std::string_view value) {
    char* p = begin_entry(key, type, value.size());
    if (!value.empty()) std::memcpy(p, value.data(), value.size());
  }

  std::string header() const {
    std::string h(detail::kCheckpointMagic, sizeof detail::kCheckpointMagic);
    detail::append_le(h, kCheckpointFormatVersion, 4);
    detail::append_le(h, count_, 4);
    detail::append_le(h, detail::kCheckpointHeaderSize + body_.size() + detail::kCheckpointCrcSize, 8);
    return h;
  }
  std::uint32_t crc() const {
    const std::string h = header();
    return crc32_update(crc32(h), body_.data(), body_.size());
  }

  std::string body_;  // the encoded entries, in insertion order
  std::uint32_t count_ = 0;
  std::unordered_set<std::string> keys_;
};

namespace detail {

// The temporary file of an atomic save: removed by the destructor unless committed.
class TempFile {
 public:
  TempFile(std::string target, std::string path) : target_(std::move(target)), path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0) fail("cannot create the temporary file '" + path_ + "'", errno);
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  ~TempFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!committed_) ::unlink(path_.c_str());
  }

  void write(const char* data, std::size_t size) {
    while (size > 0) {
      const ::ssize_t n = ::write(fd_, data, size);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("write to '" + path_ + "' failed", n < 0 ? errno : ENOSPC);
      data += n;
      size -= static_cast<std::size_t>(n);
    }
  }

  // fsync, close, rename over the target: after this the new file is in place.
  void commit() {
    if (::fsync(fd_) != 0) fail("fsync of '" + path_ + "' failed", errno);
    const int fd = fd_;
    fd_ = -1;
    if (::close(fd) != 0) fail("close of '" + path_ + "' failed", errno);
    if (std::rename(path_.c_str(), target_.c_str()) != 0) fail("cannot rename '" + path_ + "' over it", errno);
    committed_ = true;
  }

  [[noreturn]] void fail(const std::string& what, int error) const {
    throw IoError("cannot save checkpoint '" + target_ + "': " + what + ": " + errno_text(error));
  }

 private:
  std::string target_, path_;
  int fd_ = -1;
  bool committed_ = false;
};

// Makes a rename inside `dir` durable. Filesystems that cannot sync a folder (EINVAL) are skipped.
inline void fsync_folder(const std::string& dir, const std::string& target) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int error = fd < 0 ? errno : (::fsync(fd) == 0 ? 0 : errno);
  if (fd >= 0) ::close(fd);
  check<IoError>(error == 0 || error == EINVAL, "checkpoint '", target, "' was written but its folder '", dir,
                 "' could not be synced: ", errno_text(error));
}

}  // namespace detail

namespace detail {

// The temporary sibling of `path` a save writes first: unique within the folder (the pid separates
// processes, the counter threads and retries), and of a fixed length for the first million saves,
// so that check_destination's probe proves that every later name fits the file system.
inline std::string temp_sibling(const std::string& path) {
  static std::atomic<unsigned long> counter{0};
  char suffix[64];
  std::snprintf(suffix, sizeof suffix, ".tmp.%ld.%06lu", static_cast<long>(::getpid()), counter++);
  return path + suffix;
}

}  // namespace detail

inline void CheckpointWriter::check_destination(const std::string& path) {
  const auto fail = [&](const std::string& why) { throw IoError("cannot write checkpoint '" + path + "': " + why); };
  if (path.empty()) throw IoError("cannot write a checkpoint to an empty path");
  struct stat st;
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  if (::stat(dir.c_str(), &st) != 0) fail("its folder '" + dir + "': " + detail::errno_text(errno));
  if (!S_ISDIR(st.st_mode)) fail("'" + dir + "' is not a folder");
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) fail("it is a folder");
    if (!S_ISREG(st.st_mode)) fail("it exists and is not a regular file (a device, FIFO or socket?)");
  } else if (errno != ENOENT) {
    fail(detail::errno_text(errno));
  }
  // A real temporary file, created and removed: proves the folder writable, the file system not
  // read-only and the names within its limits.
  const std::string probe = detail::temp_sibling(path);
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot create a file in its folder '" + dir + "': " + detail::errno_text(errno));
  ::close(fd);
  ::unlink(probe.c_str());
}

inline void CheckpointWriter::save(const std::string& path) const {
  check<IoError>(!path.empty(), "CheckpointWriter::save: empty path");
  const std::string tmp = detail::temp_sibling(path);
  const std::string head = header();
  char tail[4];
  detail::store_le(tail, crc(), 4);

  detail::TempFile file(path, tmp);
  file.write(head.data(), head.size());
  file.write(body_.data(), body_.size());
  file.write(tail, sizeof tail);
  file.commit();

  std::string dir = std::filesystem::path(path).parent_path().string();
  detail::fsync_folder(dir.empty() ? "." : dir, path);
}

class CheckpointReader {
 public:
  // Reads and validates a whole file. IoError if it cannot be read, FormatError if it is not a
  // valid checkpoint.
  static CheckpointReader load(const std::string& path) {
    const auto io_fail = [&](const char* what, int error) {
      throw IoError(std::string("cannot ") + what + " checkpoint '" + path + "': " + detail::errno_text(error));
    };
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer; the S_ISREG check below rejects it.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) io_fail("open", errno);
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st;
    if (::fstat(fd, &st) != 0) io_fail("stat", errno);
    check<IoError>(S_ISREG(st.st_mode), "checkpoint '", path, "' is not a regular file");
    const std::string source = "checkpoint '" + path + "'";
    const std::size_t size = static_cast<std::size_t>(st.st_size);  // the size the file has, not one it claims
    const auto read_into = [&](char* out, std::size_t count) {
      for (std::size_t done = 0; done < count;) {
        const ::ssize_t n = ::read(fd, out + done, count - done);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) io_fail("read", errno);
        check<IoError>(n > 0, source, " shrank while being read");
        done += static_cast<std::size_t>(n);
      }
    };
    // The header first: a file of another kind, or one whose header disagrees with its size, is
    // refused before the rest is read, whatever its size.
    char head[detail::kCheckpointHeaderSize];
    const std::size_t head_size = std::min(size, sizeof head);
    read_into(head, head_size);
    check_header(head, head_size, size, source);
    require_memory(double(size), source + " (" + std::to_string(size) + " bytes) must be read whole: it");
    std::string bytes(size, '\0');
    std::memcpy(&bytes[0], head, head_size);
    read_into(&bytes[head_size], size - head_size);
    return CheckpointReader(std::move(bytes), source);
  }

  // Validates a checkpoint held in memory (the output of CheckpointWriter::to_bytes()).
  static CheckpointReader from_bytes(std::string bytes) {
    return CheckpointReader(std::move(bytes), "checkpoint (in memory)");
  }

  // Getters throw FormatError for a missing key or an entry of another type.
  std::int64_t get_int(const std::string& key) const {
    return static_cast<std::int64_t>(detail::load_le64(payload(find(key, EntryType::Int64))));
  }
  double get_double(const std::string& key) const {
    const std::uint64_t bits = detail::load_le64(payload(find(key, EntryType::Float64)));
    double value;
    std::memcpy(&value, &bits, 8);
    return value;
  }
  // The same, for a field with a valid range: FormatError naming the file, the field and the range,
  // e.g. "checkpoint 'x.ckpt': train.batch = 0 is out of range [1, 1048576]". NaN is out of any range.
  std::int64_t get_int(const std::string& key, std::int64_t lo, std::int64_t hi) const {
    const std::int64_t v = get_int(key);
    if (v < lo || v > hi) fail(key, " = ", v, " is out of range [", lo, ", ", hi, "]");
    return v;
  }
  double get_double(const std::string& key, double lo, double hi) const {
    const double v = get_double(key);
    if (!(v >= lo && v <= hi)) fail(key, " = ", v, " is out of range [", lo, ", ", hi, "]");
    return v;
  }
  std::string get_string(const std::string& key) const { return copy_of(find(key, EntryType::String)); }
  std::string get_bytes(const std::string& key) const { return copy_of(find(key, EntryType::Bytes)); }

  // Throws what get_tensor would (missing, not a tensor, other precision, other shape) without copying.
  template <typename Scalar>
  void check_tensor(const std::string& name, Index rows, Index cols) const {
    tensor_entry<Scalar>(name, rows, cols);
  }

  // Copies tensor `name` into `out` (resized to (rows, cols)) after checking that it is stored in
  // Scalar's precision with exactly that shape. On error `out` is left untouched.
  template <typename Scalar>
  void get_tensor(const std::string& name, Mat<Scalar>& out, Index rows, Index cols) const {
    using Bits = typename detail::TensorTraits<Scalar>::Bits;
    constexpr int kSize = sizeof(Bits);
    const Entry& e = tensor_entry<Scalar>(name, rows, cols);
    ensure_shape(out, rows, cols);
    const char* p = payload(e) + 16;
    Scalar* x = out.data();
    const std::size_t n = static_cast<std::size_t>(out.size());
    for (std::size_t i = 0; i < n; ++i, p += kSize) {
      const Bits bits = detail::TensorTraits<Scalar>::load(p);
      std::memcpy(x + i, &bits, kSize);
    }
  }

  bool has(const std::string& key) const { return index_.count(key) != 0; }
  // Every key, in file order.
  std::vector<std::string> keys() const {
    std::vector<std::string> out;
    out.reserve(entries_.size());
    for (const Entry& e : entries_) out.push_back(e.key);
    return out;
  }
  std::uint32_t version() const { return version_; }
  // Size of the whole checkpoint in bytes: an upper bound for anything it can hold.
  std::size_t size_bytes() const { return bytes_.size(); }
  // "checkpoint '<path>'" or "checkpoint (in memory)": how error messages name this file.
  const std::string& source() const { return source_; }

 private:
  struct Entry {
    std::string key;
    EntryType type;
    std::size_t offset;  // of the payload in bytes_
    std::size_t size;    // of the payload
    Index rows = 0, cols = 0;
  };

  CheckpointReader(std::string bytes, std::string source) : bytes_(std::move(bytes)), source_(std::move(source)) {
    parse();
  }

  template <typename... Parts>
  [[noreturn]] void fail(Parts&&... parts) const {
    throw FormatError(source_ + ": " + detail::cat(std::forward<Parts>(parts)...));
  }

  // Validates the header `b` (the first `have` bytes of a file of `n` bytes): magic, version and
  // the size it declares. Throws FormatError naming `source`.
  static void check_header(const char* b, std::size_t have, std::size_t n, const std::string& source);
  void parse();

  const Entry& find(const std::string& key, EntryType type) const {
    const auto it = index_.find(key);
    if (it == index_.end()) fail("missing entry '", key, "'");
    const Entry& e = entries_[it->second];
    if (e.type != type)
      fail("entry '", key, "' is ", detail::entry_type_name(e.type), ", expected ", detail::entry_type_name(type));
    return e;
  }

  template <typename Scalar>
  const Entry& tensor_entry(const std::string& name, Index rows, Index cols) const {
    static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>, "tensors are float or double");
    constexpr EntryType want = detail::TensorTraits<Scalar>::type;
    const auto it = index_.find(name);
    if (it == index_.end()) fail("missing tensor '", name, "'");
    const Entry& e = entries_[it->second];
    if (e.type == EntryType::TensorF32 || e.type == EntryType::TensorF64) {
      if (e.type != want)
        fail("tensor '", name, "' is stored as ", e.type == EntryType::TensorF32 ? "float32" : "float64", ", expected ",
             want == EntryType::TensorF32 ? "float32" : "float64");
    } else {
      fail("entry '", name, "' is ", detail::entry_type_name(e.type), ", expected ", detail::entry_type_name(want));
    }
    if (e.rows != rows || e.cols != cols)
      fail("tensor '", name, "' has shape (", e.rows, ", ", e.cols, "), expected (", rows, ", ", cols, ")");
    return e;
  }

  const char* payload(const Entry& e) const { return bytes_.data() + e.offset; }
  std::string copy_of(const Entry& e) const { return std::string(payload(e), e.size); }

  std::string bytes_;
  std::string source_;
  std::uint32_t version_ = 0;
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;  // key -> position in entries_
};

inline void CheckpointReader::check_header(const char* b, std::size_t have, std::size_t n, const std::string& source) {
  using detail::load_le32;
  using detail::load_le64;
  constexpr std::size_t kMagicSize = sizeof detail::kCheckpointMagic;
  constexpr std::size_t kMinSize = detail::kCheckpointHeaderSize + detail::kCheckpointCrcSize;
  const auto fail = [&](auto&&... parts) { throw FormatError(source + ": " + detail::cat(parts...)); };

  // Whatever magic bytes are present must match, so a short file of another kind is named as such.
  const std::size_t m = std::min(have, kMagicSize);
  if (std::memcmp(b, detail::kCheckpointMagic, m) != 0) {
    std::string start;
    for (std::size_t i = 0; i < m; ++i) {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(static_cast<unsigned char>(b[i])));
      start += (i ? " " : "") + std::string(buf);
    }
    fail("not a seqgen checkpoint (it starts with bytes ", start, ", expected \"SEQGENCK\")");
  }
  if (n < kMinSize)
    fail("truncated: ", n, " bytes cannot hold the ", kMinSize, "-byte header and CRC of a checkpoint");

  const std::uint32_t version = load_le32(b + 8);
  if (version > kCheckpointFormatVersion)
    fail("written by a newer seqgen: version ", version, ", this build reads up to ", kCheckpointFormatVersion);
  if (version == 0) fail("invalid format version 0");

  const std::uint64_t declared = load_le64(b + 16);
  if (declared > n) fail("truncated: the header says ", declared, " bytes but there are only ", n);
  if (declared < n) fail("unexpected bytes after the end: the header says ", declared, " bytes but there are ", n);
}

inline void CheckpointReader::parse() {
  using detail::load_le32;
  using detail::load_le64;
  const char* b = bytes_.data();
  const std::size_t n = bytes_.size();
  check_header(b, n, n, source_);
  version_ = load_le32(b + 8);
  const std::uint64_t count = load_le32(b + 12);

  const std::size_t end = n - detail::kCheckpointCrcSize;
  const std::uint32_t stored = load_le32(b + end);
  const std::uint32_t computed = crc32_update(0, b, end);
  if (stored != computed)
    fail("CRC mismatch: stored ", detail::hex32(stored), ", computed ", detail::hex32(computed),
         " (the file is corrupted)");

  // From here every size is compared with `end - pos`, the bytes actually left, before it is used.
  std::size_t pos = detail::kCheckpointHeaderSize;
  for (std::uint64_t i = 0; i < count; ++i) {
    if (end - pos < 5) fail("entry #", i, ": header is larger than the file (", end - pos, " bytes left)");
    const auto type = static_cast<EntryType>(static_cast<unsigned char>(b[pos]));
    const std::uint64_t key_size = load_le32(b + pos + 1);
    pos += 5;
    if (key_size > end - pos)
      fail("entry #", i, ": key length ", key_size, " is larger than the file (", end - pos, " bytes left)");
    if (key_size == 0) fail("entry #", i, " has an empty key");
    Entry e{std::string(b + pos, key_size), type, 0, 0};
    pos += key_size;
    const std::string& key = e.key;
    if (type < EntryType::Int64 || type > EntryType::TensorF64)
      fail("entry '", key, "': unknown entry type ", static_cast<unsigned>(type));
    if (end - pos < 8) fail("entry '", key, "': header is larger than the file (", end - pos, " bytes left)");
    const std::uint64_t size = load_le64(b + pos);
    pos += 8;
    if (size > end - pos) fail("entry '", key, "': size ", size, " is larger than the file (", end - pos, " bytes left)");
    e.offset = pos;
    e.size = static_cast<std::size_t>(size);

    if (type == EntryType::Int64 || type == EntryType::Float64) {
      if (size != 8)
        fail("entry '", key, "': ", detail::entry_type_name(type), " payload is ", size, " bytes, expected 8");
    } else if (type == EntryType::TensorF32 || type == EntryType::TensorF64) {
      if (size < 16) fail("tensor '", key, "': a ", size, "-byte payload cannot hold its shape (16 bytes)");
      const std::uint64_t rows = load_le64(b + pos), cols = load_le64(b + pos + 8);
      const std::uint64_t elem = type == EntryType::TensorF32 ? 4 : 8;
      // rows * cols must fit an Index; the byte count is formed only once it is known to fit the file.
      const std::uint64_t max_elems = static_cast<std::uint64_t>(std::numeric_limits<Index>::max());
      if (rows > max_elems || cols > max_elems || (rows != 0 && cols > max_elems / rows))
        fail("tensor '", key, "': shape (", rows, ", ", cols, ") overflows");
      const std::uint64_t elems = rows * cols;
      if (elems > (end - pos - 16) / elem)
        fail("tensor '", key, "': shape (", rows, ", ", cols, ") is larger than the file (", end - pos - 16,
             " bytes left)");
      if (16 + elems * elem != size)
        fail("tensor '", key, "': shape (", rows, ", ", cols, ") needs ", elems * elem, " bytes of data, the entry holds ",
             size - 16);
      e.rows = static_cast<Index>(rows);
      e.cols = static_cast<Index>(cols);
    }
    if (!index_.emplace(key, entries_.size()).second) fail("duplicate entry '", key, "'");
    entries_.push_back(std::move(e));
    pos += size;
  }
  if (pos != end) fail("unexpected bytes after the last entry (", end - pos, " of them)");
}

// Stores every parameter of a layer or model as a tensor named prefix + Param::name.
template <class Module>
void write_params(CheckpointWriter& writer, Module& module, const std::string& prefix = "param/") {
  module.for_each_param([&](auto& p) { writer.put_tensor(prefix + p.name, p.value); });
}

// Loads every parameter of a layer or model from the tensors named prefix + Param::name. All or
// nothing: every tensor is checked first (present, same precision, same shape, and no tensor under
// `prefix` that the module lacks), and only then are the parameters overwritten. Gradients are not
// touched. With an empty prefix every entry of the checkpoint must be a parameter of the module.
template <class Module>
void read_params(const CheckpointReader& reader, Module& module, const std::string& prefix = "param/") {
  std::unordered_set<std::string> expected;
  module.for_each_param([&](auto& p) {
    using Scalar = typename std::decay_t<decltype(p.value)>::Scalar;
    const std::string key = prefix + p.name;
    reader.template check_tensor<Scalar>(key, p.value.rows(), p.value.cols());
    expected.insert(key);
  });
  for (const std::string& key : reader.keys())
    if (key.compare(0, prefix.size(), prefix) == 0 && expected.count(key) == 0)
      throw FormatError(reader.source() + ": unexpected tensor '" + key + "': the module has no parameter '" +
                        key.substr(prefix.size()) + "'");
  module.for_each_param([&](auto& p) { reader.get_tensor(prefix + p.name, p.value, p.value.rows(), p.value.cols()); });
}

}  // namespace seqgen
