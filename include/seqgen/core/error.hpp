// Exceptions thrown by seqgen.
//
// Every public entry point checks its inputs in every build type and throws one of these. The
// message names the component, what was expected and what was found, for example:
//   "Linear 'blocks.0.mlp.fc': input has 3 rows, expected 64 (in_features)"
#pragma once

#include <limits>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
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
// an expression that is only valid when the check fails, no arithmetic that can overflow on
// huge arguments (print a·b of public arguments as product(a, b)), and no string building in hot loops.
//   check<ShapeError>(x.rows() == in, "Linear '", name, "': input has ", x.rows(), " rows, expected ", in);
template <typename ErrorType, typename... Parts>
void check(bool cond, Parts&&... parts) {
  if (!cond) throw ErrorType(detail::cat(std::forward<Parts>(parts)...));
}

namespace detail {
template <typename Int>
struct Product {
  Int a, b;
};
// a·b, or "more than 2^63 - 1" (for 64-bit Int) when it does not fit; computed only here, when a
// message is formatted.
template <typename Int>
std::ostream& operator<<(std::ostream& os, Product<Int> p) {
  const Int max = std::numeric_limits<Int>::max();
  if (p.a < 0 || p.b < 0) return os << "(" << p.a << ")*(" << p.b << ")";
  if (p.a != 0 && p.b > max / p.a) return os << "more than 2^" << std::numeric_limits<Int>::digits << " - 1";
  return os << p.a * p.b;
}
}  // namespace detail

// a·b for a message, multiplied only when the message is formatted (see check()).
template <typename Int>
detail::Product<Int> product(Int a, Int b) {
  static_assert(std::is_integral<Int>::value, "product() is for sizes and counts");
  return {a, b};
}

// n == a·b for a, b > 0, without forming a·b, which overflows for huge arguments (undefined behaviour,
// and a wrapped product may even equal n). Use it to check a count against B·T.
template <typename Int>
bool is_product(Int n, Int a, Int b) {
  static_assert(std::is_integral<Int>::value, "is_product() is for sizes and counts");
  return a > 0 && b > 0 && n >= 0 && n % a == 0 && n / a == b;
}

}  // namespace seqgen
