// Byte-level matcher: verdicts of the `jsonschema` package (tests/fixtures/structured, written
// by tools/make_structured_fixtures.py), prefix viability tables, completion, bad schemas.
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/check.h"
#include "structured/json_grammar.h"
#include "structured/json_matcher.h"

namespace jinx {
namespace {

using ojson = nlohmann::ordered_json;

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  }
  return out;
}

ojson load_verdicts() {
  std::ifstream f(std::string(JINX_FIXTURES) + "/structured/verdicts.json");
  EXPECT_TRUE(f.good()) << "run tools/make_structured_fixtures.py";
  std::stringstream ss;
  ss << f.rdbuf();
  return ojson::parse(ss.str());
}

// For documents in Jinx's output policy the matcher agrees with jsonschema; documents outside
// it (extra whitespace, other key order, ...) are rejected although jsonschema accepts them.
TEST(JsonMatcher, AgreesWithJsonschemaVerdicts) {
  const ojson cases = load_verdicts();
  ASSERT_GE(cases.size(), 20u);
  size_t n_docs = 0, n_valid = 0, n_invalid = 0;
  for (const auto& c : cases) {
    const auto g = JsonGrammar::from_schema(c["schema"]);
    const JsonMatcher m(*g);
    for (const auto& d : c["docs"]) {
      const std::string doc = from_hex(d["hex"].get<std::string>());
      const bool valid = d["valid"].get<bool>(), policy = d["policy"].get<bool>();
      const bool want = policy && valid;
      EXPECT_EQ(m.accepts(doc), want) << c["name"].get<std::string>() << ": " << doc
                                      << (policy ? "" : " (outside the output policy)");
      ++n_docs;
      (policy && valid ? n_valid : n_invalid) += 1;
    }
  }
  EXPECT_GE(n_docs, 150u);
  EXPECT_GE(n_valid, 60u);
  EXPECT_GE(n_invalid, 60u);
}

// Whether `prefix` can still be continued to an accepted document.
bool alive(const JsonMatcher& m, std::string_view prefix) {
  MatchState s = m.initial();
  return m.feed(&s, prefix);
}

struct PrefixCase {
  const char* schema;
  const char* prefix;
  bool alive;
};

TEST(JsonMatcher, PrefixTable) {
  const PrefixCase cases[] = {
      {R"({"type":"string","maxLength":2})", R"("ab)", true},
      {R"({"type":"string","maxLength":2})", R"("abc)", false},
      {R"({"type":"string","maxLength":2})", R"("a\n)", true},
      {R"({"type":"string","maxLength":2})", R"("a\n\)", false},
      {R"({"type":"string"})", "\"\xe2\x82", true},     // mid-character
      {R"({"type":"string"})", "\"\xe2\x82\"", false},  // truncated character
      {R"({"type":"string"})", R"("\uD83D)", true},
      {R"({"type":"string"})", R"("\uD83D\uDE0)", true},
      {R"({"type":"string"})", R"("\uD83D\u00)", false},
      {R"({"type":"string"})", R"("\uDC)", false},
      {R"({"type":"integer"})", "-", true},
      {R"({"type":"integer"})", "1.", false},
      {R"({"type":"number"})", "1.", true},
      {R"({"type":"number"})", "1e-", true},
      {R"({"type":"number"})", "123456789012345678", true},
      {R"({"type":"number"})", "1234567890123456789", false},
      {R"({"type":"object","properties":{"name":{"type":"string"}},"required":["name"]})",
       R"({"na)", true},
      {R"({"type":"object","properties":{"name":{"type":"string"}},"required":["name"]})", R"({"x)",
       false},
      {R"({"type":"object","properties":{"name":{"type":"string"}},"required":["name"]})", R"({})",
       false},
      {R"({"type":"object","properties":{"a":{},"b":{}},"required":["b"]})", R"({"b)", true},
      {R"({"type":"object","properties":{"a":{},"b":{}},"required":["b"]})", R"({"b":1,"a)", false},
      {R"({"type":"object","properties":{"a":{}}})", R"({"a":1, )", false},
      {R"({"type":"object","properties":{"a":{},"b":{}}})", R"({"a":1, )", true},
      {R"({"type":"object","properties":{"a":{},"b":{}}})", R"({"a":1,  )", false},
      {R"({"type":"array","maxItems":1})", "[1,", false},
      {R"({"type":"array","minItems":2})", "[1]", false},
      {R"({"enum":["abc","abd"]})", R"("ab)", true},
      {R"({"enum":["abc","abd"]})", R"("abe)", false},
      {R"({"type":"boolean"})", "t", true},
      {R"({"type":"boolean"})", "n", false},
      {R"({"anyOf":[{"type":"integer"},{"type":"array","items":{"type":"string"}}]})", "[\"", true},
      {R"({"anyOf":[{"type":"integer"},{"type":"array","items":{"type":"string"}}]})", "[1", false},
  };
  for (const auto& c : cases) {
    const auto g = JsonGrammar::from_schema_text(c.schema);
    EXPECT_EQ(alive(JsonMatcher(*g), c.prefix), c.alive) << c.schema << " | " << c.prefix;
  }
}

TEST(JsonMatcher, KeepsSchemaPropertyOrder) {
  const char* schema = R"({"type":"object","properties":{"z":{"type":"integer"},
      "a":{"type":"integer"}},"required":["z","a"],"additionalProperties":false})";
  const auto g = JsonGrammar::from_schema_text(schema);
  const JsonMatcher m(*g);
  EXPECT_TRUE(m.accepts(R"({"z":1,"a":2})"));
  EXPECT_FALSE(m.accepts(R"({"a":2,"z":1})"));
  // nlohmann::json sorts keys: the same schema through it emits "a" first.
  const auto sorted = JsonGrammar::from_schema(nlohmann::json::parse(schema));
  EXPECT_TRUE(JsonMatcher(*sorted).accepts(R"({"a":2,"z":1})"));
}

TEST(JsonMatcher, CompleteAndContinue) {
  const auto num = JsonGrammar::from_schema_text(R"({"type":"integer"})");
  const JsonMatcher mn(*num);
  MatchState s = mn.initial();
  EXPECT_FALSE(mn.complete(s));
  ASSERT_TRUE(mn.feed(&s, "12"));
  EXPECT_TRUE(mn.complete(s));
  EXPECT_TRUE(mn.can_continue(s));  // more digits

  const auto obj = JsonGrammar::any_object();
  const JsonMatcher mo(*obj);
  s = mo.initial();
  EXPECT_FALSE(mo.feed(&s, "[]"));  // json_object: objects only
  ASSERT_TRUE(mo.feed(&s, R"({"a":[1,{"b":null}]})"));
  EXPECT_TRUE(mo.complete(s));
  EXPECT_FALSE(mo.can_continue(s));
  MatchState before = s;
  EXPECT_FALSE(mo.feed(&s, " "));  // no trailing whitespace; state unchanged on failure
  EXPECT_EQ(s.key(), before.key());

  const auto e = JsonGrammar::from_schema_text(R"({"enum":[1,10]})");
  const JsonMatcher me(*e);
  s = me.initial();
  ASSERT_TRUE(me.feed(&s, "1"));
  EXPECT_TRUE(me.complete(s));
  EXPECT_TRUE(me.can_continue(s));
  ASSERT_TRUE(me.feed(&s, "0"));
  EXPECT_TRUE(me.complete(s));
  EXPECT_FALSE(me.can_continue(s));
}

TEST(JsonMatcher, DeepNestingIsBounded) {
  const auto g = JsonGrammar::from_schema_text(R"({"type":"array"})");
  const JsonMatcher m(*g);
  EXPECT_TRUE(alive(m, std::string(JsonMatcher::kMaxDepth, '[')));
  EXPECT_FALSE(alive(m, std::string(JsonMatcher::kMaxDepth + 1, '[')));
}

TEST(JsonGrammar, BadSchemasThrowNamingTheProblem) {
  const std::vector<std::pair<const char*, const char*>> bad = {
      {R"({"type":"string","pattern":"a+"})", "pattern"},
      {R"({"type":"string","format":"date"})", "format"},
      {R"({"type":"integer","minimum":0})", "minimum"},
      {R"({"allOf":[{"type":"string"}]})", "allOf"},
      {R"({"not":{"type":"string"}})", "not"},
      {R"({"type":"array","uniqueItems":true})", "uniqueItems"},
      {R"({"type":"object","properties":{"a":{"type":"string","pattern":"x"}}})", "pattern"},
      {R"({"type":"foo"})", "unknown type"},
      {R"({"type":[]})", "type"},
      {R"({"type":"string","minLength":-1})", "minLength"},
      {R"({"type":"string","maxLength":1.5})", "maxLength"},
      {R"({"type":"string","minLength":3,"maxLength":2})", "minLength > maxLength"},
      {R"({"type":"array","minItems":3,"maxItems":2})", "minItems > maxItems"},
      {R"({"type":"array","prefixItems":[{}],"items":false,"minItems":2})", "minItems"},
      {R"({"type":"array","items":[{}]})", "prefixItems"},
      {R"({"$ref":"#/$defs/missing"})", "does not resolve"},
      {R"({"$ref":"https://example.com/s.json"})", "local $ref"},
      {R"({"$defs":{"a":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"})", "recursion"},
      {R"({"anyOf":[{"$ref":"#"},{"type":"null"}]})", "recursion"},
      {R"({"anyOf":[]})", "anyOf"},
      {R"({"anyOf":[false]})", "false"},
      {R"({"enum":[]})", "enum"},
      {R"({"type":"string","enum":[1,2]})", "type"},
      {R"({"enum":[1],"const":2})", "const"},
      {R"({"enum":["a"],"maxLength":3})", "maxLength"},
      {R"({"type":"object","anyOf":[{"required":["a"]}]})", "beside"},
      {R"({"$ref":"#/$defs/a","type":"string","$defs":{"a":{}}})", "beside"},
      {R"(false)", "false"},
      {R"(3)", "schema"},
      {R"({"type":"object","additionalProperties":5})", "additionalProperties"},
      {R"({"type":"object","required":"a"})", "required"},
      {R"({"type":"object","required":["a","a"]})", "duplicate"},
      {R"({"type":"object","required":["x"],"additionalProperties":false})", "'x'"},
      {R"({"type":"object","properties":{"a":false},"required":["a"]})", "'a'"},
      {R"({"minLength":1,"items":{}})", "several types"},
      {R"({"type":"string")", "bad JSON"},
  };
  for (const auto& [schema, needle] : bad) {
    try {
      JsonGrammar::from_schema_text(schema);
      ADD_FAILURE() << "no error for " << schema;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
          << schema << " -> " << e.what();
    }
  }
}

TEST(JsonGrammar, AnnotationsAndRefsCompile) {
  const char* schema = R"({"title":"t","description":"d","$schema":"x","$defs":{
      "s":{"type":"string","default":"a","examples":["b"]}},
      "type":"object","properties":{"a":{"$ref":"#/$defs/s"},"b":{"$ref":"#/$defs/s"}},
      "required":["a","b"],"additionalProperties":false})";
  const auto g = JsonGrammar::from_schema_text(schema);
  EXPECT_TRUE(JsonMatcher(*g).accepts(R"({"a":"x","b":"y"})"));
  EXPECT_FALSE(JsonMatcher(*g).accepts(R"({"a":"x","b":1})"));
}

}  // namespace
}  // namespace jinx
