// POST /v1/embeddings: the OpenAI request and response shapes around AsyncEngine::embed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "server/openai_request.h"

namespace jinx::server {

struct EmbeddingPlan {
  std::vector<std::vector<int32_t>> inputs;  // token ids, one list per input
  bool base64 = false;     // encoding_format "base64": little-endian float32 bytes
  int64_t dimensions = 0;  // > 0: keep the first `dimensions` values, renormalized
  int64_t n_tokens = 0;    // usage
};

// Up to kMaxEmbeddingInputs inputs (as OpenAI allows): "input" is a string, an array of
// strings, an array of token ids or an array of such arrays. Strings are encoded with the
// tokenizer's BOS rules, special-token text kept literal. ApiError(400) names what is wrong.
EmbeddingPlan parse_embedding_request(const nlohmann::json& body, const ModelContext& ctx,
                                      int64_t hidden_size);
constexpr size_t kMaxEmbeddingInputs = 2048;

// vectors: [plan.inputs.size(), hidden_size], unit length.
nlohmann::json embedding_response(const EmbeddingPlan& plan, const std::vector<float>& vectors,
                                  int64_t hidden_size, const std::string& model);

// The standard base64 alphabet with padding (RFC 4648).
std::string base64_encode(const void* data, size_t n);

}  // namespace jinx::server
