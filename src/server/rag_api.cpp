#include "server/rag_api.h"

namespace jinx::server {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

template <typename J>
void read_k_mode(const J& o, RagSearch* s) {
  if (o.contains("k") && !o["k"].is_null()) {
    if (!o["k"].is_number_integer() || o["k"].template get<int64_t>() < 1 ||
        o["k"].template get<int64_t>() > 100)
      bad_request("k", "'k' must be an integer in [1, 100]");
    s->k = o["k"].template get<int>();
  }
  if (o.contains("mode") && !o["mode"].is_null()) {
    if (!o["mode"].is_string() ||
        (o["mode"] != "hybrid" && o["mode"] != "vector" && o["mode"] != "keyword"))
      bad_request("mode", "'mode' must be \"hybrid\", \"vector\" or \"keyword\"");
    s->mode = rag::search_mode_from_name(o["mode"].template get<std::string>());
  }
}

// The last user message, and its text (string content, or the text parts of an array).
ordered_json* last_user_message(ordered_json& body, std::string* text) {
  if (!body.contains("messages") || !body["messages"].is_array()) return nullptr;
  for (auto it = body["messages"].rbegin(); it != body["messages"].rend(); ++it) {
    if (!it->is_object() || !it->contains("role") || (*it)["role"] != "user") continue;
    const ordered_json& c = (*it)["content"];
    text->clear();
    if (c.is_string()) {
      *text = c.get<std::string>();
    } else if (c.is_array()) {
      for (const ordered_json& part : c)
        if (part.is_object() && part.contains("text") && part["text"].is_string())
          *text += (text->empty() ? "" : "\n") + part["text"].get<std::string>();
    }
    return &*it;
  }
  return nullptr;
}

}  // namespace

RagSearch parse_rag_search(const json& body) {
  RagSearch s;
  if (!body.contains("query") || !body["query"].is_string() ||
      body["query"].get<std::string>().empty())
    bad_request("query", "'query' must be a non-empty string");
  s.query = body["query"].get<std::string>();
  read_k_mode(body, &s);
  return s;
}

std::pair<std::string, std::string> parse_rag_document(const json& body) {
  for (const char* key : {"source", "text"})
    if (!body.contains(key) || !body[key].is_string() || body[key].get<std::string>().empty())
      bad_request(key, str("'", key, "' must be a non-empty string"));
  return {body["source"].get<std::string>(), body["text"].get<std::string>()};
}

json passages_json(std::span<const rag::Passage> passages) {
  json data = json::array();
  for (const rag::Passage& p : passages)
    data.push_back({{"source", p.chunk.source}, {"start", p.chunk.start}, {"end", p.chunk.end},
                    {"text", p.chunk.text}, {"score", p.hit.score},
                    {"vector_rank", p.hit.vector_rank}, {"keyword_rank", p.hit.keyword_rank},
                    {"similarity", p.hit.similarity}, {"bm25", p.hit.bm25}});
  return data;
}

std::optional<RagSearch> take_chat_rag(ordered_json& body) {
  if (!body.contains("rag")) return std::nullopt;
  const ordered_json r = body["rag"];
  body.erase("rag");
  if (r.is_boolean() && !r.get<bool>()) return std::nullopt;
  if (!r.is_boolean() && !r.is_object())
    bad_request("rag", "'rag' must be true or an object {\"k\": N, \"mode\": M}");
  RagSearch s;
  if (r.is_object()) read_k_mode(r, &s);
  if (!last_user_message(body, &s.query) || s.query.empty())
    bad_request("rag", "'rag' needs a user message with text to search for");
  return s;
}

void apply_chat_rag(ordered_json& body, std::span<const rag::Passage> passages) {
  std::string question;
  ordered_json* m = last_user_message(body, &question);
  JINX_CHECK(m != nullptr, "take_chat_rag found the message");
  (*m)["content"] = rag::rag_prompt(question, passages);
}

}  // namespace jinx::server
