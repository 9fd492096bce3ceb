// The version of seqgen (semantic versioning; what it promises: README, "Versions and compatibility").
// CMakeLists.txt reads the project's version from these three lines.
#pragma once

#define SEQGEN_VERSION_MAJOR 0
#define SEQGEN_VERSION_MINOR 2
#define SEQGEN_VERSION_PATCH 0

namespace seqgen {
inline constexpr const char* kVersion = "0.2.0";
}  // namespace seqgen
