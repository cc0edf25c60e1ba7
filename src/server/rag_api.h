// The knowledge base over HTTP (`jinx serve --rag-db FILE`): request parsing and response
// shapes of POST /v1/rag/documents, POST /v1/rag/search, and the "rag" field of a chat
// completion request (the last user message is answered from retrieved passages).
#pragma once

#include <optional>
#include <span>
#include <string>

#include <nlohmann/json.hpp>

#include "rag/knowledge_base.h"
#include "server/api_error.h"

namespace jinx::server {

struct RagSearch {
  std::string query;
  int k = 4;
  rag::SearchMode mode = rag::SearchMode::kHybrid;
};

// {"query": str, "k": 1..100, "mode": "hybrid"|"vector"|"keyword"}; ApiError(400) otherwise.
RagSearch parse_rag_search(const nlohmann::json& body);
// {"source": str, "text": str} -> (source, text); ApiError(400) otherwise.
std::pair<std::string, std::string> parse_rag_document(const nlohmann::json& body);
nlohmann::json passages_json(std::span<const rag::Passage> passages);

// A chat request's "rag" field (true, or {"k": N, "mode": M}): the search for the text of the
// last user message; nullopt without the field (or "rag": false). The field is removed from
// body.
std::optional<RagSearch> take_chat_rag(nlohmann::ordered_json& body);
// Replaces the last user message's content by rag_prompt(its text, passages).
void apply_chat_rag(nlohmann::ordered_json& body, std::span<const rag::Passage> passages);

}  // namespace jinx::server
