// Catch2's session for test_mpi.cpp, whose main() starts MPI first, in a file of its own so that
// Catch2 v2's implementation compiles without optimisation (tests/CMakeLists.txt): Catch's own
// speed does not matter, and at -O3 it took a fifth of the test program's build.
#if defined(SEQGEN_CATCH2_V3)
#include <catch2/catch_session.hpp>
#else
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#endif

int run_catch_session(int argc, char** argv) { return Catch::Session().run(argc, argv); }
