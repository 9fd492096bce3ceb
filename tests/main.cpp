// Catch2 v2 needs its main() compiled in one translation unit; v3 links Catch2::Catch2WithMain.
#if !defined(SEQGEN_CATCH2_V3)
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
#endif
