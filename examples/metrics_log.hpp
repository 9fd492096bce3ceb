// The metrics log of `train --metrics run.jsonl`: one JSON object per line, flushed as it is
// written, so that a crash keeps every line before it and a resumed run continues the file.
//
//   {"type":"start","step":0,"model":"gpt","params":347712,"batch":32,"seq_len":64,"threads":2}
//   {"type":"step","step":50,"tokens":102400,"train_loss":2.93,"lr":0.0006,"grad_norm":0.71,"tokens_per_s":28410,"elapsed":3.6}
//   {"type":"eval","step":500,"tokens":1024000,"val_loss":1.81,"val_bits_per_char":2.61,"windows":40,"elapsed":36.2}
//   {"type":"resume","step":500,...}        a resumed run; lines before it with a larger step were
//                                           written after the checkpoint's last save and are superseded
//
// "train_loss" is the mean over the steps since the previous "step" line, "lr" the learning rate
// of the step's update, "grad_norm" its gradient norm before clipping; "tokens" counts the
// tokens trained on since step 0 (step · B · T); "elapsed" is training time in seconds since step
// 0, continued across resumes from the last line the resumed checkpoint had reached. A NaN is
// written as null. scripts/plot_training.py draws the curves.
#pragma once

#include <nlohmann/json.hpp>

#include "cli_common.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace cli {

class MetricsLog {
 public:
  using Json = nlohmann::ordered_json;

  MetricsLog() = default;
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;
  ~MetricsLog() {
    if (file_) std::fclose(file_);
  }

  // Opens `path`: a new run (`resumed_step` < 0) starts it empty; a resumed run appends to it, after
  // reading the elapsed time of its last line at or before `resumed_step`. IoError when it cannot
  // be opened.
  void open(const std::string& path, std::int64_t resumed_step) {
    path_ = path;
    bool needs_newline = false;
    if (resumed_step >= 0) {
      // An untrusted file: a line is read whole, so a file of one huge line needs its size in memory.
      const double size = file_size(path);
      if (size > 0) seqgen::require_memory(2 * size, "reading --metrics '" + path + "' (" + seqgen::format_bytes(size) + ")");
      std::ifstream in(path, std::ios::binary);
      std::string line;
      while (std::getline(in, line)) {
        needs_newline = in.eof();  // the last line of a crashed run may lack its newline
        const Json j = Json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (!j.is_object() || !j.contains("step") || !j.contains("elapsed")) continue;  // torn or foreign
        if (!j["step"].is_number() || !j["elapsed"].is_number()) continue;
        if (j["step"].get<double>() <= double(resumed_step)) elapsed_offset_ = j["elapsed"].get<double>();
      }
    }
    file_ = std::fopen(path.c_str(), resumed_step >= 0 ? "ab" : "wb");
    seqgen::check<seqgen::IoError>(file_ != nullptr, "cannot open --metrics '", path, "': ", std::strerror(errno));
    if (needs_newline) std::fputc('\n', file_);
  }

  bool is_open() const { return file_ != nullptr; }
  // Seconds of training before this process started (0 for a new run).
  double elapsed_offset() const { return elapsed_offset_; }

  // Writes one line and flushes it. A failed write is reported once on stderr and ends the log;
  // training goes on (the checkpoint matters more than its log).
  void write(const Json& record) {
    if (!file_) return;
    const std::string line = record.dump() + "\n";
    if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
      std::fprintf(stderr, "train: cannot write --metrics '%s' (%s); training goes on without it\n", path_.c_str(),
                   std::strerror(errno));
      std::fclose(file_);
      file_ = nullptr;
    }
  }

 private:
  std::FILE* file_ = nullptr;
  std::string path_;
  double elapsed_offset_ = 0;
};

}  // namespace cli
