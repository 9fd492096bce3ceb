# Sourced by the scripts: installs missing Debian packages when run as root, otherwise prints
# the apt command and fails.
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -eq 0 ]; then
    echo "seqgen: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null ||
      { apt-get update >/dev/null && apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
  else
    echo "seqgen: missing packages; run: sudo apt-get install -y ${missing[*]}" >&2
    return 1
  fi
}

# Debian packages the library and its programs need, and those only the tests need.
SEQGEN_BUILD_PACKAGES=(cmake make g++ pkg-config libeigen3-dev libcli11-dev libpcre2-dev nlohmann-json3-dev)
# python3: cli_test.sh reads the metrics log; python3-torch, python3-numpy: the GPT-2 reference (tests/gpt2_reference.py)
SEQGEN_TEST_PACKAGES=(catch2 pkg-config libbenchmark-dev ninja-build python3 python3-numpy python3-torch)
# Data-parallel training on MPI (seqgen::mpi, tests/mpi): without them the MPI test is skipped with a
# message (test.sh goes on).
SEQGEN_MPI_PACKAGES=(libopenmpi-dev openmpi-bin)
# The sanitized build (the asan preset) and ./scripts/fuzz.sh: clang with its OpenMP, libFuzzer and
# the sanitizer runtimes.
SEQGEN_SANITIZER_PACKAGES=(clang-14 libclang-rt-14-dev libomp-14-dev)
SEQGEN_FUZZ_PACKAGES=(clang-14 libclang-rt-14-dev libeigen3-dev pkg-config libpcre2-dev nlohmann-json3-dev)
