// Lets the tests be written once for Catch2 v3 (when find_package(Catch2 3) finds it) and for
// Debian 12's single-header Catch2 v2.13.
#pragma once

#if defined(SEQGEN_CATCH2_V3)
#include <catch2/catch_all.hpp>
using Catch::Approx;
#define SEQGEN_THROWS_WITH(expr, type, substring) \
  REQUIRE_THROWS_MATCHES(expr, type, Catch::Matchers::MessageMatches(Catch::Matchers::ContainsSubstring(substring)))
#else
#include <catch2/catch.hpp>
// Passes when expr throws `type` whose what() contains `substring`.
#define SEQGEN_THROWS_WITH(expr, type, substring) \
  REQUIRE_THROWS_MATCHES(expr, type, Catch::Matchers::Predicate<type>([&](const type& e) { \
                           return std::string(e.what()).find(substring) != std::string::npos; \
                         }, std::string("message contains \"") + substring + "\""))
#endif

#include <string>
