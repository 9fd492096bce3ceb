// A GPT-2 from either of the files people have: llm.c's gpt2_124M.bin (io/llmc_gpt2.hpp) or
// Hugging Face's model.safetensors (io/gpt2_safetensors.hpp), told apart by their first bytes;
// and the writing of a Gpt to either.
//
//   Gpt<float> m = load_gpt2_file("gpt2_124M.bin");          // or "model.safetensors"
//   save_gpt2_file(m, "out.safetensors", Gpt2Format::safetensors);
//
// A loaded model is an ordinary seqgen Gpt: the Trainer fine-tunes it and saves it as a seqgen
// checkpoint (train --init), and generate decodes it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>

#include "seqgen/core/error.hpp"
#include "seqgen/io/gpt2_safetensors.hpp"
#include "seqgen/io/llmc_gpt2.hpp"

namespace seqgen {

enum class Gpt2Format { llmc, safetensors };

inline const char* gpt2_format_name(Gpt2Format f) { return f == Gpt2Format::llmc ? "llm.c" : "safetensors"; }

// Which format the file at `path` is, from its first bytes: llm.c's magic, or a safetensors header
// length that fits in the file (and under the reader's limit) followed by '{'. IoError when it
// cannot be read, FormatError when it is neither. (The length must fit: '{' alone at byte 8 would
// take one file of random bytes in 256 for safetensors.)
inline Gpt2Format gpt2_file_format(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  check<IoError>(in.is_open(), "GPT-2 model '", path, "': cannot open it");
  const auto size = std::uint64_t(std::max<std::streamoff>(in.tellg(), 0));
  in.seekg(0);
  unsigned char b[9] = {};
  in.read(reinterpret_cast<char*>(b), 9);
  const std::streamsize got = in.gcount();
  if (got >= 4 && std::int32_t(detail::load_le32(b)) == kLlmcModelMagic) return Gpt2Format::llmc;
  const std::uint64_t header = got == 9 ? detail::load_le64(reinterpret_cast<const char*>(b)) : 0;
  if (got == 9 && size >= 9 && b[8] == '{' && header >= 2 && header <= size - 8 &&
      header <= kMaxSafetensorsHeaderBytes)
    return Gpt2Format::safetensors;
  throw FormatError("GPT-2 model '" + path +
                    "' is neither an llm.c model (magic 20240326) nor a safetensors file (a header length, then "
                    "'{')");
}

// Whether the file at `path` starts as an llm.c model or a safetensors file does (no exception).
inline bool looks_like_gpt2_file(const std::string& path) {
  try {
    gpt2_file_format(path);
    return true;
  } catch (const Error&) {
    return false;
  }
}

// The model in an llm.c or safetensors file. `heads`: for safetensors only (0: the metadata or
// GPT-2's count for the width); llm.c's header says.
template <typename Scalar = float>
Gpt<Scalar> load_gpt2_file(const std::string& path, Index heads = 0) {
  return gpt2_file_format(path) == Gpt2Format::llmc ? load_llmc_gpt2<Scalar>(path)
                                                    : load_safetensors_gpt2<Scalar>(path, heads);
}

template <typename Scalar>
void save_gpt2_file(const Gpt<Scalar>& m, const std::string& path, Gpt2Format format,
                    TensorDtype dtype = TensorDtype::f32) {
  if (format == Gpt2Format::llmc)
    save_llmc_gpt2(m, path, dtype);
  else
    save_safetensors_gpt2(m, path, dtype);
}

}  // namespace seqgen
