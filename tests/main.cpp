// Catch2's main(), compiled once into meterstream_test_main and linked into
// every meterstream_<layer>_tests executable.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
