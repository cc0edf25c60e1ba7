// Anthropic's Messages API (POST /v1/messages, POST /v1/messages/count_tokens) over the chat
// path, as vLLM and llama.cpp's server offer it: a request is rewritten into the chat
// completion request it means (parse_chat_request then checks every field), and the chat
// result, whole or streamed, is rewritten into a Message object or Messages stream events.
//
// Supported: `messages` (user / assistant turns with string content or text blocks; tool_use
// blocks in assistant turns and tool_result blocks in user turns, which become OpenAI tool
// calls and tool messages; thinking blocks in assistant turns as reasoning_content), `system`
// (a string or text blocks), `max_tokens`, `stop_sequences`, `temperature`, `top_p`, `top_k`
// (and vLLM's / llama.cpp's extras: seed, min_p, penalties, ignore_eos, ...), custom `tools`
// with `input_schema`, `tool_choice` (auto, any, tool, none), `output_config.format` (and the
// beta `output_format`) json_schema, `stream`. A final assistant turn is a prefill: the reply
// continues it. `metadata`, `thinking`, `service_tier`, cache_control and citations are
// accepted and ignored; so is every other unknown field, as in the Responses API.
// Refused with a 400 naming the field: image, document and other non-text blocks, server tools
// (web search, code execution, ...), a missing or non-positive `max_tokens`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace jinx::server {

struct AnthropicRequest {
  nlohmann::ordered_json chat;  // the equivalent chat completion request
  std::vector<std::string> stop_sequences;
  bool stream = false;
};

// count_only: the body of /v1/messages/count_tokens (no max_tokens; sampling and stream
// fields are not read).
AnthropicRequest anthropic_to_chat(const nlohmann::ordered_json& body, bool count_only = false);

// The stop sequence that ended a choice which finished with "stop", or null (an end-of-turn
// token or a finished constraint): `text` is the choice's text (the stop string cut off),
// `decoded` the decoding of all its tokens, which goes on with the stop string that matched
// (the detokenizer's deltas add up to the decoding). Of several that start there, the shortest
// (what the stop matcher picks).
nlohmann::json matched_stop_sequence(const std::string& text, const std::string& decoded,
                                     const std::vector<std::string>& stops);

// end_turn | max_tokens | stop_sequence | tool_use, from the chat finish_reason.
std::string anthropic_stop_reason(const std::string& finish_reason,
                                  const nlohmann::json& stop_sequence);

// The Message object for a finished chat completion body (chat_response's output).
nlohmann::json message_object(const nlohmann::json& chat, const std::string& id,
                              const nlohmann::json& stop_sequence);

// {"type": "error", "error": {"type": ..., "message": ...}}, the type from the HTTP status;
// the message starts with the offending field, if any ("max_tokens: ...").
nlohmann::json anthropic_error_body(int status, const std::string& message,
                                    const std::string& param = "");

// Streaming: chat completion chunks in, Messages events out (each with its type; sent as
// `event: TYPE` + `data: JSON`). Content blocks open and close one after the other.
class AnthropicStream {
 public:
  AnthropicStream(std::string id, std::string model, int64_t input_tokens);
  nlohmann::json start() const;  // message_start
  std::vector<nlohmann::json> on_chunk(const nlohmann::json& chunk);
  // After the last chunk: closes the open block, then message_delta and message_stop (or, for
  // a request the engine aborted, one error event).
  std::vector<nlohmann::json> finish(int64_t output_tokens, const nlohmann::json& stop_sequence);

 private:
  struct Block {
    std::string type;  // "thinking", "text", "tool_use"
    int tool_index = -1;
    bool open = true;
  };
  Block* last_open(const char* type);
  size_t open_block(nlohmann::json content_block, std::vector<nlohmann::json>* out,
                    int tool_index = -1);
  void close_open(std::vector<nlohmann::json>* out);

  std::string id_, model_;
  int64_t input_tokens_;
  std::vector<Block> blocks_;
  std::string finish_reason_;
};

}  // namespace jinx::server
