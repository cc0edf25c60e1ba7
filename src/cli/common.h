// Shared helpers of the jinx subcommands.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace jinx::cli {

// The tokenizer that goes with a model path (tokenizer.json in a directory, or GGUF metadata).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const Model* model);
// "1,2,3" -> ids; throws jinx::Error on anything else.
std::vector<int32_t> parse_ids(const std::string& s);
std::string read_file(const std::string& path);

}  // namespace jinx::cli
