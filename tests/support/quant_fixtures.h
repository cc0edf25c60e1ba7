// Test helper: the raw bytes of a tests/fixtures/quant file (tools/make_quant_fixtures.py).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace jinx::test {

inline const std::string kQuantDir = std::string(JINX_FIXTURES) + "/quant/";

inline std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << "missing fixture " << path
                         << " (run /work/refvenv/bin/python tools/make_quant_fixtures.py)";
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace jinx::test
