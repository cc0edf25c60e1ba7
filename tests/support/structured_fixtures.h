// Reading tests/fixtures/structured (verdict files written by tools/make_*_fixtures.py).
#pragma once

#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace jinx::test {

// The fixture's JSON, or null when the file is missing (the test then says which to run).
inline nlohmann::json load_structured_fixture(const std::string& name) {
  std::ifstream f(std::string(JINX_FIXTURES) + "/structured/" + name);
  if (!f) return nlohmann::json();
  std::stringstream ss;
  ss << f.rdbuf();
  return nlohmann::json::parse(ss.str());
}

// Documents are stored as hex so that any bytes survive.
inline std::string unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2)
    out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

}  // namespace jinx::test
