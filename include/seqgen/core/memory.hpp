// How much memory this process may still allocate, and a check that refuses a request beyond it
// before anything is allocated, so that a size given by a user or read from a file ends in a
// message instead of std::bad_alloc or the OOM killer.
//
// Available memory is the smallest of what the system and this process's limits leave:
//   MemAvailable (/proc/meminfo)                        what can be allocated without swapping
//   memory.max − memory.current (cgroup v2)             a container's limit
//   memory.limit_in_bytes − memory.usage_in_bytes (v1)
//   RLIMIT_AS − VmSize, RLIMIT_DATA − VmData            `ulimit -v` and `ulimit -d`
// Where none can be read (not Linux), it is unknown and every request passes.
#pragma once

#include <sys/resource.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "seqgen/core/error.hpp"

namespace seqgen {

// A request for more memory than the process may use.
struct MemoryError : Error {
  using Error::Error;
};

namespace detail {

// The first number after `key` in a "key: value kB" file such as /proc/meminfo; -1 if absent.
inline double proc_field_kib(const char* file, const std::string& key) {
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, key.size(), key) == 0) {
      std::istringstream rest(line.substr(key.size()));
      double kib = -1;
      rest >> kib;
      return kib;
    }
  return -1;
}

// A number alone in a file (cgroup files); -1 if absent or "max".
inline double file_number(const std::string& file) {
  std::ifstream in(file);
  double v = -1;
  if (!(in >> v)) return -1;
  return v;
}

// This process's cgroup v2 folder, from /proc/self/cgroup ("0::/path").
inline std::string cgroup_v2_folder() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, 3, "0::") == 0) return "/sys/fs/cgroup" + line.substr(3);
  return "/sys/fs/cgroup";
}

}  // namespace detail

// Bytes this process may still allocate; +infinity when nothing can be measured.
inline double available_memory_bytes() {
  double avail = std::numeric_limits<double>::infinity();
  const auto take = [&](double v) {
    if (v >= 0 && v < avail) avail = v;
  };
  const double mem_available = detail::proc_field_kib("/proc/meminfo", "MemAvailable:");
  if (mem_available >= 0) take(mem_available * 1024);

  const std::string v2 = detail::cgroup_v2_folder();
  const double v2_max = detail::file_number(v2 + "/memory.max"), v2_used = detail::file_number(v2 + "/memory.current");
  if (v2_max >= 0 && v2_used >= 0) take(std::max(0.0, v2_max - v2_used));
  const double v1_max = detail::file_number("/sys/fs/cgroup/memory/memory.limit_in_bytes");
  const double v1_used = detail::file_number("/sys/fs/cgroup/memory/memory.usage_in_bytes");
  if (v1_max >= 0 && v1_used >= 0 && v1_max < 1e18) take(std::max(0.0, v1_max - v1_used));

  struct rlimit lim;
  if (::getrlimit(RLIMIT_AS, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    const double used = detail::proc_field_kib("/proc/self/status", "VmSize:");
    take(std::max(0.0, double(lim.rlim_cur) - std::max(0.0, used) * 1024));
  }
  if (::getrlimit(RLIMIT_DATA, &lim) == 0 && lim.rlim_cur != RLIM_INFINITY) {
    const double used = detail::proc_field_kib("/proc/self/status", "VmData:");
    take(std::max(0.0, double(lim.rlim_cur) - std::max(0.0, used) * 1024));
  }
  return avail;
}

// "1.5 GiB", "300 MiB", "12 KiB", "100 bytes".
inline std::string format_bytes(double bytes) {
  char buf[64];
  if (!(bytes < 1e30)) return "an unbounded amount";
  if (bytes >= 1024.0 * 1024 * 1024)
    std::snprintf(buf, sizeof buf, "%.3g GiB", bytes / (1024.0 * 1024 * 1024));
  else if (bytes >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.3g MiB", bytes / (1024.0 * 1024));
  else if (bytes >= 1024)
    std::snprintf(buf, sizeof buf, "%.3g KiB", bytes / 1024);
  else
    std::snprintf(buf, sizeof buf, "%.0f bytes", bytes);
  return buf;
}

// Throws MemoryError "<what> needs N GiB, M GiB available<advice>" when `bytes` exceeds what the
// process may still allocate. `what` names the request and the option or file it comes from.
inline void require_memory(double bytes, const std::string& what, const std::string& advice = "") {
  const double avail = available_memory_bytes();
  if (!(bytes <= avail))
    throw MemoryError(what + " needs " + format_bytes(bytes) + ", " + format_bytes(avail) + " available" +
                      (advice.empty() ? "" : " (" + advice + ")"));
}

// Peak resident memory of this process so far, in bytes (getrusage).
inline double peak_resident_bytes() {
  struct rusage usage;
  if (::getrusage(RUSAGE_SELF, &usage) != 0) return 0;
  return double(usage.ru_maxrss) * 1024;  // Linux reports KiB
}

}  // namespace seqgen
