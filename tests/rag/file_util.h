// Whole-file reads and writes for the RAG tests (corrupting and comparing files).
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace jinx::rag::test {

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline void write_all(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace jinx::rag::test
