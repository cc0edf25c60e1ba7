// Tool calling for the OpenAI API (`tools`, `tool_choice`, `tool_calls`), as vLLM does it:
// tools reach the model through its chat template (or, for templates that know no tools, an
// injected system prompt), and the model's text is parsed back into OpenAI tool calls, whole or
// while streaming.
//
// Two output formats:
//   kHermes      Hermes / Qwen2.5 / Qwen3, one block per call, text outside blocks is content:
//                <tool_call>\n{"name": N, "arguments": {...}}\n</tool_call>
//   kLlama3Json  Llama 3.1 / 3.2:  {"name": N, "parameters": {...}}, optionally after
//                <|python_tag|>; several calls separated by ';'. The output is a call when it
//                starts (after whitespace) with '{' or <|python_tag|>.
//
// What counts as a call (both parsers below share one state machine, so streaming at any split
// gives what parsing the whole text gives):
//   - Hermes: "<tool_call>", whitespace, one JSON object, then optional whitespace and
//     "</tool_call>". A missing "</tool_call>" at the end of the text is accepted (generation
//     stopped right after the JSON, as with a forced call).
//   - Llama: as Hermes with "<|python_tag|>" (or nothing, at the start of the output) for
//     "<tool_call>" and no close marker; after a call, ';' and whitespace, then '{' is the next
//     call.
//   - The object needs a string "name" and an "arguments" (or "parameters") object, or a string
//     holding a JSON object, or nothing ("{}"); anything else, unparsable JSON, or a block closed
//     by "</tool_call>" before its JSON ended, stays content, verbatim.
//   - Text before the first call is content verbatim; whitespace right after a call is dropped
//     (the "\n" between Qwen's blocks), other text after a call is content.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace jinx {

enum class ToolFormat { kHermes, kLlama3Json };

// kHermes when the template mentions <tool_call> or harmony's <|channel|> (gpt-oss: the
// reasoning splitter hands its calls on as Hermes blocks); kLlama3Json when it mentions
// <|python_tag|> or "parameters"; otherwise kHermes (the format injected for templates without
// tools).
ToolFormat detect_tool_format(const std::string& chat_template);

// The template reads the `tools` variable (a Jinja name token, not an attribute or a string).
// False for a template that does not even lex.
bool template_supports_tools(const std::string& chat_template);

// Checks the request's `tools` and `tool_choice` (either may be null / absent) and throws
// jinx::Error with a message fit for an HTTP 400:
//   tools:       array of {"type": "function", "function": {"name": non-empty string (unique),
//                "description"?: string, "parameters"?: object, "strict"?: bool}}
//   tool_choice: "none" | "auto" | "required" | {"type": "function", "function": {"name": N}}
//                with N a tool of `tools`; "required" and a named choice need tools.
void validate_tools(const nlohmann::ordered_json& tools, const nlohmann::ordered_json& tool_choice);
void validate_tools(const nlohmann::json& tools, const nlohmann::json& tool_choice);

// The messages with tool instructions and signatures merged into the system message (a system
// message is added first when there is none). Hermes wording: a <tools></tools> block, one JSON
// signature per line, and the <tool_call> output format; Llama: the {"name", "parameters"} JSON
// format. JSON text is formatted as Jinja's tojson (Python json.dumps) formats it.
// `tools` null or empty: messages unchanged.
nlohmann::ordered_json inject_tools_system_prompt(const nlohmann::ordered_json& messages,
                                                  const nlohmann::ordered_json& tools,
                                                  ToolFormat format);

// Everything done to OpenAI messages before the chat template renders them:
//   - assistant tool_calls[].function.arguments given as a JSON string (OpenAI) become the JSON
//     value (templates do `arguments | tojson`); a string that is not JSON throws jinx::Error.
//   - a null or missing content becomes "" (as vLLM renders it; Qwen3's template does
//     `'</think>' in message.content`).
//   - when the template does not support tools: the tool prompt is injected (when tools are
//     given), assistant tool calls become text in the model's own call format appended to the
//     content, and each run of `tool` messages becomes one user message of
//     <tool_response>\n...\n</tool_response> blocks.
// The server still passes `tools` to the template context (templates without tools ignore it).
// Throws jinx::Error on a malformed message (not an object, tool_calls not an array, ...).
nlohmann::ordered_json prepare_tool_messages(const nlohmann::ordered_json& messages,
                                             const nlohmann::ordered_json& tools,
                                             const std::string& chat_template, ToolFormat format);

// For tool_choice "required" or a named function: the JSON schema of the one call object the
// model must write after forced_call_prefix():
//   {"type": "object", "properties": {"name": {"const": N}, "arguments": <parameters or
//    {"type": "object"}>}, "required": ["name", "arguments"], "additionalProperties": false}
// ("parameters" instead of "arguments" for kLlama3Json); "required" with several tools: anyOf
// over them. A tool's $defs / definitions move to the root $defs (renamed "t<i>_<name>", refs
// rewritten) so that "#/$defs/..." refs resolve. Throws jinx::Error for other tool_choices.
// Validate first (validate_tools).
// Returned as ordered_json so that "name" comes before the arguments in "properties" (a decoder
// that writes properties in schema order makes the model name the function first); it converts
// to nlohmann::json implicitly.
nlohmann::ordered_json forced_call_schema(const nlohmann::ordered_json& tools,
                                          const nlohmann::ordered_json& tool_choice,
                                          ToolFormat format);
nlohmann::ordered_json forced_call_schema(const nlohmann::json& tools,
                                          const nlohmann::json& tool_choice, ToolFormat format);

// The text the server appends to the rendered prompt before the constrained JSON: "<tool_call>\n"
// for kHermes, "" for kLlama3Json. Push it into the ToolCallStreamParser before the model's
// output so that the parser sees the whole call.
std::string forced_call_prefix(ToolFormat format);

// True for tool_choice "required" or {"type": "function", ...} (a forced call).
bool tool_choice_forces_call(const nlohmann::ordered_json& tool_choice);

struct ToolCall {
  std::string id;  // "call_" + 24 random alphanumerics
  std::string name;
  std::string arguments;  // compact JSON text of an object
};

struct ParsedOutput {
  std::string content;  // "" when the output was only calls
  std::vector<ToolCall> calls;
};

ParsedOutput parse_tool_calls(std::string_view text, ToolFormat format);

// "call_" + 24 random characters of [A-Za-z0-9].
std::string make_tool_call_id();

// One piece of streamed output: content text, or (index >= 0) a whole tool call: its index
// among this output's calls, id, name and complete arguments (one fragment; OpenAI clients
// accumulate argument fragments, so one is valid).
struct StreamDelta {
  std::string content;
  int index = -1;
  std::string id, name, arguments;
};

// Incremental parser: push() the detokenizer's text deltas as they come, finish() at the end.
// Content is released as soon as it cannot be the start of a marker (only a possible partial
// "<tool_call>" / "<|python_tag|>", a call's JSON, and whitespace after a call are held).
class ToolCallStreamParser {
 public:
  explicit ToolCallStreamParser(ToolFormat format);
  ToolCallStreamParser(const ToolCallStreamParser&) = delete;
  ToolCallStreamParser& operator=(const ToolCallStreamParser&) = delete;
  ToolCallStreamParser(ToolCallStreamParser&&) noexcept = default;
  ToolCallStreamParser& operator=(ToolCallStreamParser&&) noexcept = default;

  std::vector<StreamDelta> push(std::string_view text_delta);
  // Releases what was held: an unfinished call is content, verbatim.
  std::vector<StreamDelta> finish();
  bool saw_tool_call() const { return n_calls_ > 0; }

 private:
  enum class State {
    kStart,      // nothing but whitespace yet (kLlama3Json: '{' here starts a call)
    kText,       // content
    kOpened,     // after an open marker, before the JSON's '{'
    kJson,       // inside a call's JSON object
    kAfterCall,  // after a call: whitespace, optional close marker / ';' separator
  };
  void step(bool at_end, std::vector<StreamDelta>& out);
  bool step_text(bool at_end, std::vector<StreamDelta>& out);
  bool step_opened(bool at_end, std::vector<StreamDelta>& out);
  bool step_json(bool at_end, std::vector<StreamDelta>& out);
  bool step_after_call(bool at_end, std::vector<StreamDelta>& out);
  void emit_content(std::string_view text, std::vector<StreamDelta>& out);
  void give_up_call(std::vector<StreamDelta>& out);

  ToolFormat format_;
  State state_ = State::kStart;
  std::string buf_;        // text received and not yet consumed
  std::string held_;       // consumed text of the call being read (content if it fails)
  size_t json_begin_ = 0;  // offset in buf_ of the call's '{' (kJson)
  size_t scan_pos_ = 0;    // kJson: how far buf_ is scanned
  int depth_ = 0;
  bool in_string_ = false, escaped_ = false;
  bool closed_ = false;  // kAfterCall: the close marker / separator was seen
  int n_calls_ = 0;
};

}  // namespace jinx
