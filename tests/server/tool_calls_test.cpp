// Tool calling: template rendering against jinja2 fixtures (tools/make_tool_call_fixtures.py),
// output parsing, streaming at every split point, validation and forced-call schemas.
#include "server/tool_calls.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "core/check.h"
#include "tokenizer/template.h"

namespace jinx {
namespace {

using ojson = nlohmann::ordered_json;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error("cannot open " + path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string template_source(const std::string& name) {
  return read_file(std::string(JINX_FIXTURES) + "/templates/" + name);
}

// ---------------------------------------------------------------------------------------------
// Rendering against jinja2

TEST(ToolRender, MatchesJinja2Fixtures) {
  ojson cases =
      ojson::parse(read_file(std::string(JINX_FIXTURES) + "/tool_calls/render_cases.json"));
  ASSERT_GE(cases.size(), 15u);
  for (const auto& c : cases) {
    SCOPED_TRACE(c["name"].get<std::string>());
    std::string src = template_source(c["template"].get<std::string>());
    ToolFormat format =
        c["format"] == "llama3_json" ? ToolFormat::kLlama3Json : ToolFormat::kHermes;
    if (!c["format_forced"].get<bool>()) EXPECT_EQ(detect_tool_format(src), format);
    EXPECT_EQ(template_supports_tools(src), c["supports_tools"].get<bool>());
    ojson prepared = prepare_tool_messages(c["messages"], c["tools"], src, format);
    EXPECT_EQ(prepared.dump(), c["prepared"].dump());
    ojson context = {{"messages", prepared},
                     {"tools", c["tools"]},
                     {"add_generation_prompt", c["add_generation_prompt"]}};
    for (const auto& [key, value] : c["context_extra"].items()) context[key] = value;
    EXPECT_EQ(ChatTemplate(src).render(context), c["expected"].get<std::string>());
  }
}

TEST(ToolRender, DetectsFormatsAndToolSupport) {
  EXPECT_EQ(detect_tool_format(template_source("qwen2_5_instruct.jinja")), ToolFormat::kHermes);
  EXPECT_EQ(detect_tool_format(template_source("qwen3.jinja")), ToolFormat::kHermes);
  EXPECT_EQ(detect_tool_format(template_source("llama3_1_instruct.jinja")),
            ToolFormat::kLlama3Json);
  EXPECT_EQ(detect_tool_format(template_source("smollm2_instruct.jinja")), ToolFormat::kHermes);
  EXPECT_EQ(detect_tool_format(template_source("gemma3.jinja")), ToolFormat::kHermes);
  EXPECT_FALSE(template_supports_tools(template_source("gemma3.jinja")));
  EXPECT_TRUE(template_supports_tools("{% if tools %}x{% endif %}"));
  EXPECT_TRUE(template_supports_tools("{% for t in tools %}{{ t | tojson }}{% endfor %}"));
  EXPECT_FALSE(template_supports_tools("{{ message.tools }}{{ 'tools' }} tools"));
  EXPECT_FALSE(template_supports_tools("{{ builtin_tools }}{{ tools_in_user_message }}"));
  EXPECT_FALSE(template_supports_tools("{% if tools"));  // does not lex
}

ojson weather_tool() {
  return ojson::parse(R"({"type": "function", "function": {"name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})");
}

TEST(ToolRender, InjectMergesIntoSystemMessage) {
  ojson tools = ojson::array({weather_tool()});
  ojson msgs = ojson::parse(R"([{"role": "user", "content": "hi"}])");
  ojson out = inject_tools_system_prompt(msgs, tools, ToolFormat::kHermes);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0]["role"], "system");
  std::string sys = out[0]["content"];
  EXPECT_NE(sys.find("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", "
                     "\"parameters\": {\"type\": \"object\", \"properties\": {\"city\": "
                     "{\"type\": \"string\"}}}}}\n</tools>"),
            std::string::npos);
  EXPECT_NE(sys.find("<tool_call>"), std::string::npos);
  EXPECT_EQ(out[1], msgs[0]);

  ojson parts = ojson::parse(R"([{"role": "system", "content": [{"type": "text", "text": "S"}]}])");
  out = inject_tools_system_prompt(parts, tools, ToolFormat::kLlama3Json);
  ASSERT_EQ(out[0]["content"].size(), 2u);
  std::string added = out[0]["content"][1]["text"];
  EXPECT_EQ(added.rfind("\n\n# Tools", 0), 0u);
  EXPECT_NE(added.find("\"parameters\""), std::string::npos);
  EXPECT_EQ(added.find("<tool_call>"), std::string::npos);

  EXPECT_EQ(inject_tools_system_prompt(msgs, nullptr, ToolFormat::kHermes), msgs);
  EXPECT_EQ(inject_tools_system_prompt(msgs, ojson::array(), ToolFormat::kHermes), msgs);
}

TEST(ToolRender, PrepareRejectsMalformedMessages) {
  std::string qwen = template_source("qwen2_5_instruct.jinja");
  ojson bad_args = ojson::parse(R"([{"role": "assistant", "content": null, "tool_calls": [
      {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]}])");
  try {
    prepare_tool_messages(bad_args, nullptr, qwen, ToolFormat::kHermes);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("messages[0].tool_calls[0].function.arguments"),
              std::string::npos);
  }
  EXPECT_THROW(prepare_tool_messages(ojson::object(), nullptr, qwen, ToolFormat::kHermes), Error);
  EXPECT_THROW(prepare_tool_messages(ojson::array({1}), nullptr, qwen, ToolFormat::kHermes), Error);
  ojson calls_not_array = ojson::parse(R"([{"role": "assistant", "tool_calls": {"a": 1}}])");
  EXPECT_THROW(prepare_tool_messages(calls_not_array, nullptr, qwen, ToolFormat::kHermes), Error);
  ojson no_name = ojson::parse(R"([{"role": "assistant", "tool_calls": [{"function": {}}]}])");
  EXPECT_THROW(prepare_tool_messages(no_name, nullptr, qwen, ToolFormat::kHermes), Error);
}

// ---------------------------------------------------------------------------------------------
// Parsing

void expect_id(const std::string& id) {
  ASSERT_EQ(id.size(), 29u) << id;
  EXPECT_EQ(id.substr(0, 5), "call_");
  for (char c : id.substr(5)) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c))) << id;
}

TEST(ToolParse, HermesSingleCall) {
  auto p = parse_tool_calls(
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"n\": 2}}\n"
      "</tool_call>",
      ToolFormat::kHermes);
  EXPECT_EQ(p.content, "");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.calls[0].arguments, R"({"city":"Paris","n":2})");
  expect_id(p.calls[0].id);
}

TEST(ToolParse, HermesMultipleCallsAndContent) {
  auto p = parse_tool_calls(
      "Let me check both.\n<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"b\", \"arguments\": {\"s\": \"東京 }{\\\"]\"}}\n</tool_call>\n",
      ToolFormat::kHermes);
  EXPECT_EQ(p.content, "Let me check both.\n");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "a");
  EXPECT_EQ(p.calls[0].arguments, "{}");
  EXPECT_EQ(p.calls[1].name, "b");
  EXPECT_EQ(p.calls[1].arguments, R"({"s":"東京 }{\"]"})");
  EXPECT_NE(p.calls[0].id, p.calls[1].id);

  p = parse_tool_calls("A\n<tool_call>{\"name\": \"a\"}</tool_call>\n\nDone.", ToolFormat::kHermes);
  EXPECT_EQ(p.content, "A\nDone.");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].arguments, "{}");
}

TEST(ToolParse, HermesMalformedStaysContent) {
  const char* cases[] = {
      "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}\n</tool_call>",    // missing brace
      "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1,}}\n</tool_call>",  // bad JSON
      "<tool_call>\n{\"arguments\": {}}\n</tool_call>",                            // no name
      "<tool_call>\n{\"name\": 3, \"arguments\": {}}\n</tool_call>",       // name not string
      "<tool_call>\n{\"name\": \"f\", \"arguments\": [1]}\n</tool_call>",  // not an object
      "<tool_call>\nget_weather(city='Paris')\n</tool_call>",              // not JSON
      "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": ",            // cut off
      "Text </tool_call> and <tool_call",                                  // markers only
      "<tool_call>",
  };
  for (const char* text : cases) {
    auto p = parse_tool_calls(text, ToolFormat::kHermes);
    EXPECT_EQ(p.content, text);
    EXPECT_TRUE(p.calls.empty()) << text;
  }
  // A bad block, then a good one.
  auto p = parse_tool_calls(
      "<tool_call>\n{bad}\n</tool_call>\n<tool_call>\n{\"name\": \"g\", \"arguments\": "
      "\"{\\\"x\\\": true}\"}\n</tool_call>",
      ToolFormat::kHermes);
  EXPECT_EQ(p.content, "<tool_call>\n{bad}\n</tool_call>\n");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "g");
  EXPECT_EQ(p.calls[0].arguments, R"({"x":true})");  // arguments given as a JSON string
}

TEST(ToolParse, HermesUnclosedCompleteCallAndForcedPrefix) {
  auto p =
      parse_tool_calls("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": [1, {\"r\": null}]}}",
                       ToolFormat::kHermes);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].arguments, R"({"q":[1,{"r":null}]})");
  EXPECT_EQ(p.content, "");
  // What the server does for a forced call: the prefix, then the constrained JSON.
  p = parse_tool_calls(
      forced_call_prefix(ToolFormat::kHermes) + "{\"name\": \"f\", \"arguments\": {}}",
      ToolFormat::kHermes);
  ASSERT_EQ(p.calls.size(), 1u);
  p = parse_tool_calls(
      forced_call_prefix(ToolFormat::kLlama3Json) + "{\"name\": \"f\", \"parameters\": {\"a\": 1}}",
      ToolFormat::kLlama3Json);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].arguments, R"({"a":1})");
  // A cut-off close marker after a complete call is dropped.
  p = parse_tool_calls("<tool_call>{\"name\": \"f\"}\n</tool_", ToolFormat::kHermes);
  EXPECT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.content, "");
}

TEST(ToolParse, PlainTextIsContent) {
  for (auto f : {ToolFormat::kHermes, ToolFormat::kLlama3Json}) {
    auto p = parse_tool_calls("Hello, world! 1 < 2 and {braces} <tool", f);
    EXPECT_EQ(p.content, "Hello, world! 1 < 2 and {braces} <tool");
    EXPECT_TRUE(p.calls.empty());
    EXPECT_EQ(parse_tool_calls("", f).content, "");
  }
}

TEST(ToolParse, Llama3Json) {
  auto p = parse_tool_calls("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Oslo\"}}",
                            ToolFormat::kLlama3Json);
  EXPECT_EQ(p.content, "");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(p.calls[0].arguments, R"({"city":"Oslo"})");
  expect_id(p.calls[0].id);

  p = parse_tool_calls(
      "<|python_tag|>{\"name\": \"a\", \"parameters\": {\"x\": 1}}; {\"name\": \"b\", "
      "\"arguments\": {\"y\": [2]}}",
      ToolFormat::kLlama3Json);
  EXPECT_EQ(p.content, "");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].name, "a");
  EXPECT_EQ(p.calls[1].name, "b");
  EXPECT_EQ(p.calls[1].arguments, R"({"y":[2]})");

  p = parse_tool_calls("  \n{\"name\": \"a\", \"parameters\": {}}\n", ToolFormat::kLlama3Json);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.content, "");

  p = parse_tool_calls("Sure. <|python_tag|>{\"name\": \"a\", \"parameters\": {}}",
                       ToolFormat::kLlama3Json);
  EXPECT_EQ(p.content, "Sure. ");
  ASSERT_EQ(p.calls.size(), 1u);
}

TEST(ToolParse, Llama3JsonNotACall) {
  const char* cases[] = {
      " {\"answer\": 42}",                             // JSON, but not a call
      "{\"name\": \"a\", \"parameters\": {\"x\": }}",  // bad JSON
      "The call would be {\"name\": \"a\", \"parameters\": {}}",
      "<|python_tag|>brave_search.call(query=\"x\")",
      "<tool_call>\n{\"name\": \"a\", \"arguments\": {}}\n</tool_call>",
      "{\"name\": \"a\", \"parameters\": {\"x\": 1}",  // cut off
  };
  for (const char* text : cases) {
    auto p = parse_tool_calls(text, ToolFormat::kLlama3Json);
    EXPECT_EQ(p.content, text);
    EXPECT_TRUE(p.calls.empty()) << text;
  }
  auto p = parse_tool_calls("{\"name\": \"a\", \"parameters\": {}}; and then some words",
                            ToolFormat::kLlama3Json);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.content, "and then some words");
}

TEST(ToolParse, DeepNestingIsContent) {
  std::string text =
      "<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": " + std::string(5000, '[') +
      std::string(5000, ']') + "}}</tool_call>";
  auto p = parse_tool_calls(text, ToolFormat::kHermes);
  EXPECT_TRUE(p.calls.empty());
  EXPECT_EQ(p.content, text);
}

// ---------------------------------------------------------------------------------------------
// Streaming

struct Folded {
  std::string content;
  std::vector<ToolCall> calls;
};

void fold(std::vector<StreamDelta> deltas, Folded& f) {
  for (auto& d : deltas) {
    if (d.index < 0) {
      EXPECT_FALSE(d.content.empty());
      f.content += d.content;
    } else {
      EXPECT_EQ(d.index, static_cast<int>(f.calls.size()));
      expect_id(d.id);
      f.calls.push_back(ToolCall{d.id, d.name, d.arguments});
    }
  }
}

Folded stream(const std::vector<std::string>& pieces, ToolFormat format) {
  ToolCallStreamParser parser(format);
  Folded f;
  for (const auto& piece : pieces) fold(parser.push(piece), f);
  fold(parser.finish(), f);
  EXPECT_EQ(parser.saw_tool_call(), !f.calls.empty());
  return f;
}

void expect_same(const Folded& got, const ParsedOutput& want, const std::string& what) {
  EXPECT_EQ(got.content, want.content) << what;
  ASSERT_EQ(got.calls.size(), want.calls.size()) << what;
  for (size_t i = 0; i < want.calls.size(); ++i) {
    EXPECT_EQ(got.calls[i].name, want.calls[i].name) << what;
    EXPECT_EQ(got.calls[i].arguments, want.calls[i].arguments) << what;
  }
}

const std::vector<std::pair<std::string, ToolFormat>>& stream_texts() {
  static const std::vector<std::pair<std::string, ToolFormat>> texts = {
      {"Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": "
       "\"東京\", \"s\": \"a}b{\\\"c\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"search\", "
       "\"arguments\": {\"q\": \"</tool\"}}\n</tool_call>\n",
       ToolFormat::kHermes},
      {"<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}\n</tool_call> tail <tool_call>"
       "{\"name\": \"g\"}</tool_call>x<tool_",
       ToolFormat::kHermes},
      {"Plain answer with < and <tool and </tool_call> inside.", ToolFormat::kHermes},
      {"<tool_call>\n{\"name\": \"f\", \"arguments\": {}}\n</tool_call>Done <tool_call>\n{\"na",
       ToolFormat::kHermes},
      {"  <|python_tag|>{\"name\": \"a\", \"parameters\": {\"x\": \"}\"}}; {\"name\": \"b\", "
       "\"parameters\": {}} ; trailing",
       ToolFormat::kLlama3Json},
      {"\n{\"answer\": 42} and <|python_tag|>{\"name\": \"c\", \"parameters\": {}}",
       ToolFormat::kLlama3Json},
      {"<|python", ToolFormat::kLlama3Json},
      {"  ", ToolFormat::kLlama3Json},
  };
  return texts;
}

TEST(ToolStream, EverySplitPointMatchesWholeParse) {
  for (const auto& [text, format] : stream_texts()) {
    ParsedOutput want = parse_tool_calls(text, format);
    for (size_t i = 0; i <= text.size(); ++i) {
      expect_same(stream({text.substr(0, i), text.substr(i)}, format), want,
                  text + " split at " + std::to_string(i));
    }
    for (size_t i = 0; i <= text.size(); i += 3) {  // three pieces
      for (size_t j = i; j <= text.size(); j += 2) {
        expect_same(stream({text.substr(0, i), text.substr(i, j - i), text.substr(j)}, format),
                    want, text + " split at " + std::to_string(i) + "," + std::to_string(j));
      }
    }
    std::vector<std::string> bytes;
    for (char c : text) bytes.emplace_back(1, c);
    expect_same(stream(bytes, format), want, text + " byte by byte");
  }
}

TEST(ToolStream, ExpectedResultsOfStreamTexts) {
  auto p = parse_tool_calls(stream_texts()[0].first, ToolFormat::kHermes);
  EXPECT_EQ(p.content, "Let me check.\n");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[1].arguments, R"({"q":"</tool"})");
  p = parse_tool_calls(stream_texts()[1].first, ToolFormat::kHermes);
  EXPECT_EQ(p.content,
            "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1}\n</tool_call> tail x<tool_");
  ASSERT_EQ(p.calls.size(), 1u);
  p = parse_tool_calls(stream_texts()[3].first, ToolFormat::kHermes);
  EXPECT_EQ(p.content, "Done <tool_call>\n{\"na");
  ASSERT_EQ(p.calls.size(), 1u);
  p = parse_tool_calls(stream_texts()[4].first, ToolFormat::kLlama3Json);
  EXPECT_EQ(p.content, "trailing");
  ASSERT_EQ(p.calls.size(), 2u);
  EXPECT_EQ(p.calls[0].arguments, R"({"x":"}"})");
  p = parse_tool_calls(stream_texts()[5].first, ToolFormat::kLlama3Json);
  EXPECT_EQ(p.content, "\n{\"answer\": 42} and ");
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(parse_tool_calls("<|python", ToolFormat::kLlama3Json).content, "<|python");
  EXPECT_EQ(parse_tool_calls("  ", ToolFormat::kLlama3Json).content, "  ");
}

TEST(ToolStream, RandomSplits) {
  std::mt19937 rng(7);
  for (const auto& [text, format] : stream_texts()) {
    ParsedOutput want = parse_tool_calls(text, format);
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<std::string> pieces;
      for (size_t pos = 0; pos < text.size();) {
        size_t n = std::uniform_int_distribution<size_t>(1, 8)(rng);
        pieces.push_back(text.substr(pos, n));
        pos += n;
      }
      expect_same(stream(pieces, format), want, text + " random");
    }
  }
}

// Random texts made of marker and JSON fragments: never a crash, and any split gives the
// whole-text result.
TEST(ToolStream, RandomFragmentTexts) {
  const char* fragments[] = {"<tool_call>",
                             "</tool_call>",
                             "<|python_tag|>",
                             "{",
                             "}",
                             "[",
                             "]",
                             "\"",
                             "\\",
                             ":",
                             ",",
                             ";",
                             " ",
                             "\n",
                             "<",
                             "x",
                             "é",
                             "{\"name\": \"f\", \"arguments\": {\"a\": 1}}",
                             "{\"name\": \"g\", \"parameters\": {}}",
                             "\"name\"",
                             "\"arguments\"",
                             "<tool_",
                             "_call>",
                             "python_tag|>"};
  std::mt19937 rng(11);
  std::uniform_int_distribution<size_t> pick(0, std::size(fragments) - 1);
  int n_with_calls = 0;
  for (int trial = 0; trial < 400; ++trial) {
    std::string text;
    int n = std::uniform_int_distribution<int>(1, 14)(rng);
    for (int i = 0; i < n; ++i) text += fragments[pick(rng)];
    for (auto format : {ToolFormat::kHermes, ToolFormat::kLlama3Json}) {
      ParsedOutput want = parse_tool_calls(text, format);
      n_with_calls += !want.calls.empty();
      for (size_t i = 0; i <= text.size(); ++i) {
        expect_same(stream({text.substr(0, i), text.substr(i)}, format), want, text);
      }
      std::vector<std::string> bytes;
      for (char c : text) bytes.emplace_back(1, c);
      expect_same(stream(bytes, format), want, text + " byte by byte");
    }
  }
  EXPECT_GT(n_with_calls, 50);  // the generator does reach the call paths
}

TEST(ToolStream, ContentIsNotHeldBack) {
  ToolCallStreamParser p(ToolFormat::kHermes);
  auto d = p.push("Hello");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].content, "Hello");
  d = p.push(" wor<");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].content, " wor");  // "<" may begin <tool_call>
  d = p.push("b>");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].content, "<b>");
  d = p.push("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\"");
  EXPECT_TRUE(d.empty());
  d = p.push(": 1}}");  // the JSON is complete: the call goes out before </tool_call>
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].index, 0);
  EXPECT_EQ(d[0].name, "f");
  EXPECT_EQ(d[0].arguments, R"({"a":1})");
  EXPECT_TRUE(p.saw_tool_call());
  EXPECT_TRUE(p.push("\n</tool_call>\n").empty());
  EXPECT_TRUE(p.finish().empty());

  ToolCallStreamParser llama(ToolFormat::kLlama3Json);
  d = llama.push("Hi");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].content, "Hi");
  EXPECT_FALSE(llama.saw_tool_call());
}

// ---------------------------------------------------------------------------------------------
// Validation

void expect_invalid(const ojson& tools, const ojson& choice, const std::string& fragment) {
  try {
    validate_tools(tools, choice);
    ADD_FAILURE() << "accepted: " << tools.dump() << " / " << choice.dump();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(ToolValidate, AcceptsGoodRequests) {
  ojson tools = ojson::array(
      {weather_tool(),
       ojson::parse(
           R"({"type": "function", "function": {"name": "t2", "description": "d", "strict": true}})")});
  EXPECT_NO_THROW(validate_tools(tools, nullptr));
  for (const char* c : {"none", "auto", "required"}) EXPECT_NO_THROW(validate_tools(tools, c));
  EXPECT_NO_THROW(
      validate_tools(tools, ojson::parse(R"({"type": "function", "function": {"name": "t2"}})")));
  EXPECT_NO_THROW(validate_tools(ojson(), ojson()));
  EXPECT_NO_THROW(validate_tools(ojson(), ojson("none")));
  EXPECT_NO_THROW(validate_tools(nlohmann::json(tools), nlohmann::json("auto")));
}

TEST(ToolValidate, RejectsBadRequests) {
  auto tool = [](const char* fn) {
    return ojson::array(
        {ojson::parse(std::string(R"({"type": "function", "function": )") + fn + "}")});
  };
  expect_invalid(ojson::object(), nullptr, "tools must be an array");
  expect_invalid(ojson::array({1}), nullptr, "tools[0] must be an object");
  expect_invalid(ojson::parse(R"([{"type": "code", "function": {"name": "f"}}])"), nullptr,
                 "tools[0].type must be \"function\"");
  expect_invalid(ojson::parse(R"([{"type": "function"}])"), nullptr,
                 "tools[0].function must be an object");
  expect_invalid(tool(R"({"name": ""})"), nullptr,
                 "tools[0].function.name must be a non-empty string");
  expect_invalid(tool(R"({"name": 5})"), nullptr, "function.name must be a non-empty string");
  expect_invalid(tool(R"({"name": "f", "description": 1})"), nullptr,
                 "description must be a string");
  expect_invalid(tool(R"({"name": "f", "parameters": "x"})"), nullptr,
                 "parameters must be an object");
  ojson dup = ojson::array({weather_tool(), weather_tool()});
  expect_invalid(dup, nullptr, "tools[1].function.name \"get_weather\" is a duplicate");
  ojson deep = ojson::object();
  for (int i = 0; i < 100; ++i) deep = ojson{{"a", deep}};
  ojson deep_tool =
      ojson::array({{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", deep}}}}});
  expect_invalid(deep_tool, nullptr, "nests deeper");

  ojson tools = ojson::array({weather_tool()});
  expect_invalid(tools, "sometimes", "tool_choice must be");
  expect_invalid(tools, 3, "tool_choice must be");
  expect_invalid(tools, ojson::parse(R"({"type": "function"})"), "tool_choice must be");
  expect_invalid(tools, ojson::parse(R"({"type": "function", "function": {"name": "nope"}})"),
                 "tool_choice names the function \"nope\", which is not in tools");
  expect_invalid(nullptr, "required", "needs at least one tool");
  expect_invalid(ojson::array(), "required", "needs at least one tool");
  expect_invalid(nullptr, ojson::parse(R"({"type": "function", "function": {"name": "f"}})"),
                 "not in tools");
}

// ---------------------------------------------------------------------------------------------
// Forced calls

TEST(ToolSchema, NamedAndRequired) {
  ojson tools = ojson::array(
      {weather_tool(), ojson::parse(R"({"type": "function", "function": {"name": "noargs"}})")});
  ojson named = forced_call_schema(
      tools, ojson::parse(R"({"type": "function", "function": {"name": "get_weather"}})"),
      ToolFormat::kHermes);
  ojson want = ojson::parse(R"({"type": "object", "properties": {"name": {"const": "get_weather"},
      "arguments": {"type": "object", "properties": {"city": {"type": "string"}}}},
      "required": ["name", "arguments"], "additionalProperties": false})");
  EXPECT_EQ(named.dump(), want.dump());  // key order included: "name" first

  ojson required = forced_call_schema(tools, "required", ToolFormat::kLlama3Json);
  ASSERT_TRUE(required.contains("anyOf"));
  ASSERT_EQ(required["anyOf"].size(), 2u);
  EXPECT_EQ(required["anyOf"][0]["properties"]["name"]["const"], "get_weather");
  EXPECT_EQ(required["anyOf"][1]["properties"]["name"]["const"], "noargs");
  EXPECT_EQ(required["anyOf"][1]["properties"]["parameters"], ojson({{"type", "object"}}));
  EXPECT_EQ(required["anyOf"][1]["required"], ojson::parse(R"(["name", "parameters"])"));

  ojson one = forced_call_schema(ojson::array({weather_tool()}), "required", ToolFormat::kHermes);
  EXPECT_EQ(one.dump(), want.dump());
  nlohmann::json converted =
      forced_call_schema(nlohmann::json(tools), nlohmann::json("required"), ToolFormat::kHermes);
  EXPECT_TRUE(converted.contains("anyOf"));

  EXPECT_THROW(forced_call_schema(tools, "auto", ToolFormat::kHermes), Error);
  EXPECT_THROW(forced_call_schema(tools, nullptr, ToolFormat::kHermes), Error);
  EXPECT_THROW(forced_call_schema(ojson::array(), "required", ToolFormat::kHermes), Error);
  EXPECT_TRUE(tool_choice_forces_call("required"));
  EXPECT_FALSE(tool_choice_forces_call("auto"));
  EXPECT_FALSE(tool_choice_forces_call(nullptr));
}

TEST(ToolSchema, DefinitionsMoveToTheRoot) {
  ojson tools = ojson::parse(R"([
    {"type": "function", "function": {"name": "a", "parameters": {"type": "object",
      "properties": {"p": {"$ref": "#/$defs/Point"}}, "$defs": {"Point": {"type": "object",
      "properties": {"x": {"type": "number"}, "next": {"$ref": "#/$defs/Point"}}}}}}},
    {"type": "function", "function": {"name": "b", "parameters": {"type": "object",
      "properties": {"p": {"$ref": "#/definitions/Point"}, "self": {"$ref": "#"}},
      "definitions": {"Point": {"type": "string"}}}}}])");
  ojson s = forced_call_schema(tools, "required", ToolFormat::kHermes);
  ASSERT_TRUE(s.contains("$defs"));
  EXPECT_EQ(s["$defs"]["t0_Point"]["properties"]["next"]["$ref"], "#/$defs/t0_Point");
  EXPECT_EQ(s["$defs"]["t1_Point"], ojson({{"type", "string"}}));
  EXPECT_EQ(s["anyOf"][0]["properties"]["arguments"]["properties"]["p"]["$ref"],
            "#/$defs/t0_Point");
  EXPECT_FALSE(s["anyOf"][0]["properties"]["arguments"].contains("$defs"));
  // A ref to the tool's own root: the whole parameters schema becomes a definition.
  EXPECT_EQ(s["anyOf"][1]["properties"]["arguments"], ojson({{"$ref", "#/$defs/t1"}}));
  EXPECT_EQ(s["$defs"]["t1"]["properties"]["p"]["$ref"], "#/$defs/t1_Point");
  EXPECT_EQ(s["$defs"]["t1"]["properties"]["self"]["$ref"], "#/$defs/t1");
  EXPECT_FALSE(s["$defs"]["t1"].contains("definitions"));
}

TEST(ToolSchema, Prefix) {
  EXPECT_EQ(forced_call_prefix(ToolFormat::kHermes), "<tool_call>\n");
  EXPECT_EQ(forced_call_prefix(ToolFormat::kLlama3Json), "");
}

TEST(ToolIds, FormatAndUniqueness) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    std::string id = make_tool_call_id();
    expect_id(id);
    ids.insert(id);
  }
  EXPECT_EQ(ids.size(), 1000u);
}

}  // namespace
}  // namespace jinx
