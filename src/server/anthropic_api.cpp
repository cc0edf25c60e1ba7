#include "server/anthropic_api.h"

#include <utility>

#include "server/api_error.h"
#include "server/openai_response.h"

namespace jinx::server {

namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

std::string at(const std::string& field, size_t i) {
  return field + "[" + std::to_string(i) + "]";
}

const ojson& string_field(const ojson& obj, const char* key, const std::string& field) {
  if (!obj.contains(key) || !obj[key].is_string())
    bad_request(field, std::string("'") + key + "' must be a string");
  return obj[key];
}

std::string block_type(const ojson& block, const std::string& field) {
  if (!block.is_object() || !block.contains("type") || !block["type"].is_string())
    bad_request(field, "a content block must be an object with a string 'type'");
  return block["type"].get<std::string>();
}

[[noreturn]] void unsupported_block(const std::string& type, const std::string& field) {
  if (type == "image" || type == "document")
    bad_request(field, type + " blocks are not supported: the served model reads text only");
  bad_request(field, "unsupported content block type '" + type + "'");
}

// The text of `system`, a tool result's content or a user turn: a string, or text blocks
// (joined as the chat path joins text parts; cache_control and citations ignored).
std::string text_of(const ojson& content, const std::string& field) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_request(field, "must be a string or a list of text blocks");
  std::string text;
  for (size_t i = 0; i < content.size(); ++i) {
    const std::string type = block_type(content[i], at(field, i));
    if (type != "text") unsupported_block(type, at(field, i));
    text += string_field(content[i], "text", at(field, i)).get<std::string>();
  }
  return text;
}

// Anthropic's ids are "toolu_..."; the chat path's "call_...". Kept apart by the prefix only,
// so a conversation sent back maps to the same chat ids.
std::string tool_use_id(const std::string& call_id) {
  return "toolu_" + (call_id.rfind("call_", 0) == 0 ? call_id.substr(5) : call_id);
}

// A user turn: text blocks make a user message; each tool_result block a tool message (text
// before a result is sent first, keeping the order). is_error has no chat counterpart: the
// result's text goes to the model as it is.
void add_user(const ojson& blocks, const std::string& field, ojson* messages) {
  std::string text;
  bool pending = false;
  auto flush = [&] {
    if (pending) messages->push_back({{"role", "user"}, {"content", text}});
    text.clear();
    pending = false;
  };
  for (size_t i = 0; i < blocks.size(); ++i) {
    const std::string f = at(field, i);
    const std::string type = block_type(blocks[i], f);
    const ojson& b = blocks[i];
    if (type == "text") {
      text += string_field(b, "text", f).get<std::string>();
      pending = true;
    } else if (type == "tool_result") {
      flush();
      if (b.contains("is_error") && !b["is_error"].is_boolean())
        bad_request(f, "'is_error' must be a boolean");
      const std::string content =
          b.contains("content") && !b["content"].is_null() ? text_of(b["content"], f + ".content")
                                                           : "";
      messages->push_back({{"role", "tool"},
                           {"tool_call_id", string_field(b, "tool_use_id", f)},
                           {"content", content}});
    } else if (type == "tool_use" || type == "thinking" || type == "redacted_thinking") {
      bad_request(f, "'" + type + "' blocks belong in assistant turns");
    } else {
      unsupported_block(type, f);
    }
  }
  if (pending || blocks.empty()) messages->push_back({{"role", "user"}, {"content", text}});
}

// An assistant turn: one assistant message with its text, thoughts (reasoning_content, which
// templates that know it render) and tool calls. Redacted thoughts are dropped.
void add_assistant(const ojson& blocks, const std::string& field, ojson* messages) {
  std::string text, thoughts;
  ojson calls = ojson::array();
  for (size_t i = 0; i < blocks.size(); ++i) {
    const std::string f = at(field, i);
    const std::string type = block_type(blocks[i], f);
    const ojson& b = blocks[i];
    if (type == "text") {
      text += string_field(b, "text", f).get<std::string>();
    } else if (type == "thinking") {
      thoughts += string_field(b, "thinking", f).get<std::string>();
    } else if (type == "redacted_thinking") {
      continue;
    } else if (type == "tool_use") {
      if (!b.contains("input") || !b["input"].is_object())
        bad_request(f, "'input' must be an object");
      calls.push_back({{"id", string_field(b, "id", f)},
                       {"type", "function"},
                       {"function",
                        {{"name", string_field(b, "name", f)}, {"arguments", b["input"].dump()}}}});
    } else if (type == "tool_result") {
      bad_request(f, "'tool_result' blocks belong in user turns");
    } else {
      unsupported_block(type, f);
    }
  }
  ojson msg = {{"role", "assistant"}};
  msg["content"] = calls.empty() || !text.empty() ? ojson(text) : ojson();
  if (!thoughts.empty()) msg["reasoning_content"] = thoughts;
  if (!calls.empty()) msg["tool_calls"] = std::move(calls);
  messages->push_back(std::move(msg));
}

void add_messages(const ojson& body, ojson* messages) {
  if (!body.contains("messages") || !body["messages"].is_array())
    bad_request("messages", "'messages' must be a list of messages");
  const ojson& ms = body["messages"];
  for (size_t i = 0; i < ms.size(); ++i) {
    const std::string f = at("messages", i);
    if (!ms[i].is_object()) bad_request(f, "a message must be an object");
    const std::string role = string_field(ms[i], "role", f).get<std::string>();
    if (role != "user" && role != "assistant")
      bad_request(f + ".role", "role must be user or assistant (the system prompt is 'system')");
    if (!ms[i].contains("content")) bad_request(f, "a message needs 'content'");
    const ojson& c = ms[i]["content"];
    if (c.is_string()) {
      messages->push_back({{"role", role}, {"content", c}});
    } else if (!c.is_array()) {
      bad_request(f + ".content", "'content' must be a string or a list of content blocks");
    } else if (role == "user") {
      add_user(c, f + ".content", messages);
    } else {
      add_assistant(c, f + ".content", messages);
    }
  }
}

// Custom tools ({name, description, input_schema}) -> chat function tools.
ojson chat_tools(const ojson& tools) {
  if (!tools.is_array()) bad_request("tools", "'tools' must be a list");
  ojson out = ojson::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const ojson& t = tools[i];
    const std::string f = at("tools", i);
    if (!t.is_object()) bad_request(f, "a tool must be an object");
    const std::string type = t.contains("type") && t["type"].is_string() ? t["type"] : "custom";
    if (type != "custom")
      bad_request(f, "tool type '" + type + "' is not supported: only custom tools (name, " +
                         "description, input_schema) run here");
    if (!t.contains("input_schema") || !t["input_schema"].is_object())
      bad_request(f, "'input_schema' must be an object");
    ojson fn = {{"name", string_field(t, "name", f)}};
    if (t.contains("description")) fn["description"] = t["description"];
    fn["parameters"] = t["input_schema"];
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

// {type: auto | any | tool (name) | none} -> auto | required | named | none.
ojson chat_tool_choice(const ojson& tc) {
  const std::string type = tc.is_object() && tc.contains("type") && tc["type"].is_string()
                               ? tc["type"].get<std::string>()
                               : "";
  if (type == "auto" || type == "none") return type;
  if (type == "any") return "required";
  if (type == "tool")
    return {{"type", "function"},
            {"function", {{"name", string_field(tc, "name", "tool_choice")}}}};
  bad_request("tool_choice", "'tool_choice' must be {\"type\": auto | any | tool | none}");
}

// output_config.format (or the beta output_format): {type: json_schema, schema}.
ojson chat_response_format(const ojson& format, const std::string& field) {
  if (!format.is_object() || format.value("type", "") != "json_schema" ||
      !format.contains("schema") || !format["schema"].is_object())
    bad_request(field, "the output format must be {\"type\": \"json_schema\", \"schema\": {...}}");
  return {{"type", "json_schema"},
          {"json_schema", {{"name", "output"}, {"schema", format["schema"]}}}};
}

void add_tools(const ojson& body, ojson* chat) {
  if (body.contains("tools") && !body["tools"].is_null()) {
    ojson tools = chat_tools(body["tools"]);
    if (!tools.empty()) (*chat)["tools"] = std::move(tools);
  }
  if (body.contains("tool_choice") && !body["tool_choice"].is_null()) {
    ojson tc = chat_tool_choice(body["tool_choice"]);
    // Without tools, auto and none mean what no tool_choice means.
    if (chat->contains("tools") || (tc != "auto" && tc != "none")) (*chat)["tool_choice"] = tc;
  }
  const ojson* format = nullptr;
  std::string field;
  if (body.contains("output_config") && body["output_config"].is_object() &&
      body["output_config"].contains("format") && !body["output_config"]["format"].is_null()) {
    format = &body["output_config"]["format"];
    field = "output_config.format";
  } else if (body.contains("output_format") && !body["output_format"].is_null()) {
    format = &body["output_format"];
    field = "output_format";
  }
  if (format) (*chat)["response_format"] = chat_response_format(*format, field);
}

void add_sampling(const ojson& body, AnthropicRequest* rq) {
  ojson& chat = rq->chat;
  if (!body.contains("max_tokens") || body["max_tokens"].is_null())
    bad_request("max_tokens", "'max_tokens' is required");
  if (!body["max_tokens"].is_number_integer() || body["max_tokens"].get<int64_t>() < 1)
    bad_request("max_tokens", "'max_tokens' must be a positive integer");
  chat["max_tokens"] = body["max_tokens"];
  if (body.contains("stop_sequences") && !body["stop_sequences"].is_null()) {
    const ojson& s = body["stop_sequences"];
    if (!s.is_array()) bad_request("stop_sequences", "'stop_sequences' must be a list of strings");
    for (const ojson& x : s) {
      if (!x.is_string()) bad_request("stop_sequences", "'stop_sequences' must be strings");
      rq->stop_sequences.push_back(x.get<std::string>());
    }
    if (!s.empty()) chat["stop"] = s;
  }
  // Anthropic's own, then the extras vLLM's and llama.cpp's servers read the same way.
  for (const char* key :
       {"temperature", "top_p", "top_k", "min_p", "seed", "presence_penalty", "frequency_penalty",
        "repetition_penalty", "logit_bias", "min_tokens", "ignore_eos", "stop_token_ids",
        "grammar", "guided_grammar", "guided_regex", "guided_choice", "guided_json"}) {
    if (body.contains(key) && !body[key].is_null()) chat[key] = body[key];
  }
  if (body.contains("stream")) {
    if (!body["stream"].is_boolean()) bad_request("stream", "'stream' must be a boolean");
    rq->stream = body["stream"].get<bool>();
    chat["stream"] = rq->stream;
    if (rq->stream) chat["stream_options"] = {{"include_usage", true}};
  }
}

json usage_of(const json& chat) {
  const json u = chat.value("usage", json::object());
  return {{"input_tokens", u.value("prompt_tokens", 0)},
          {"output_tokens", u.value("completion_tokens", 0)}};
}

json tool_use_block(const std::string& call_id, const std::string& name, const json& input) {
  return {{"type", "tool_use"}, {"id", tool_use_id(call_id)}, {"name", name}, {"input", input}};
}

// A call's arguments: compact JSON text of an object (the tool-call parser's guarantee).
json parsed_input(const std::string& arguments) {
  json j = json::parse(arguments, nullptr, /*allow_exceptions=*/false);
  return j.is_object() ? j : json::object();
}

json event(const char* type, json fields = json::object()) {
  json e = {{"type", type}};
  e.update(fields);
  return e;
}

}  // namespace

AnthropicRequest anthropic_to_chat(const ojson& body, bool count_only) {
  AnthropicRequest rq;
  ojson messages = ojson::array();
  if (body.contains("system") && !body["system"].is_null()) {
    const std::string system = text_of(body["system"], "system");
    if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
  }
  add_messages(body, &messages);
  ojson& chat = rq.chat;
  if (body.contains("model")) chat["model"] = body["model"];
  // A final assistant turn is a prefill (Anthropic's rule): the reply continues its text.
  const bool prefill = !messages.empty() && messages.back()["role"] == "assistant" &&
                       messages.back()["content"].is_string() &&
                       !messages.back()["content"].get<std::string>().empty() &&
                       !messages.back().contains("tool_calls");
  chat["messages"] = std::move(messages);
  if (prefill) {
    chat["continue_final_message"] = true;
    chat["add_generation_prompt"] = false;
  }
  add_tools(body, &chat);
  if (!count_only) add_sampling(body, &rq);
  return rq;
}

json matched_stop_sequence(const std::string& text, const std::string& decoded,
                           const std::vector<std::string>& stops) {
  if (decoded.compare(0, text.size(), text) != 0) return nullptr;
  json best;
  for (const std::string& s : stops) {
    if (s.empty() || decoded.compare(text.size(), s.size(), s) != 0) continue;
    if (best.is_null() || s.size() < best.get<std::string>().size()) best = s;
  }
  return best;
}

std::string anthropic_stop_reason(const std::string& finish_reason, const json& stop_sequence) {
  if (finish_reason == "length") return "max_tokens";
  if (finish_reason == "tool_calls") return "tool_use";
  if (finish_reason == "stop" && stop_sequence.is_string()) return "stop_sequence";
  return "end_turn";
}

json message_object(const json& chat, const std::string& id, const json& stop_sequence) {
  const json& choice = chat.at("choices").at(0);
  const json& msg = choice.at("message");
  json content = json::array();
  if (msg.contains("reasoning_content") && msg["reasoning_content"].is_string())
    content.push_back(
        {{"type", "thinking"}, {"thinking", msg["reasoning_content"]}, {"signature", ""}});
  if (msg.contains("content") && msg["content"].is_string() &&
      !msg["content"].get<std::string>().empty())
    content.push_back({{"type", "text"}, {"text", msg["content"]}});
  if (msg.contains("tool_calls") && msg["tool_calls"].is_array()) {
    for (const json& tc : msg["tool_calls"])
      content.push_back(tool_use_block(tc.value("id", ""), tc["function"].value("name", ""),
                                       parsed_input(tc["function"].value("arguments", "{}"))));
  }
  const std::string reason = anthropic_stop_reason(choice.value("finish_reason", ""),
                                                   stop_sequence);
  return {{"id", id},
          {"type", "message"},
          {"role", "assistant"},
          {"model", chat.value("model", "")},
          {"content", std::move(content)},
          {"stop_reason", reason},
          {"stop_sequence", reason == "stop_sequence" ? stop_sequence : json()},
          {"usage", usage_of(chat)}};
}

json anthropic_error_body(int status, const std::string& message, const std::string& param) {
  const char* type = "invalid_request_error";
  switch (status) {
    case 401: type = "authentication_error"; break;
    case 403: type = "permission_error"; break;
    case 404: type = "not_found_error"; break;
    case 413: type = "request_too_large"; break;
    case 429: type = "rate_limit_error"; break;
    case 503:
    case 529: type = "overloaded_error"; break;
    default: if (status >= 500) type = "api_error";
  }
  const std::string text = param.empty() ? message : param + ": " + message;
  return {{"type", "error"}, {"error", {{"type", type}, {"message", text}}}};
}

// ------------------------------------------------------------------------------ streaming

AnthropicStream::AnthropicStream(std::string id, std::string model, int64_t input_tokens)
    : id_(std::move(id)), model_(std::move(model)), input_tokens_(input_tokens) {}

json AnthropicStream::start() const {
  return event("message_start",
               {{"message",
                 {{"id", id_},
                  {"type", "message"},
                  {"role", "assistant"},
                  {"model", model_},
                  {"content", json::array()},
                  {"stop_reason", nullptr},
                  {"stop_sequence", nullptr},
                  {"usage", {{"input_tokens", input_tokens_}, {"output_tokens", 0}}}}}});
}

AnthropicStream::Block* AnthropicStream::last_open(const char* type) {
  if (blocks_.empty() || !blocks_.back().open || blocks_.back().type != type) return nullptr;
  return &blocks_.back();
}

void AnthropicStream::close_open(std::vector<json>* out) {
  if (blocks_.empty() || !blocks_.back().open) return;
  blocks_.back().open = false;
  out->push_back(event("content_block_stop", {{"index", blocks_.size() - 1}}));
}

size_t AnthropicStream::open_block(json content_block, std::vector<json>* out, int tool_index) {
  close_open(out);  // one block at a time
  blocks_.push_back({content_block["type"].get<std::string>(), tool_index, true});
  const size_t i = blocks_.size() - 1;
  out->push_back(
      event("content_block_start", {{"index", i}, {"content_block", std::move(content_block)}}));
  return i;
}

std::vector<json> AnthropicStream::on_chunk(const json& chunk) {
  std::vector<json> out;
  if (!chunk.contains("choices") || chunk["choices"].empty()) return out;
  const json& ch = chunk["choices"][0];
  if (ch.contains("finish_reason") && ch["finish_reason"].is_string())
    finish_reason_ = ch["finish_reason"];
  const json delta = ch.value("delta", json::object());
  auto delta_event = [&](size_t i, json d) {
    out.push_back(event("content_block_delta", {{"index", i}, {"delta", std::move(d)}}));
  };
  if (delta.contains("reasoning_content") && delta["reasoning_content"].is_string()) {
    const size_t i = last_open("thinking") ? blocks_.size() - 1
                                           : open_block({{"type", "thinking"},
                                                         {"thinking", ""},
                                                         {"signature", ""}},
                                                        &out);
    delta_event(i, {{"type", "thinking_delta"}, {"thinking", delta["reasoning_content"]}});
  }
  if (delta.contains("content") && delta["content"].is_string() &&
      !delta["content"].get<std::string>().empty()) {
    const size_t i = last_open("text") ? blocks_.size() - 1
                                       : open_block({{"type", "text"}, {"text", ""}}, &out);
    delta_event(i, {{"type", "text_delta"}, {"text", delta["content"]}});
  }
  if (delta.contains("tool_calls") && delta["tool_calls"].is_array()) {
    for (const json& tc : delta["tool_calls"]) {
      const int index = tc.value("index", 0);
      const json fn = tc.value("function", json::object());
      size_t i = blocks_.size();
      for (size_t k = 0; k < blocks_.size(); ++k)
        if (blocks_[k].type == "tool_use" && blocks_[k].tool_index == index) i = k;
      if (i == blocks_.size())
        i = open_block(tool_use_block(tc.value("id", ""), fn.value("name", ""), json::object()),
                       &out, index);
      const std::string args = fn.value("arguments", "");
      if (!args.empty() && blocks_[i].open)
        delta_event(i, {{"type", "input_json_delta"}, {"partial_json", args}});
    }
  }
  return out;
}

std::vector<json> AnthropicStream::finish(int64_t output_tokens, const json& stop_sequence) {
  std::vector<json> out;
  if (finish_reason_ == "abort") {  // the server is stopping, or its engine failed
    out.push_back(anthropic_error_body(503, "the request was aborted: the server is stopping "
                                            "or its engine failed"));
    return out;
  }
  close_open(&out);
  const std::string reason = anthropic_stop_reason(finish_reason_, stop_sequence);
  out.push_back(event(
      "message_delta",
      {{"delta",
        {{"stop_reason", reason},
         {"stop_sequence", reason == "stop_sequence" ? stop_sequence : json()}}},
       {"usage", {{"output_tokens", output_tokens}}}}));
  out.push_back(event("message_stop"));
  return out;
}

}  // namespace jinx::server
