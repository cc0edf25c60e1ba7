// Chat template interpreter: byte-identical rendering against Python jinja2 (fixtures made by
// tools/make_template_fixtures.py with transformers' own compile function), syntax errors with
// jinja2's line numbers, and limits that stop hostile templates.
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <set>
#include <sstream>

#include "tokenizer/template.h"

namespace jinx {
namespace {

const std::string kDir = std::string(JINX_FIXTURES) + "/templates/";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  EXPECT_TRUE(f.good()) << path;
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

const nlohmann::ordered_json& cases() {
  static const nlohmann::ordered_json kCases =
      nlohmann::ordered_json::parse(read_file(kDir + "cases.json"));
  return kCases;
}

std::vector<size_t> case_indices() {
  std::vector<size_t> idx;
  for (size_t k = 0; k < cases().size(); ++k) idx.push_back(k);
  return idx;
}

class JinjaParity : public ::testing::TestWithParam<size_t> {};

TEST_P(JinjaParity, MatchesPythonJinja2) {
  const auto& c = cases()[GetParam()];
  SCOPED_TRACE(c["name"].get<std::string>());
  std::string source = c.contains("template") ? read_file(kDir + c["template"].get<std::string>())
                                              : c["source"].get<std::string>();
  if (c.contains("syntax_error")) {
    try {
      ChatTemplate tpl(source);
      FAIL() << "expected a syntax error";
    } catch (const Error& e) {
      const auto& lineno = c["syntax_error"]["lineno"];
      if (!lineno.is_null()) {
        std::string want = "template line " + std::to_string(lineno.get<int>()) + ":";
        EXPECT_EQ(std::string(e.what()).rfind(want, 0), 0u) << e.what();
      }
    }
    return;
  }
  ChatTemplate tpl(source);
  if (c.contains("error")) {
    try {
      std::string out = tpl.render(c["context"]);
      FAIL() << "expected an error, got: " << out;
    } catch (const Error& e) {
      // raise_exception's message comes back unchanged; other errors name the line.
      if (c["error"]["type"] == "TemplateError") {
        EXPECT_EQ(std::string(e.what()), c["error"]["message"].get<std::string>());
      } else {
        EXPECT_EQ(std::string(e.what()).rfind("template line ", 0), 0u) << e.what();
      }
    }
    return;
  }
  std::string expected = c["expected"].get<std::string>();
  if (c.contains("fixed_today")) {
    // The reference rendered strftime_now("%Y-%m-%d") on a fixed day (gpt-oss's "Current
    // date"); ours reads the clock, so today stands in for that day.
    const std::string fixed = c["fixed_today"].get<std::string>();
    const std::string today = ChatTemplate("{{ strftime_now('%Y-%m-%d') }}")
                                  .render(nlohmann::ordered_json::object());
    for (size_t at = expected.find(fixed); at != std::string::npos;
         at = expected.find(fixed, at + today.size()))
      expected.replace(at, fixed.size(), today);
  }
  EXPECT_EQ(tpl.render(c["context"]), expected);
}

std::string case_name(const ::testing::TestParamInfo<size_t>& info) {
  std::string name = cases()[info.param]["name"].get<std::string>();
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name + "_" + std::to_string(info.param);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, JinjaParity, ::testing::ValuesIn(case_indices()), case_name);

TEST(ChatTemplate, FixturesCoverRealTemplates) {
  std::set<std::string> templates;
  size_t rendered = 0;
  for (const auto& c : cases()) {
    if (c.contains("template")) templates.insert(c["template"].get<std::string>());
    if (c.contains("expected")) ++rendered;
  }
  EXPECT_GE(templates.size(), 6u);
  EXPECT_GE(rendered, 150u);
}

TEST(ChatTemplate, RaiseExceptionPropagatesMessage) {
  ChatTemplate tpl("{% if x %}{{ raise_exception('bad ' ~ x) }}{% endif %}");
  try {
    tpl.render(nlohmann::json{{"x", 3}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "bad 3");
  }
  EXPECT_EQ(tpl.render(nlohmann::json{{"x", 0}}), "");
}

TEST(ChatTemplate, RuntimeErrorsNameTheLine) {
  ChatTemplate tpl("line one\n{{ 'ok' }}\n{{ missing.attr }}\n");
  try {
    tpl.render(nlohmann::json::object());
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "template line 3: 'missing' is undefined");
  }
}

TEST(ChatTemplate, SyntaxErrorsNameTheLine) {
  EXPECT_THROW(ChatTemplate("a\n\n{% if %}"), Error);
  try {
    ChatTemplate tpl("a\nb\n{% for x in y %}\n{% endif %}");
    FAIL();
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("template line 4:", 0), 0u) << e.what();
  }
  for (const char* bad : {"{% extends 'x' %}", "{% include 'x' %}", "{% import 'x' as y %}",
                          "{% call m() %}{% endcall %}", "{{ x | nosuchfilter }}", "{{ 1 +* 2 }}",
                          "{% for x in y recursive %}{% endfor %}", "{{ 99999999999999999999 }}"}) {
    EXPECT_THROW(ChatTemplate{bad}, Error) << bad;
  }
}

TEST(ChatTemplate, LoopBombIsStopped) {
  ChatTemplate tpl(
      "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}");
  try {
    tpl.render(nlohmann::json::object());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("iteration limit"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, RecursionBombIsStopped) {
  ChatTemplate tpl("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
  try {
    tpl.render(nlohmann::json::object());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("call depth"), std::string::npos) << e.what();
  }
}

TEST(ChatTemplate, OutputBombIsStopped) {
  TemplateLimits limits;
  limits.max_output_bytes = 1 << 20;
  ChatTemplate doubling(
      "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
      "{% endfor %}{{ ns.s }}",
      limits);
  EXPECT_THROW(doubling.render(nlohmann::json::object()), Error);
  ChatTemplate repeat("{{ 'x' * 100000000 }}", limits);
  EXPECT_THROW(repeat.render(nlohmann::json::object()), Error);
  ChatTemplate lists(
      "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}"
      "{% endfor %}",
      limits);
  EXPECT_THROW(lists.render(nlohmann::json::object()), Error);
  ChatTemplate text("{% for i in range(100000) %}0123456789abcdef{% endfor %}", limits);
  EXPECT_THROW(text.render(nlohmann::json::object()), Error);
}

TEST(ChatTemplate, DeepNestingIsRejectedNotCrashing) {
  std::string deep = "{{ " + std::string(5000, '(') + "1" + std::string(5000, ')') + " }}";
  EXPECT_THROW(ChatTemplate{deep}, Error);
  std::string nots = "{{ " + std::string(0, ' ');
  for (int k = 0; k < 5000; ++k) nots += "not ";
  EXPECT_THROW(ChatTemplate{nots + "x }}"}, Error);
  std::string ifs;
  for (int k = 0; k < 3000; ++k) ifs += "{% if x %}";
  EXPECT_THROW(ChatTemplate{ifs}, Error);
  ChatTemplate self_ref("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}");
  EXPECT_THROW(self_ref.render(nlohmann::json::object()), Error);
}

TEST(ChatTemplate, FallbackIsChatML) {
  ChatTemplate tpl(fallback_chat_template());
  nlohmann::ordered_json ctx = {{"messages", {{{"role", "user"}, {"content", "hi"}}}},
                                {"add_generation_prompt", true}};
  EXPECT_EQ(tpl.render(ctx), "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
  ctx["add_generation_prompt"] = false;
  EXPECT_EQ(tpl.render(ctx), "<|im_start|>user\nhi<|im_end|>\n");
}

TEST(ChatTemplate, TransformersDefaultsForMissingKeys) {
  ChatTemplate tpl("{{ tools is none }}{{ documents is none }}{{ add_generation_prompt }}");
  EXPECT_EQ(tpl.render(nlohmann::json::object()), "TrueTrueFalse");
  EXPECT_THROW(tpl.render(nlohmann::json::array()), Error);
}

TEST(ChatTemplate, KeyOrderFollowsTheContext) {
  ChatTemplate tpl("{{ d | tojson }}");
  nlohmann::ordered_json ordered = {{"d", {{"b", 1}, {"a", 2}}}};
  EXPECT_EQ(tpl.render(ordered), "{\"b\": 1, \"a\": 2}");
  nlohmann::json sorted = {{"d", {{"b", 1}, {"a", 2}}}};
  EXPECT_EQ(tpl.render(sorted), "{\"a\": 2, \"b\": 1}");
}

// Hostile input: random bytes and mutated real templates must parse/render or throw Error.
TEST(ChatTemplate, FuzzedTemplatesNeverCrash) {
  std::mt19937 rng(1234);
  std::vector<std::string> seeds;
  for (const char* f :
       {"qwen3.jinja", "llama3_1_instruct.jinja", "gemma3.jinja", "qwen2_5_instruct.jinja"}) {
    seeds.push_back(read_file(kDir + f));
  }
  const auto& context = cases()[0]["context"];
  const std::string alphabet = "{}%#-+()[]|.,:'\"\\ \nabcxyz0123456789=<>!~*/";
  TemplateLimits limits;
  limits.max_loop_iterations = 20000;
  limits.max_output_bytes = 1 << 20;
  int n_ok = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string src;
    if (iter % 3 == 0) {
      size_t len = rng() % 64;
      for (size_t k = 0; k < len; ++k) src += alphabet[rng() % alphabet.size()];
    } else {
      src = seeds[rng() % seeds.size()];
      int n_mut = 1 + static_cast<int>(rng() % 4);
      for (int m = 0; m < n_mut && !src.empty(); ++m) {
        size_t pos = rng() % src.size();
        switch (rng() % 3) {
          case 0:
            src.erase(pos, 1 + rng() % 8);
            break;
          case 1:
            src.insert(pos, 1, alphabet[rng() % alphabet.size()]);
            break;
          default:
            src[pos] = static_cast<char>(rng() % 256);
        }
      }
    }
    try {
      ChatTemplate tpl(src, limits);
      tpl.render(context);
      ++n_ok;
    } catch (const Error&) {
    }
  }
  EXPECT_GT(n_ok, 0);
}

}  // namespace
}  // namespace jinx
