// Exceptions thrown by seqgen.
//
// Every public entry point checks its inputs in every build type and throws one of these. The
// message names the component, what was expected and what was found, for example:
//   "Linear 'blocks.0.mlp.fc': input has 3 rows, expected 64 (in_features)"
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace seqgen {

// Base of every seqgen exception: catch this one to catch them all.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A tensor or argument has the wrong shape or size.
struct ShapeError : Error {
  using Error::Error;
};
// A configuration value is out of range or inconsistent.
struct ConfigError : Error {
  using Error::Error;
};
// A token id or other index is out of range.
struct IndexError : Error {
  using Error::Error;
};
// Bytes from outside (a file, a string) are malformed: bad magic, truncation, bad UTF-8, ...
struct FormatError : Error {
  using Error::Error;
};
// The operating system refused a read or write.
struct IoError : Error {
  using Error::Error;
};

namespace detail {
template <typename... Parts>
std::string cat(Parts&&... parts) {
  std::ostringstream os;
  (os << ... << std::forward<Parts>(parts));
  return os.str();
}
}  // namespace detail

// Throws ErrorType with the message built from `parts` unless `cond` holds. The parts are
// evaluated even when `cond` holds (only the formatting is skipped), so pass cheap values: never
// an expression that is only valid when the check fails, and no string building in hot loops.
//   check<ShapeError>(x.rows() == in, "Linear '", name, "': input has ", x.rows(), " rows, expected ", in);
template <typename ErrorType, typename... Parts>
void check(bool cond, Parts&&... parts) {
  if (!cond) throw ErrorType(detail::cat(std::forward<Parts>(parts)...));
}

}  // namespace seqgen
