#include "server/tool_calls.h"

#include <algorithm>
#include <random>
#include <set>

#include "core/check.h"
#include "tokenizer/jinja_lexer.h"
#include "tokenizer/template.h"

namespace jinx {

using ojson = nlohmann::ordered_json;

namespace {

constexpr std::string_view kHermesOpen = "<tool_call>";
constexpr std::string_view kHermesClose = "</tool_call>";
constexpr std::string_view kPythonTag = "<|python_tag|>";
// Deeper JSON is refused (tool schemas) or left as content (model output): recursion over it
// stays bounded.
constexpr int kMaxJsonDepth = 64;

bool is_space(char c) {
  return c == ' ' || c == '\n' || c == '\t' || c == '\r';
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

// `s` is a proper prefix of `marker` (more input could complete it).
bool is_partial(std::string_view s, std::string_view marker) {
  return s.size() < marker.size() && marker.substr(0, s.size()) == s;
}

// JSON text as Jinja's tojson writes it (Python json.dumps, ensure_ascii=False), so that injected
// prompts look like what tool-aware templates render.
class PyJson {
 public:
  PyJson() : tmpl_("{{ v | tojson }}") {}
  std::string operator()(const ojson& v) const { return tmpl_.render(ojson{{"v", v}}); }

 private:
  ChatTemplate tmpl_;
};

int json_depth(const ojson& j, int depth) {
  if (depth > kMaxJsonDepth || !j.is_structured()) return depth;
  int deepest = depth;
  for (const auto& child : j) deepest = std::max(deepest, json_depth(child, depth + 1));
  return deepest;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Template inspection

ToolFormat detect_tool_format(const std::string& chat_template) {
  if (chat_template.find(kHermesOpen) != std::string::npos) return ToolFormat::kHermes;
  // gpt-oss (harmony): the reasoning splitter rewrites its calls as Hermes blocks.
  if (chat_template.find("<|channel|>") != std::string::npos) return ToolFormat::kHermes;
  if (chat_template.find(kPythonTag) != std::string::npos ||
      chat_template.find("parameters") != std::string::npos) {
    return ToolFormat::kLlama3Json;
  }
  return ToolFormat::kHermes;
}

bool template_supports_tools(const std::string& chat_template) {
  std::vector<jinja::Token> tokens;
  try {
    tokens = jinja::tokenize(chat_template);
  } catch (const Error&) {
    return false;
  }
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].type != jinja::Tok::kName || tokens[i].value != "tools") continue;
    bool attribute = i > 0 && tokens[i - 1].type == jinja::Tok::kOp && tokens[i - 1].value == ".";
    if (!attribute) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Validation

namespace {

void validate_tool(const ojson& tool, size_t i, std::set<std::string>& names) {
  std::string where = str("tools[", i, "]");
  if (!tool.is_object()) fail(where, " must be an object");
  if (!tool.contains("type") || tool["type"] != "function") {
    fail(where, ".type must be \"function\"");
  }
  if (!tool.contains("function") || !tool["function"].is_object()) {
    fail(where, ".function must be an object");
  }
  const ojson& fn = tool["function"];
  if (!fn.contains("name") || !fn["name"].is_string() ||
      fn["name"].get_ref<const std::string&>().empty()) {
    fail(where, ".function.name must be a non-empty string");
  }
  const auto& name = fn["name"].get_ref<const std::string&>();
  if (!names.insert(name).second) fail(where, ".function.name \"", name, "\" is a duplicate");
  if (fn.contains("description") && !fn["description"].is_string() &&
      !fn["description"].is_null()) {
    fail(where, ".function.description must be a string");
  }
  if (fn.contains("parameters") && !fn["parameters"].is_null()) {
    if (!fn["parameters"].is_object()) {
      fail(where, ".function.parameters must be an object (a JSON schema)");
    }
    if (json_depth(fn["parameters"], 0) > kMaxJsonDepth) {
      fail(where, ".function.parameters nests deeper than ", kMaxJsonDepth, " levels");
    }
  }
  if (fn.contains("strict") && !fn["strict"].is_boolean() && !fn["strict"].is_null()) {
    fail(where, ".function.strict must be a boolean");
  }
}

// The tool_choice's function name, or "" for "none" / "auto" / "required" / null.
std::string named_choice(const ojson& tool_choice) {
  if (!tool_choice.is_object()) return "";
  const char* shape =
      "tool_choice must be \"none\", \"auto\", \"required\" or "
      "{\"type\": \"function\", \"function\": {\"name\": ...}}";
  if (!tool_choice.contains("type") || tool_choice["type"] != "function") fail(shape);
  if (!tool_choice.contains("function") || !tool_choice["function"].is_object()) fail(shape);
  const ojson& fn = tool_choice["function"];
  if (!fn.contains("name") || !fn["name"].is_string() ||
      fn["name"].get_ref<const std::string&>().empty()) {
    fail("tool_choice.function.name must be a non-empty string");
  }
  return fn["name"].get<std::string>();
}

}  // namespace

void validate_tools(const ojson& tools, const ojson& tool_choice) {
  std::set<std::string> names;
  if (!tools.is_null()) {
    if (!tools.is_array()) fail("tools must be an array");
    for (size_t i = 0; i < tools.size(); ++i) validate_tool(tools[i], i, names);
  }
  if (tool_choice.is_null()) return;
  if (tool_choice.is_string()) {
    const auto& s = tool_choice.get_ref<const std::string&>();
    if (s == "none" || s == "auto") return;
    if (s != "required") {
      fail("tool_choice must be \"none\", \"auto\", \"required\" or a function, not \"", s, "\"");
    }
    if (names.empty()) fail("tool_choice \"required\" needs at least one tool in tools");
    return;
  }
  if (!tool_choice.is_object()) {
    fail("tool_choice must be \"none\", \"auto\", \"required\" or a function object");
  }
  std::string name = named_choice(tool_choice);
  if (!names.count(name))
    fail("tool_choice names the function \"", name, "\", which is not in tools");
}

void validate_tools(const nlohmann::json& tools, const nlohmann::json& tool_choice) {
  validate_tools(ojson(tools), ojson(tool_choice));
}

bool tool_choice_forces_call(const ojson& tool_choice) {
  return tool_choice.is_object() || (tool_choice.is_string() && tool_choice == "required");
}

// ---------------------------------------------------------------------------------------------
// Rendering

namespace {

std::string tools_prompt(const ojson& tools, ToolFormat format, const PyJson& tojson) {
  std::string sigs;
  for (const auto& tool : tools) sigs += tojson(tool) + "\n";
  std::string head =
      "# Tools\n\nYou can call functions to help with the user's request. Their signatures, "
      "as JSON schemas, are listed one per line";
  if (format == ToolFormat::kLlama3Json) {
    return head + ":\n" + sigs +
           "\nTo call a function, answer with nothing but a JSON object of the form "
           "{\"name\": \"<function name>\", \"parameters\": {\"<argument name>\": <value>, ...}}; "
           "separate several calls with \"; \". Each result comes back inside "
           "<tool_response></tool_response> tags.";
  }
  return head + " inside <tools></tools> tags:\n<tools>\n" + sigs +
         "</tools>\n\nTo call a function, answer with a JSON object holding its name and "
         "arguments inside <tool_call></tool_call> tags, one block per call:\n<tool_call>\n"
         "{\"name\": \"<function name>\", \"arguments\": {\"<argument name>\": <value>, ...}}\n"
         "</tool_call>\nEach result comes back inside <tool_response></tool_response> tags.";
}

// The text of a message content: a string, the text parts of an array, "" for null, else the
// JSON of the value.
std::string content_text(const ojson& content, const PyJson& tojson) {
  if (content.is_null()) return "";
  if (content.is_string()) return content.get<std::string>();
  if (content.is_array()) {
    std::string text;
    for (const auto& part : content) {
      if (part.is_object() && part.value("type", "") == "text" && part.contains("text") &&
          part["text"].is_string()) {
        text += part["text"].get<std::string>();
      }
    }
    return text;
  }
  return tojson(content);
}

ojson inject_prompt(ojson messages, const ojson& tools, ToolFormat format, const PyJson& tojson) {
  std::string prompt = tools_prompt(tools, format, tojson);
  if (!messages.empty() && messages[0].is_object() && messages[0].value("role", "") == "system") {
    ojson& content = messages[0]["content"];
    if (content.is_null()) {
      content = prompt;
    } else if (content.is_string()) {
      content = content.get<std::string>() + "\n\n" + prompt;
    } else if (content.is_array()) {
      content.push_back(ojson{{"type", "text"}, {"text", "\n\n" + prompt}});
    } else {
      fail("messages[0].content must be a string or an array of content parts");
    }
    return messages;
  }
  messages.insert(messages.begin(), ojson{{"role", "system"}, {"content", prompt}});
  return messages;
}

const ojson& call_function(const ojson& call) {
  return call.contains("function") ? call["function"] : call;
}

// tool_calls[].function.arguments: JSON text -> the JSON value.
void normalise_tool_calls(ojson& message, size_t i) {
  if (!message.contains("tool_calls") || message["tool_calls"].is_null()) return;
  ojson& calls = message["tool_calls"];
  if (!calls.is_array()) fail("messages[", i, "].tool_calls must be an array");
  for (size_t j = 0; j < calls.size(); ++j) {
    std::string where = str("messages[", i, "].tool_calls[", j, "]");
    if (!calls[j].is_object()) fail(where, " must be an object");
    ojson& fn = calls[j].contains("function") ? calls[j]["function"] : calls[j];
    if (!fn.is_object()) fail(where, ".function must be an object");
    if (!fn.contains("name") || !fn["name"].is_string())
      fail(where, ".function.name must be a string");
    if (!fn.contains("arguments") || !fn["arguments"].is_string()) continue;
    ojson parsed = ojson::parse(fn["arguments"].get<std::string>(), nullptr, false);
    if (parsed.is_discarded()) fail(where, ".function.arguments is not valid JSON");
    fn["arguments"] = std::move(parsed);
  }
}

// An assistant message's tool calls as text in the model's own format, after its content.
void calls_to_text(ojson& message, ToolFormat format, const PyJson& tojson) {
  if (!message.contains("tool_calls")) return;
  std::string text = content_text(message.value("content", ojson()), tojson);
  if (message["tool_calls"].is_array()) {
    bool first = true;
    for (const auto& call : message["tool_calls"]) {
      const ojson& fn = call_function(call);
      ojson args = fn.contains("arguments") ? fn["arguments"] : ojson::object();
      if (format == ToolFormat::kLlama3Json) {
        if (!first)
          text += "; ";
        else if (!text.empty())
          text += "\n";
        text += tojson(ojson{{"name", fn["name"]}, {"parameters", args}});
      } else {
        if (!text.empty()) text += "\n";
        text += "<tool_call>\n" + tojson(ojson{{"name", fn["name"]}, {"arguments", args}}) +
                "\n</tool_call>";
      }
      first = false;
    }
  }
  message.erase("tool_calls");
  message["content"] = text;
}

// Each run of `tool` messages -> one user message of <tool_response> blocks.
ojson tool_results_to_user(const ojson& messages, const PyJson& tojson) {
  ojson out = ojson::array();
  bool extend = false;  // out.back() is a user message made of tool results
  for (const auto& message : messages) {
    if (message.value("role", "") != "tool") {
      out.push_back(message);
      extend = false;
      continue;
    }
    std::string block = "<tool_response>\n" +
                        content_text(message.value("content", ojson()), tojson) +
                        "\n</tool_response>";
    if (extend) {
      out.back()["content"] = out.back()["content"].get<std::string>() + "\n" + block;
    } else {
      out.push_back(ojson{{"role", "user"}, {"content", block}});
    }
    extend = true;
  }
  return out;
}

void check_messages(const ojson& messages) {
  if (!messages.is_array()) fail("messages must be an array");
  for (size_t i = 0; i < messages.size(); ++i) {
    if (!messages[i].is_object()) fail("messages[", i, "] must be an object");
    if (messages[i].contains("role") && !messages[i]["role"].is_string()) {
      fail("messages[", i, "].role must be a string");
    }
  }
}

}  // namespace

ojson inject_tools_system_prompt(const ojson& messages, const ojson& tools, ToolFormat format) {
  check_messages(messages);
  if (tools.is_null() || (tools.is_array() && tools.empty())) return messages;
  if (!tools.is_array()) fail("tools must be an array");
  return inject_prompt(messages, tools, format, PyJson());
}

ojson prepare_tool_messages(const ojson& messages, const ojson& tools,
                            const std::string& chat_template, ToolFormat format) {
  check_messages(messages);
  ojson out = messages;
  for (size_t i = 0; i < out.size(); ++i) {
    if (!out[i].contains("content") || out[i]["content"].is_null()) out[i]["content"] = "";
    normalise_tool_calls(out[i], i);
  }
  if (template_supports_tools(chat_template)) return out;
  PyJson tojson;
  for (auto& message : out) calls_to_text(message, format, tojson);
  out = tool_results_to_user(out, tojson);
  if (tools.is_array() && !tools.empty())
    out = inject_prompt(std::move(out), tools, format, tojson);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Forced calls

namespace {

// Rewrites local "$ref"s of tool `tag` to the root $defs; `refs_root` is set when a ref points
// at the tool's schema itself ("#").
void rewrite_refs(ojson& schema, const std::string& tag, bool& refs_root, int depth) {
  JINX_CHECK(depth <= kMaxJsonDepth + 2, "tool parameters nest too deeply");
  if (schema.is_array()) {
    for (auto& item : schema) rewrite_refs(item, tag, refs_root, depth + 1);
    return;
  }
  if (!schema.is_object()) return;
  for (auto it = schema.begin(); it != schema.end(); ++it) {
    if (it.key() == "$ref" && it.value().is_string()) {
      std::string ref = it.value().get<std::string>();
      if (ref == "#") {
        refs_root = true;
        it.value() = "#/$defs/" + tag;
      } else if (starts_with(ref, "#/$defs/")) {
        it.value() = "#/$defs/" + tag + "_" + ref.substr(8);
      } else if (starts_with(ref, "#/definitions/")) {
        it.value() = "#/$defs/" + tag + "_" + ref.substr(14);
      }
      continue;
    }
    rewrite_refs(it.value(), tag, refs_root, depth + 1);
  }
}

// The schema of a call to `tool` (the i-th of the request); its definitions go to `defs`.
ojson call_schema(const ojson& tool, size_t i, ToolFormat format, ojson& defs) {
  const ojson& fn = tool["function"];
  ojson params = fn.contains("parameters") && fn["parameters"].is_object()
                     ? fn["parameters"]
                     : ojson{{"type", "object"}};
  std::string tag = str("t", i);
  bool refs_root = false;
  for (const char* key : {"$defs", "definitions"}) {
    if (!params.contains(key)) continue;
    if (params[key].is_object()) {
      for (auto& [name, def] : params[key].items()) {
        rewrite_refs(def, tag, refs_root, 0);
        defs[tag + "_" + name] = def;
      }
    }
    params.erase(key);
  }
  rewrite_refs(params, tag, refs_root, 0);
  if (refs_root) {
    defs[tag] = params;
    params = ojson{{"$ref", "#/$defs/" + tag}};
  }
  std::string args_key = format == ToolFormat::kLlama3Json ? "parameters" : "arguments";
  ojson props = ojson::object();
  props["name"] = ojson{{"const", fn["name"]}};
  props[args_key] = params;
  return ojson{{"type", "object"},
               {"properties", props},
               {"required", ojson::array({"name", args_key})},
               {"additionalProperties", false}};
}

}  // namespace

ojson forced_call_schema(const ojson& tools, const ojson& tool_choice, ToolFormat format) {
  if (!tool_choice_forces_call(tool_choice)) {
    fail("forced_call_schema: tool_choice is neither \"required\" nor a function");
  }
  validate_tools(tools, tool_choice);
  ojson defs = ojson::object();
  ojson schema;
  if (tool_choice.is_object()) {
    std::string name = named_choice(tool_choice);
    for (size_t i = 0; i < tools.size(); ++i) {
      if (tools[i]["function"]["name"] == name) schema = call_schema(tools[i], i, format, defs);
    }
  } else if (tools.size() == 1) {
    schema = call_schema(tools[0], 0, format, defs);
  } else {
    ojson any = ojson::array();
    for (size_t i = 0; i < tools.size(); ++i) any.push_back(call_schema(tools[i], i, format, defs));
    schema = ojson{{"anyOf", any}};
  }
  if (!defs.empty()) schema["$defs"] = defs;
  return schema;
}

ojson forced_call_schema(const nlohmann::json& tools, const nlohmann::json& tool_choice,
                         ToolFormat format) {
  return forced_call_schema(ojson(tools), ojson(tool_choice), format);
}

std::string forced_call_prefix(ToolFormat format) {
  return format == ToolFormat::kHermes ? std::string(kHermesOpen) + "\n" : std::string();
}

// ---------------------------------------------------------------------------------------------
// Parsing

std::string make_tool_call_id() {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_int_distribution<int> pick(0, sizeof(kAlphabet) - 2);
  std::string id = "call_";
  for (int i = 0; i < 24; ++i) id += kAlphabet[pick(rng)];
  return id;
}

namespace {

// A call from the text of one JSON object, or false (the text stays content).
bool parse_call(std::string_view json_text, StreamDelta& call) {
  ojson j = ojson::parse(json_text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return false;
  if (!j.contains("name") || !j["name"].is_string() ||
      j["name"].get_ref<const std::string&>().empty()) {
    return false;
  }
  ojson args = ojson::object();
  const char* key = j.contains("arguments") ? "arguments" : "parameters";
  if (j.contains(key)) {
    args = j[key];
    if (args.is_string()) args = ojson::parse(args.get<std::string>(), nullptr, false);
    if (args.is_discarded() || !args.is_object()) return false;
  }
  call.name = j["name"].get<std::string>();
  call.arguments = args.dump(-1, ' ', false, ojson::error_handler_t::replace);
  return true;
}

}  // namespace

ToolCallStreamParser::ToolCallStreamParser(ToolFormat format) : format_(format) {
  if (format_ == ToolFormat::kHermes) state_ = State::kText;
}

std::vector<StreamDelta> ToolCallStreamParser::push(std::string_view text_delta) {
  std::vector<StreamDelta> out;
  buf_.append(text_delta);
  step(false, out);
  return out;
}

std::vector<StreamDelta> ToolCallStreamParser::finish() {
  std::vector<StreamDelta> out;
  step(true, out);
  switch (state_) {
    case State::kStart:
    case State::kOpened:
    case State::kJson:  // an unfinished call is content, verbatim
      emit_content(held_, out);
      emit_content(buf_, out);
      break;
    case State::kText:
      emit_content(buf_, out);
      break;
    case State::kAfterCall:  // whitespace or a cut-off close marker: dropped
      break;
  }
  held_.clear();
  buf_.clear();
  scan_pos_ = 0;
  state_ = State::kText;
  return out;
}

void ToolCallStreamParser::emit_content(std::string_view text, std::vector<StreamDelta>& out) {
  if (text.empty()) return;
  if (!out.empty() && out.back().index < 0) {
    out.back().content.append(text);
  } else {
    StreamDelta delta;
    delta.content = std::string(text);
    out.push_back(std::move(delta));
  }
}

void ToolCallStreamParser::give_up_call(std::vector<StreamDelta>& out) {
  emit_content(held_, out);
  held_.clear();
  state_ = State::kText;
}

void ToolCallStreamParser::step(bool at_end, std::vector<StreamDelta>& out) {
  for (;;) {
    bool progressed = false;
    switch (state_) {
      case State::kStart: {
        size_t n = 0;
        while (n < buf_.size() && is_space(buf_[n])) ++n;
        held_.append(buf_, 0, n);
        buf_.erase(0, n);
        if (buf_.empty()) return;
        if (buf_[0] == '{') {
          state_ = State::kJson;
        } else if (starts_with(buf_, kPythonTag)) {
          held_.append(kPythonTag);
          buf_.erase(0, kPythonTag.size());
          state_ = State::kOpened;
        } else if (is_partial(buf_, kPythonTag) && !at_end) {
          return;
        } else {
          give_up_call(out);
        }
        progressed = true;
        break;
      }
      case State::kText:
        progressed = step_text(at_end, out);
        break;
      case State::kOpened:
        progressed = step_opened(at_end, out);
        break;
      case State::kJson:
        progressed = step_json(at_end, out);
        break;
      case State::kAfterCall:
        progressed = step_after_call(at_end, out);
        break;
    }
    if (!progressed) return;
  }
}

bool ToolCallStreamParser::step_text(bool at_end, std::vector<StreamDelta>& out) {
  std::string_view marker = format_ == ToolFormat::kHermes ? kHermesOpen : kPythonTag;
  size_t pos = buf_.find(marker);
  if (pos != std::string::npos) {
    emit_content(std::string_view(buf_).substr(0, pos), out);
    held_.assign(marker);
    buf_.erase(0, pos + marker.size());
    state_ = State::kOpened;
    return true;
  }
  // Hold back the longest tail that could begin the marker.
  size_t keep = 0;
  if (!at_end) {
    for (size_t n = std::min(buf_.size(), marker.size() - 1); n > 0; --n) {
      if (is_partial(std::string_view(buf_).substr(buf_.size() - n), marker)) {
        keep = n;
        break;
      }
    }
  }
  emit_content(std::string_view(buf_).substr(0, buf_.size() - keep), out);
  buf_.erase(0, buf_.size() - keep);
  return false;
}

bool ToolCallStreamParser::step_opened(bool at_end, std::vector<StreamDelta>& out) {
  size_t n = 0;
  while (n < buf_.size() && is_space(buf_[n])) ++n;
  held_.append(buf_, 0, n);
  buf_.erase(0, n);
  if (buf_.empty()) return false;  // finish() releases held_
  if (buf_[0] == '{') {
    state_ = State::kJson;
  } else {
    give_up_call(out);
  }
  return true;
}

bool ToolCallStreamParser::step_json(bool at_end, std::vector<StreamDelta>& out) {
  if (scan_pos_ == 0) {
    depth_ = 0;
    in_string_ = escaped_ = false;
  }
  // A Hermes block closed before its JSON ended is content up to the close marker.
  size_t close = std::string::npos;
  if (format_ == ToolFormat::kHermes) {
    size_t from = scan_pos_ >= kHermesClose.size() ? scan_pos_ - kHermesClose.size() : 0;
    close = buf_.find(kHermesClose, from);
  }
  size_t end = std::min(buf_.size(), close);
  size_t complete = std::string::npos;
  bool too_deep = false;
  for (size_t i = scan_pos_; i < end && complete == std::string::npos; ++i) {
    char c = buf_[i];
    if (in_string_) {
      if (escaped_)
        escaped_ = false;
      else if (c == '\\')
        escaped_ = true;
      else if (c == '"')
        in_string_ = false;
    } else if (c == '"') {
      in_string_ = true;
    } else if (c == '{' || c == '[') {
      if (++depth_ > kMaxJsonDepth) too_deep = true;
    } else if (c == '}' || c == ']') {
      if (--depth_ == 0) complete = i + 1;
    }
  }
  if (complete == std::string::npos) {
    scan_pos_ = end;
    if (close == std::string::npos) return false;  // wait for more (finish() releases it)
    held_.append(buf_, 0, close + kHermesClose.size());
    buf_.erase(0, close + kHermesClose.size());
    scan_pos_ = 0;
    give_up_call(out);
    return true;
  }
  scan_pos_ = 0;
  StreamDelta call;
  if (too_deep || !parse_call(std::string_view(buf_).substr(0, complete), call)) {
    held_.append(buf_, 0, complete);
    buf_.erase(0, complete);
    give_up_call(out);
    return true;
  }
  call.index = n_calls_++;
  call.id = make_tool_call_id();
  out.push_back(std::move(call));
  held_.clear();
  buf_.erase(0, complete);
  state_ = State::kAfterCall;
  closed_ = false;
  return true;
}

bool ToolCallStreamParser::step_after_call(bool at_end, std::vector<StreamDelta>& out) {
  size_t n = 0;
  while (n < buf_.size() && is_space(buf_[n])) ++n;
  buf_.erase(0, n);
  if (buf_.empty()) return false;
  if (format_ == ToolFormat::kHermes) {
    if (!closed_ && starts_with(buf_, kHermesClose)) {
      buf_.erase(0, kHermesClose.size());
      closed_ = true;
      return true;
    }
    if (!closed_ && is_partial(buf_, kHermesClose)) {
      if (at_end) buf_.clear();  // a cut-off close marker
      return false;
    }
  } else {
    if (!closed_ && buf_[0] == ';') {
      buf_.erase(0, 1);
      closed_ = true;
      return true;
    }
    if (buf_[0] == '{') {
      state_ = State::kJson;
      return true;
    }
  }
  state_ = State::kText;
  return true;
}

ParsedOutput parse_tool_calls(std::string_view text, ToolFormat format) {
  ToolCallStreamParser parser(format);
  std::vector<StreamDelta> deltas = parser.push(text);
  std::vector<StreamDelta> rest = parser.finish();
  deltas.insert(deltas.end(), rest.begin(), rest.end());
  ParsedOutput parsed;
  for (auto& d : deltas) {
    if (d.index < 0) {
      parsed.content += d.content;
    } else {
      parsed.calls.push_back(ToolCall{std::move(d.id), std::move(d.name), std::move(d.arguments)});
    }
  }
  return parsed;
}

}  // namespace jinx
