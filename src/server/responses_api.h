// OpenAI's Responses API (POST /v1/responses) over the chat path: a request is rewritten into
// the chat completion request it means (parse_chat_request then checks every field), and the
// chat result, whole or streamed, is rewritten into a Response object or Responses events.
//
// Supported: `input` as text or a list of items (messages with text content parts, and the
// function_call / function_call_output items a tool-calling client sends back), `instructions`,
// `max_output_tokens`, sampling fields (temperature, top_p, and vLLM's / llama.cpp's extras:
// top_k, min_p, seed, stop, penalties, grammar and guided_* constraints), function
// `tools` and `tool_choice`, `text.format` (text, json_object, json_schema), `stream`.
// Refused with a 400 naming the field: `previous_response_id` and `background` (nothing is
// stored: the client sends the whole conversation each time), non-text input parts, tools
// other than functions.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace jinx::server {

struct ResponsesRequest {
  nlohmann::ordered_json chat;  // the equivalent chat completion request
  nlohmann::json echo;          // request settings the Response object reports back
  bool stream = false;
};

ResponsesRequest responses_to_chat(const nlohmann::ordered_json& body);

// The Response object for a finished chat completion body (chat_response's output).
nlohmann::json response_object(const nlohmann::json& chat, const ResponsesRequest& rq,
                               const std::string& id, int64_t created_at);

// Streaming: chat completion chunks in, Responses events out (each with its type and
// sequence_number; sent as `event: TYPE` + `data: JSON`).
class ResponsesStream {
 public:
  ResponsesStream(const ResponsesRequest& rq, std::string id, int64_t created_at,
                  std::string model);
  std::vector<nlohmann::json> start();
  std::vector<nlohmann::json> on_chunk(const nlohmann::json& chunk);
  // After the last chunk: closes the open items, then response.completed (or .incomplete).
  std::vector<nlohmann::json> finish(const nlohmann::json& usage);

 private:
  struct Item {
    std::string kind;  // "reasoning", "message", "function_call"
    std::string id;
    std::string text;  // reasoning / message text, or a call's arguments
    std::string call_id, name;
    int tool_index = -1;
    bool open = true;
  };
  nlohmann::json event(const char* type, nlohmann::json fields);
  nlohmann::json item_json(const Item& it, const char* status) const;
  nlohmann::json base(const char* status) const;
  void close(size_t i, std::vector<nlohmann::json>* out);
  size_t open_item(const std::string& kind, std::vector<nlohmann::json>* out, int tool_index = -1,
                   const std::string& call_id = "", const std::string& name = "");

  const ResponsesRequest& rq_;
  std::string id_, model_;
  int64_t created_at_;
  int64_t seq_ = 0;
  std::vector<Item> items_;
  std::string finish_reason_;
};

}  // namespace jinx::server
