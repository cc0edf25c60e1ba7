#include "server/responses_api.h"

#include <utility>

#include "server/api_error.h"
#include "server/openai_response.h"

namespace jinx::server {

namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

// The text of a message's content: a string, or a list of text parts.
std::string content_text(const ojson& content, const std::string& field) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) bad_request(field, "'content' must be a string or a list of parts");
  std::string text;
  for (const ojson& part : content) {
    const std::string type = part.is_object() ? part.value("type", "") : "";
    if (type != "input_text" && type != "output_text" && type != "text")
      bad_request(field, "only text content parts (input_text, output_text) are supported, got '" +
                             (type.empty() ? std::string("?") : type) + "'");
    if (!part.contains("text") || !part["text"].is_string())
      bad_request(field, "a text part needs a string 'text'");
    text += part["text"].get<std::string>();
  }
  return text;
}

const ojson& string_field(const ojson& item, const char* key, const std::string& field) {
  if (!item.contains(key) || !item[key].is_string())
    bad_request(field, std::string("'") + key + "' must be a string");
  return item[key];
}

// `input` items -> chat messages (consecutive function calls become one assistant message).
void add_input(const ojson& input, ojson* messages) {
  if (input.is_string()) {
    messages->push_back({{"role", "user"}, {"content", input}});
    return;
  }
  if (!input.is_array()) bad_request("input", "'input' must be a string or a list of items");
  for (size_t i = 0; i < input.size(); ++i) {
    const ojson& it = input[i];
    const std::string field = "input[" + std::to_string(i) + "]";
    if (!it.is_object()) bad_request(field, "an input item must be an object");
    const std::string type = it.value("type", it.contains("role") ? "message" : "");
    if (type == "message") {
      std::string role = string_field(it, "role", field).get<std::string>();
      if (role == "developer") role = "system";
      if (role != "user" && role != "assistant" && role != "system")
        bad_request(field, "role must be user, assistant, system or developer");
      if (!it.contains("content")) bad_request(field, "a message needs 'content'");
      messages->push_back({{"role", role}, {"content", content_text(it["content"], field)}});
    } else if (type == "function_call") {
      ojson call = {{"id", string_field(it, "call_id", field)},
                    {"type", "function"},
                    {"function",
                     {{"name", string_field(it, "name", field)},
                      {"arguments", string_field(it, "arguments", field)}}}};
      if (!messages->empty() && messages->back()["role"] == "assistant" &&
          messages->back().contains("tool_calls")) {
        messages->back()["tool_calls"].push_back(std::move(call));
      } else {
        messages->push_back(
            {{"role", "assistant"}, {"content", nullptr}, {"tool_calls", ojson::array({call})}});
      }
    } else if (type == "function_call_output") {
      const ojson& out = it.contains("output") ? it["output"] : ojson();
      messages->push_back({{"role", "tool"},
                           {"tool_call_id", string_field(it, "call_id", field)},
                           {"content", content_text(out, field + ".output")}});
    } else if (type == "reasoning") {
      continue;  // earlier thoughts: chat templates drop them from the history anyway
    } else {
      bad_request(field, "unsupported input item type '" + type + "'");
    }
  }
}

// Responses tools are flat ({type, name, parameters}); chat nests them under "function".
ojson chat_tools(const ojson& tools) {
  if (!tools.is_array()) bad_request("tools", "'tools' must be a list");
  ojson out = ojson::array();
  for (size_t i = 0; i < tools.size(); ++i) {
    const ojson& t = tools[i];
    const std::string field = "tools[" + std::to_string(i) + "]";
    if (!t.is_object() || t.value("type", "") != "function")
      bad_request(field, "only function tools are supported");
    ojson fn = {{"name", string_field(t, "name", field)}};
    if (t.contains("description")) fn["description"] = t["description"];
    if (t.contains("parameters")) fn["parameters"] = t["parameters"];
    out.push_back({{"type", "function"}, {"function", std::move(fn)}});
  }
  return out;
}

ojson chat_tool_choice(const ojson& tc) {
  if (tc.is_string()) return tc;
  if (tc.is_object() && tc.value("type", "") == "function" && tc.contains("name"))
    return {{"type", "function"}, {"function", {{"name", tc["name"]}}}};
  bad_request("tool_choice", "'tool_choice' must be auto, none, required or {type: function, name}");
}

ojson chat_response_format(const ojson& text) {
  if (!text.is_object()) bad_request("text", "'text' must be an object");
  if (!text.contains("format")) return ojson();
  const ojson& f = text["format"];
  const std::string type = f.is_object() ? f.value("type", "") : "";
  if (type == "text") return ojson();
  if (type == "json_object") return {{"type", "json_object"}};
  if (type == "json_schema") {
    if (!f.contains("schema")) bad_request("text.format", "a json_schema format needs 'schema'");
    ojson js = {{"name", f.value("name", "response")}, {"schema", f["schema"]}};
    if (f.contains("strict")) js["strict"] = f["strict"];
    return {{"type", "json_schema"}, {"json_schema", std::move(js)}};
  }
  bad_request("text.format", "'text.format.type' must be text, json_object or json_schema");
}

json usage_of(const json& chat) {
  const json u = chat.value("usage", json::object());
  const int64_t in = u.value("prompt_tokens", 0), out = u.value("completion_tokens", 0);
  int64_t cached = 0;
  if (u.contains("prompt_tokens_details") && u["prompt_tokens_details"].is_object())
    cached = u["prompt_tokens_details"].value("cached_tokens", 0);
  return {{"input_tokens", in},
          {"input_tokens_details", {{"cached_tokens", cached}}},
          {"output_tokens", out},
          {"output_tokens_details", {{"reasoning_tokens", 0}}},
          {"total_tokens", in + out}};
}

// The Response object's fields other than its output.
json response_base(const ResponsesRequest& rq, const std::string& id, int64_t created_at,
                   const std::string& model, const std::string& status, bool length) {
  json r = {{"id", id},
            {"object", "response"},
            {"created_at", created_at},
            {"status", status},
            {"error", nullptr},
            {"incomplete_details", length ? json{{"reason", "max_output_tokens"}} : json()},
            {"model", model},
            {"output", json::array()},
            {"previous_response_id", nullptr},
            {"store", false},
            {"reasoning", {{"effort", nullptr}, {"summary", nullptr}}},
            {"truncation", "disabled"},
            {"usage", nullptr}};
  for (const auto& [k, v] : rq.echo.items()) r[k] = v;
  return r;
}

json message_item(const std::string& id, const std::string& text, const char* status) {
  return {{"type", "message"},
          {"id", id},
          {"status", status},
          {"role", "assistant"},
          {"content", json::array({{{"type", "output_text"},
                                    {"text", text},
                                    {"annotations", json::array()},
                                    {"logprobs", json::array()}}})}};
}

json reasoning_item(const std::string& id, const std::string& text, const char* status) {
  return {{"type", "reasoning"},
          {"id", id},
          {"summary", json::array()},
          {"content", json::array({{{"type", "reasoning_text"}, {"text", text}}})},
          {"status", status}};
}

json call_item(const std::string& id, const std::string& call_id, const std::string& name,
               const std::string& args, const char* status) {
  return {{"type", "function_call"}, {"id", id},        {"call_id", call_id},
          {"name", name},            {"arguments", args}, {"status", status}};
}

}  // namespace

ResponsesRequest responses_to_chat(const ojson& body) {
  ResponsesRequest rq;
  for (const char* key : {"previous_response_id", "background", "conversation", "prompt"}) {
    if (body.contains(key) && !body[key].is_null() && body[key] != false)
      bad_request(key, std::string("'") + key +
                           "' is not supported: responses are not stored, send the whole "
                           "conversation in 'input'");
  }
  if (!body.contains("input")) bad_request("input", "'input' is required");
  ojson messages = ojson::array();
  if (body.contains("instructions") && !body["instructions"].is_null()) {
    if (!body["instructions"].is_string())
      bad_request("instructions", "'instructions' must be a string");
    messages.push_back({{"role", "system"}, {"content", body["instructions"]}});
  }
  add_input(body["input"], &messages);
  ojson& chat = rq.chat;
  chat["messages"] = std::move(messages);
  if (body.contains("model")) chat["model"] = body["model"];
  if (body.contains("max_output_tokens") && !body["max_output_tokens"].is_null()) {
    const ojson& m = body["max_output_tokens"];
    if (!m.is_number_integer() || m.get<int64_t>() < 1)
      bad_request("max_output_tokens", "'max_output_tokens' must be a positive integer");
    chat["max_tokens"] = m;
  }
  // Sampling fields the chat request reads the same way (vLLM's extras included).
  for (const char* key :
       {"temperature", "top_p", "top_k", "min_p", "seed", "stop", "presence_penalty",
        "frequency_penalty", "repetition_penalty", "logit_bias", "chat_template_kwargs",
        "min_tokens", "ignore_eos", "stop_token_ids", "grammar", "guided_grammar",
        "guided_regex", "guided_choice", "guided_json", "structured_outputs"}) {
    if (body.contains(key) && !body[key].is_null()) chat[key] = body[key];
  }
  if (body.contains("tools") && !body["tools"].is_null()) {
    chat["tools"] = chat_tools(body["tools"]);
    if (chat["tools"].empty()) chat.erase("tools");
  }
  if (body.contains("tool_choice") && !body["tool_choice"].is_null())
    chat["tool_choice"] = chat_tool_choice(body["tool_choice"]);
  if (body.contains("text") && !body["text"].is_null()) {
    ojson rf = chat_response_format(body["text"]);
    if (!rf.is_null()) chat["response_format"] = std::move(rf);
  }
  if (body.contains("stream")) {
    if (!body["stream"].is_boolean()) bad_request("stream", "'stream' must be a boolean");
    rq.stream = body["stream"].get<bool>();
    chat["stream"] = rq.stream;
    if (rq.stream) chat["stream_options"] = {{"include_usage", true}};
  }
  // Echoed back as the request gave them (with the API's defaults).
  json& e = rq.echo;
  auto echo = [&](const char* key, json dflt) {
    e[key] = body.contains(key) && !body[key].is_null() ? json::parse(body[key].dump()) : dflt;
  };
  echo("instructions", nullptr);
  echo("max_output_tokens", nullptr);
  echo("temperature", 1.0);
  echo("top_p", 1.0);
  echo("tools", json::array());
  echo("tool_choice", "auto");
  echo("parallel_tool_calls", true);
  echo("text", {{"format", {{"type", "text"}}}});
  echo("metadata", json::object());
  echo("user", nullptr);
  return rq;
}

json response_object(const json& chat, const ResponsesRequest& rq, const std::string& id,
                     int64_t created_at) {
  const json& choice = chat.at("choices").at(0);
  const json& msg = choice.at("message");
  const bool length = choice.value("finish_reason", "") == "length";
  json r = response_base(rq, id, created_at, chat.value("model", ""),
                         length ? "incomplete" : "completed", length);
  const char* status = length ? "incomplete" : "completed";
  json& out = r["output"];
  if (msg.contains("reasoning_content") && msg["reasoning_content"].is_string())
    out.push_back(reasoning_item(new_response_id("rs_"), msg["reasoning_content"], status));
  const bool calls = msg.contains("tool_calls") && msg["tool_calls"].is_array();
  if (msg.contains("content") && msg["content"].is_string() &&
      (!calls || !msg["content"].get<std::string>().empty()))
    out.push_back(message_item(new_response_id("msg_"), msg["content"], status));
  if (calls) {
    for (const json& tc : msg["tool_calls"])
      out.push_back(call_item(new_response_id("fc_"), tc.value("id", ""),
                              tc["function"].value("name", ""),
                              tc["function"].value("arguments", ""), "completed"));
  }
  r["usage"] = usage_of(chat);
  return r;
}

// ------------------------------------------------------------------------------ streaming

ResponsesStream::ResponsesStream(const ResponsesRequest& rq, std::string id, int64_t created_at,
                                 std::string model)
    : rq_(rq), id_(std::move(id)), model_(std::move(model)), created_at_(created_at) {}

json ResponsesStream::event(const char* type, json fields) {
  fields["type"] = type;
  fields["sequence_number"] = seq_++;
  return fields;
}

json ResponsesStream::base(const char* status) const {
  return response_base(rq_, id_, created_at_, model_, status, finish_reason_ == "length");
}

json ResponsesStream::item_json(const Item& it, const char* status) const {
  if (it.kind == "reasoning") return reasoning_item(it.id, it.text, status);
  if (it.kind == "message") return message_item(it.id, it.text, status);
  return call_item(it.id, it.call_id, it.name, it.text, status);
}

std::vector<json> ResponsesStream::start() {
  std::vector<json> out;
  const json r = base("in_progress");
  out.push_back(event("response.created", {{"response", r}}));
  out.push_back(event("response.in_progress", {{"response", r}}));
  return out;
}

size_t ResponsesStream::open_item(const std::string& kind, std::vector<json>* out, int tool_index,
                                  const std::string& call_id, const std::string& name) {
  for (size_t i = 0; i < items_.size(); ++i)  // one item at a time: close the one before
    if (items_[i].open) close(i, out);
  Item it;
  it.kind = kind;
  it.id = new_response_id(kind == "reasoning" ? "rs_" : kind == "message" ? "msg_" : "fc_");
  it.tool_index = tool_index;
  it.call_id = call_id;
  it.name = name;
  items_.push_back(it);
  const size_t i = items_.size() - 1;
  json added = item_json(it, "in_progress");
  if (kind != "function_call") added["content"] = json::array();
  out->push_back(event("response.output_item.added", {{"output_index", i}, {"item", added}}));
  if (kind == "message")
    out->push_back(event("response.content_part.added",
                         {{"item_id", it.id}, {"output_index", i}, {"content_index", 0},
                          {"part", {{"type", "output_text"}, {"text", ""},
                                    {"annotations", json::array()}}}}));
  if (kind == "reasoning")
    out->push_back(event("response.content_part.added",
                         {{"item_id", it.id}, {"output_index", i}, {"content_index", 0},
                          {"part", {{"type", "reasoning_text"}, {"text", ""}}}}));
  return i;
}

void ResponsesStream::close(size_t i, std::vector<json>* out) {
  Item& it = items_[i];
  if (!it.open) return;
  it.open = false;
  const char* status = finish_reason_ == "length" && it.kind != "function_call" ? "incomplete"
                                                                                : "completed";
  const json where = {{"item_id", it.id}, {"output_index", i}};
  if (it.kind == "function_call") {
    json f = where;
    f["arguments"] = it.text;
    f["name"] = it.name;
    out->push_back(event("response.function_call_arguments.done", f));
  } else {
    json f = where;
    f["content_index"] = 0;
    f["text"] = it.text;
    json part = it.kind == "message"
                    ? json{{"type", "output_text"}, {"text", it.text}, {"annotations", json::array()}}
                    : json{{"type", "reasoning_text"}, {"text", it.text}};
    if (it.kind == "message") {
      f["logprobs"] = json::array();
      out->push_back(event("response.output_text.done", f));
    } else {
      out->push_back(event("response.reasoning_text.done", f));
    }
    json p = where;
    p["content_index"] = 0;
    p["part"] = std::move(part);
    out->push_back(event("response.content_part.done", p));
  }
  out->push_back(
      event("response.output_item.done", {{"output_index", i}, {"item", item_json(it, status)}}));
}

std::vector<json> ResponsesStream::on_chunk(const json& chunk) {
  std::vector<json> out;
  if (!chunk.contains("choices") || chunk["choices"].empty()) return out;
  const json& ch = chunk["choices"][0];
  if (ch.contains("finish_reason") && ch["finish_reason"].is_string())
    finish_reason_ = ch["finish_reason"];
  const json delta = ch.value("delta", json::object());
  auto last_open = [&](const char* kind) -> Item* {
    if (items_.empty() || !items_.back().open || items_.back().kind != kind) return nullptr;
    return &items_.back();
  };
  if (delta.contains("reasoning_content") && delta["reasoning_content"].is_string()) {
    const std::string d = delta["reasoning_content"];
    Item* it = last_open("reasoning");
    const size_t i = it ? items_.size() - 1 : open_item("reasoning", &out);
    items_[i].text += d;
    out.push_back(event("response.reasoning_text.delta", {{"item_id", items_[i].id},
                                                          {"output_index", i},
                                                          {"content_index", 0},
                                                          {"delta", d}}));
  }
  if (delta.contains("content") && delta["content"].is_string() &&
      !delta["content"].get<std::string>().empty()) {
    const std::string d = delta["content"];
    Item* it = last_open("message");
    const size_t i = it ? items_.size() - 1 : open_item("message", &out);
    items_[i].text += d;
    out.push_back(event("response.output_text.delta", {{"item_id", items_[i].id},
                                                       {"output_index", i},
                                                       {"content_index", 0},
                                                       {"delta", d},
                                                       {"logprobs", json::array()}}));
  }
  if (delta.contains("tool_calls") && delta["tool_calls"].is_array()) {
    for (const json& tc : delta["tool_calls"]) {
      const int index = tc.value("index", 0);
      const json fn = tc.value("function", json::object());
      size_t i = items_.size();
      for (size_t k = 0; k < items_.size(); ++k)
        if (items_[k].kind == "function_call" && items_[k].tool_index == index) i = k;
      if (i == items_.size())
        i = open_item("function_call", &out, index, tc.value("id", ""), fn.value("name", ""));
      const std::string args = fn.value("arguments", "");
      if (!args.empty() && items_[i].open) {
        items_[i].text += args;
        out.push_back(event("response.function_call_arguments.delta",
                            {{"item_id", items_[i].id}, {"output_index", i}, {"delta", args}}));
      }
    }
  }
  return out;
}

std::vector<json> ResponsesStream::finish(const json& usage) {
  std::vector<json> out;
  for (size_t i = 0; i < items_.size(); ++i) close(i, &out);
  const bool length = finish_reason_ == "length";
  json r = base(length ? "incomplete" : "completed");
  for (const Item& it : items_)
    r["output"].push_back(
        item_json(it, length && it.kind != "function_call" ? "incomplete" : "completed"));
  r["usage"] = usage_of({{"usage", usage}});
  out.push_back(event(length ? "response.incomplete" : "response.completed", {{"response", r}}));
  return out;
}

}  // namespace jinx::server
