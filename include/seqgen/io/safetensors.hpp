// The safetensors container (Hugging Face, https://github.com/huggingface/safetensors): named
// tensors behind a JSON header.
//
//   u64 N (little-endian) | N bytes of JSON | the data buffer
//   JSON: { "<name>": {"dtype": "F32", "shape": [d0, d1, …], "data_offsets": [begin, end]}, …,
//           "__metadata__": {"<key>": "<string>", …} (optional) }
// A tensor's bytes are [begin, end) of the data buffer (offsets relative to its start), row-major,
// little-endian; end − begin = product(shape) · the dtype's size. The header may end in spaces
// (writers pad it to a multiple of 8).
//
// read_safetensors_index checks the whole header before any tensor is used: N against the file
// and against kMaxHeaderBytes, the JSON parsed by nlohmann-json with its nesting depth and its
// number of values bounded (a JSON bomb fails early, before it can take much memory), every
// entry an object with exactly dtype, shape and data_offsets, the shape at most 8 dimensions of
// at most 2^40 whose product fits the buffer, offsets inside the buffer and matching the shape,
// and no two tensors overlapping. Dtypes other than F32, F16 and BF16 are indexed (so that a
// caller can skip them by name) but cannot be read as values.
//
// SafetensorsWriter streams tensors to a file: the header is computed from the names, dtypes and
// shapes first, then each tensor's values are written in the same order, converted on the way.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "seqgen/core/error.hpp"
#include "seqgen/io/tensor_file.hpp"

namespace seqgen {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;  // as in the file: "F32", "F16", "BF16", "I64", …
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;  // data_offsets, relative to the data buffer

  std::uint64_t numel() const {
    std::uint64_t n = 1;
    for (std::int64_t d : shape) n *= std::uint64_t(d);  // bounded by read_safetensors_index
    return n;
  }
};

struct SafetensorsIndex {
  std::uint64_t data_start = 0;  // 8 + N: where the data buffer begins in the file
  std::vector<SafetensorsTensor> tensors;  // in the header's order
  std::map<std::string, std::string> metadata;
  std::map<std::string, std::size_t> position;  // name -> index in tensors

  const SafetensorsTensor* find(const std::string& name) const {
    const auto it = position.find(name);
    return it == position.end() ? nullptr : &tensors[it->second];
  }
};

inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = std::uint64_t(16) << 20;
inline constexpr int kMaxSafetensorsJsonDepth = 4;
inline constexpr std::size_t kMaxSafetensorsJsonValues = std::size_t(1) << 20;
inline constexpr std::size_t kMaxSafetensorsDims = 8;

// The byte width of a safetensors dtype, 0 when unknown.
inline std::size_t safetensors_dtype_bytes(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

// The dtypes seqgen reads as values; false for the others.
inline bool safetensors_float_dtype(const std::string& d, TensorDtype& out) {
  if (d == "F32") out = TensorDtype::f32;
  else if (d == "F16") out = TensorDtype::f16;
  else if (d == "BF16") out = TensorDtype::bf16;
  else return false;
  return true;
}

// Parses and checks the header of a safetensors file (see the header comment).
inline SafetensorsIndex read_safetensors_index(TensorFileReader& f) {
  const std::string& name = f.name();
  check<FormatError>(f.size() >= 8, name, ": ", f.size(), " bytes, shorter than the 8-byte header length");
  char raw[8];
  f.read(0, 8, raw);
  const std::uint64_t n = detail::load_le64(raw);
  check<FormatError>(n >= 2 && n <= f.size() - 8, name, ": header length ", n, " does not fit: the file has ",
                     f.size() - 8, " bytes after the length (not a safetensors file?)");
  check<FormatError>(n <= kMaxSafetensorsHeaderBytes, name, ": header length ", n, " is more than the ",
                     kMaxSafetensorsHeaderBytes, " bytes this reader accepts");
  std::string text(n, '\0');
  f.read(8, n, text.data());
  check<FormatError>(text[0] == '{', name, ": the header does not start with '{' (not a safetensors file?)");

  // The callback bounds what the parser may build: a header nested deeper than a safetensors
  // header is, or holding more values than any real one, is refused while it is parsed.
  std::size_t values = 0;
  const auto guard = [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
    check<FormatError>(depth <= kMaxSafetensorsJsonDepth, name, ": the JSON header nests deeper than ",
                       kMaxSafetensorsJsonDepth, " levels");
    check<FormatError>(++values <= kMaxSafetensorsJsonValues, name, ": the JSON header holds more than ",
                       kMaxSafetensorsJsonValues, " values");
    return true;
  };
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text.begin(), text.end(), guard);
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(name + ": the header is not valid JSON: " + e.what());
  }
  check<FormatError>(j.is_object(), name, ": the header is a JSON ", j.type_name(), ", expected an object");

  SafetensorsIndex index;
  index.data_start = 8 + n;
  const std::uint64_t buffer = f.size() - index.data_start;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& v = it.value();
    if (key == "__metadata__") {
      check<FormatError>(v.is_object(), name, ": __metadata__ is a JSON ", v.type_name(), ", expected an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        check<FormatError>(m.value().is_string(), name, ": __metadata__ '", m.key(), "' is a JSON ",
                           m.value().type_name(), ", expected a string");
        index.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = name + ": tensor '" + key + "'";
    check<FormatError>(v.is_object() && v.size() == 3 && v.contains("dtype") && v.contains("shape") &&
                           v.contains("data_offsets"),
                       where, ": expected an object of exactly dtype, shape and data_offsets, found ", v.dump().substr(0, 200));
    SafetensorsTensor t;
    t.name = key;
    check<FormatError>(v["dtype"].is_string(), where, ": dtype is not a string");
    t.dtype = v["dtype"].get<std::string>();
    const std::size_t width = safetensors_dtype_bytes(t.dtype);
    check<FormatError>(width > 0, where, ": unknown dtype '", t.dtype, "'");
    const nlohmann::json& shape = v["shape"];
    check<FormatError>(shape.is_array() && shape.size() <= kMaxSafetensorsDims, where,
                       ": shape must be an array of at most ", kMaxSafetensorsDims, " dimensions, found ",
                       shape.dump().substr(0, 200));
    double count = 1;  // in double: a product of hostile dimensions must not wrap
    for (const auto& d : shape) {
      check<FormatError>(d.is_number_unsigned() && d.get<std::uint64_t>() <= (std::uint64_t(1) << 40), where,
                         ": dimension ", d.dump(), " is not an integer in [0, 2^40]");
      t.shape.push_back(std::int64_t(d.get<std::uint64_t>()));
      count *= double(t.shape.back());
    }
    check<FormatError>(count * double(width) <= double(buffer), where, ": its shape needs ", count * double(width),
                       " bytes, more than the ", buffer, " bytes of data in the file");
    const nlohmann::json& off = v["data_offsets"];
    check<FormatError>(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
                       where, ": data_offsets must be two non-negative integers, found ", off.dump().substr(0, 200));
    t.begin = off[0].get<std::uint64_t>();
    t.end = off[1].get<std::uint64_t>();
    check<FormatError>(t.begin <= t.end && t.end <= buffer, where, ": data_offsets [", t.begin, ", ", t.end,
                       "] are not inside the data buffer of ", buffer, " bytes");
    check<FormatError>(t.end - t.begin == t.numel() * width, where, ": data_offsets [", t.begin, ", ", t.end,
                       "] hold ", t.end - t.begin, " bytes, its shape and dtype ", t.dtype, " need ",
                       t.numel() * width);
    index.position[t.name] = index.tensors.size();
    index.tensors.push_back(std::move(t));
  }
  // No two tensors may share bytes.
  std::vector<const SafetensorsTensor*> by_offset;
  for (const auto& t : index.tensors)
    if (t.end > t.begin) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const SafetensorsTensor* a, const SafetensorsTensor* b) { return a->begin < b->begin; });
  for (std::size_t i = 1; i < by_offset.size(); ++i)
    check<FormatError>(by_offset[i]->begin >= by_offset[i - 1]->end, name, ": tensors '", by_offset[i - 1]->name,
                       "' [", by_offset[i - 1]->begin, ", ", by_offset[i - 1]->end, ") and '", by_offset[i]->name,
                       "' [", by_offset[i]->begin, ", ", by_offset[i]->end, ") overlap");
  return index;
}

// The values of tensor t (a float dtype), converted, into dst[0 .. numel).
template <typename Scalar>
void read_safetensors_values(TensorFileReader& f, const SafetensorsIndex& index, const SafetensorsTensor& t,
                             Scalar* dst) {
  TensorDtype d = TensorDtype::f32;
  check<FormatError>(safetensors_float_dtype(t.dtype, d), f.name(), ": tensor '", t.name, "' has dtype ", t.dtype,
                     ", expected F32, F16 or BF16");
  f.read_values(index.data_start + t.begin, d, t.numel(), dst);
}

// Writes a safetensors file tensor by tensor: add() every tensor (name, dtype, shape), then
// write() each one's values in the same order, then commit(). Atomic, as TensorFileWriter.
class SafetensorsWriter {
 public:
  explicit SafetensorsWriter(const std::string& path) : path_(path) {}

  void add(const std::string& name, TensorDtype dtype, std::vector<std::int64_t> shape) {
    check<ConfigError>(out_ == nullptr, "SafetensorsWriter: add() after the first write()");
    SafetensorsTensor t;
    t.name = name;
    t.dtype = dtype_name(dtype);
    t.shape = std::move(shape);
    t.begin = end_;
    t.end = end_ + t.numel() * dtype_bytes(dtype);
    end_ = t.end;
    tensors_.push_back(std::move(t));
  }
  void set_metadata(const std::string& key, const std::string& value) { metadata_[key] = value; }

  // The values of the next tensor, row-major, numel of them.
  template <typename Scalar>
  void write(const Scalar* values, std::uint64_t numel) {
    if (!out_) begin();
    check<ConfigError>(next_ < tensors_.size() && tensors_[next_].numel() == numel, "SafetensorsWriter: write of ",
                       numel, " values does not match the next tensor added");
    TensorDtype d = TensorDtype::f32;
    safetensors_float_dtype(tensors_[next_].dtype, d);
    out_->write_values(values, numel, d);
    ++next_;
  }
  // The values of a column-major (R, K) matrix stored as the row-major (R, K) tensor.
  template <typename Scalar>
  void write_transposed(const Mat<Scalar>& m) {
    if (!out_) begin();
    check<ConfigError>(next_ < tensors_.size() && tensors_[next_].numel() == std::uint64_t(m.size()),
                       "SafetensorsWriter: write of ", m.size(), " values does not match the next tensor added");
    TensorDtype d = TensorDtype::f32;
    safetensors_float_dtype(tensors_[next_].dtype, d);
    out_->write_rows_transposed(m, d);
    ++next_;
  }

  void commit() {
    if (!out_) begin();
    check<ConfigError>(next_ == tensors_.size(), "SafetensorsWriter: ", tensors_.size() - next_,
                       " tensors added but not written");
    out_->commit();
  }

 private:
  void begin() {
    nlohmann::json j = nlohmann::json::object();
    if (!metadata_.empty()) j["__metadata__"] = metadata_;
    for (const auto& t : tensors_)
      j[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {t.begin, t.end}}};
    std::string header = j.dump();
    header.resize((header.size() + 7) / 8 * 8, ' ');  // the data buffer starts 8-aligned
    out_ = std::make_unique<TensorFileWriter>(path_);
    char n[8];
    detail::store_le(n, header.size(), 8);
    out_->write(n, 8);
    out_->write(header.data(), header.size());
  }

  std::string path_;
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, std::string> metadata_;
  std::uint64_t end_ = 0;
  std::size_t next_ = 0;
  std::unique_ptr<TensorFileWriter> out_;
};

}  // namespace seqgen
