// Byte-level matcher: verdicts of the `jsonschema` package (tests/fixtures/structured, written
// by tools/make_structured_fixtures.py), prefix viability tables, completion, bad schemas.
#include <cstdlib>
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

// Some completion of s exists within `depth` more bytes of `alphabet` (depth-first).
bool completable(const JsonMatcher& m, const MatchState& s, const std::string& alphabet,
                 int depth) {
  if (m.complete(s)) return true;
  if (depth == 0) return false;
  MatchState next;
  for (char c : alphabet) {
    if (m.step(s, static_cast<uint8_t>(c), &next) && completable(m, next, alphabet, depth - 1))
      return true;
  }
  return false;
}

// Integers under minimum / maximum: exactly the integers in range are accepted (checked over a
// window around the bounds), and every state the matcher lets a prefix reach can still be
// completed (bounds must never lead generation into a dead end).
TEST(JsonMatcher, BoundedIntegersExactly) {
  struct B {
    const char* schema;
    long long lo, hi;  // inclusive; +-1e18 for none
  };
  constexpr long long kNone = 1'000'000'000'000'000'000;
  const B cases[] = {
      {R"({"type":"integer","minimum":-5,"maximum":120})", -5, 120},
      {R"({"type":"integer","minimum":0,"maximum":0})", 0, 0},
      {R"({"type":"integer","minimum":-100,"maximum":-7})", -100, -7},
      {R"({"type":"integer","exclusiveMinimum":7})", 8, kNone},
      {R"({"type":"integer","exclusiveMaximum":-3})", -kNone, -4},
      {R"({"type":"integer","minimum":-2.5,"exclusiveMaximum":9.5})", -2, 9},
      {R"({"type":"integer","minimum":95,"maximum":105})", 95, 105},
      {R"({"type":"integer","minimum":10,"exclusiveMinimum":12,"maximum":30,"exclusiveMaximum":31})", 13, 30},
  };
  for (const B& b : cases) {
    SCOPED_TRACE(b.schema);
    const auto g = JsonGrammar::from_schema_text(b.schema);
    const JsonMatcher m(*g);
    for (long long i = -1200; i <= 1200; ++i) {
      ASSERT_EQ(m.accepts(std::to_string(i)), i >= b.lo && i <= b.hi) << i;
    }
    EXPECT_EQ(m.accepts("123456789012345678"), b.hi == kNone);
    EXPECT_FALSE(m.accepts("1e2"));
    // Every reachable prefix of up to 4 bytes stays completable.
    std::vector<MatchState> frontier = {m.initial()};
    for (int len = 0; len < 4; ++len) {
      std::vector<MatchState> next_frontier;
      for (const MatchState& s : frontier) {
        ASSERT_TRUE(completable(m, s, "-0123456789", 20)) << "dead end after a prefix";
        MatchState n;
        for (char c : std::string("-0123456789.e")) {
          if (m.step(s, static_cast<uint8_t>(c), &n)) next_frontier.push_back(n);
        }
      }
      frontier = std::move(next_frontier);
    }
  }
}

// Numbers under integer bounds: checked against the decimal value of each text.
TEST(JsonMatcher, BoundedNumbers) {
  const char* texts[] = {"0",   "-0",    "0.5",  "1",     "1.0",  "1.00001", "0.99999", "-0.5",
                         "2",   "-2",    "-2.0", "-2.01", "-1.99", "10",      "9.999",   "10.0",
                         "10.5", "-10",  "-10.0", "-10.01", "3.25", "0.000", "0.001"};
  struct B {
    const char* schema;
    bool (*in)(long double);
  };
  const B cases[] = {
      {R"({"type":"number","minimum":0,"maximum":1})", [](long double x) { return x >= 0 && x <= 1; }},
      {R"({"type":"number","exclusiveMinimum":0})", [](long double x) { return x > 0; }},
      {R"({"type":"number","minimum":-10,"exclusiveMaximum":-2})",
       [](long double x) { return x >= -10 && x < -2; }},
      {R"({"type":"number","exclusiveMinimum":-2,"maximum":10})",
       [](long double x) { return x > -2 && x <= 10; }},
  };
  for (const B& b : cases) {
    SCOPED_TRACE(b.schema);
    const auto g = JsonGrammar::from_schema_text(b.schema);
    const JsonMatcher m(*g);
    for (const char* t : texts) EXPECT_EQ(m.accepts(t), b.in(std::strtold(t, nullptr))) << t;
    EXPECT_FALSE(m.accepts("1e0"));  // no exponents under bounds
    std::vector<MatchState> frontier = {m.initial()};
    for (int len = 0; len < 4; ++len) {
      std::vector<MatchState> next_frontier;
      for (const MatchState& s : frontier) {
        ASSERT_TRUE(completable(m, s, "-0123456789.", 22)) << "dead end after a prefix";
        MatchState n;
        for (char c : std::string("-0125689.")) {
          if (m.step(s, static_cast<uint8_t>(c), &n)) next_frontier.push_back(n);
        }
      }
      frontier = std::move(next_frontier);
    }
  }
}

TEST(JsonMatcher, DeepNestingIsBounded) {
  const auto g = JsonGrammar::from_schema_text(R"({"type":"array"})");
  const JsonMatcher m(*g);
  EXPECT_TRUE(alive(m, std::string(JsonMatcher::kMaxDepth, '[')));
  EXPECT_FALSE(alive(m, std::string(JsonMatcher::kMaxDepth + 1, '[')));
}

TEST(JsonGrammar, BadSchemasThrowNamingTheProblem) {
  const std::vector<std::pair<const char*, const char*>> bad = {
      {R"({"type":"string","pattern":"(a"})", "pattern"},
      {R"({"type":"string","pattern":"(?=a)b"})", "lookaround"},
      {R"({"type":"string","pattern":"^\"$"})", "no text"},
      {R"({"type":"string","pattern":"^(a|b)*a(a|b){14}$"})", "too complex"},
      {R"({"type":"string","pattern":5})", "'pattern' must be a string"},
      {R"({"type":"string","format":"date","pattern":"a"})", "both 'pattern' and 'format'"},
      {R"({"type":"number","minimum":0.5})", "bounds of a number must be integers"},
      {R"({"type":"integer","minimum":3,"maximum":2})", "no integer lies within"},
      {R"({"type":"integer","minimum":2.5,"maximum":2.7})", "no integer lies within"},
      {R"({"type":"number","minimum":2,"exclusiveMaximum":2})", "no number lies within"},
      {R"({"type":"integer","minimum":1e19})", "18 digits"},
      {R"({"type":"integer","exclusiveMinimum":true})", "without 'minimum'"},
      {R"({"type":"integer","minimum":"1"})", "must be a number"},
      {R"({"type":"integer","multipleOf":2})", "multipleOf"},
      {R"({"allOf":[{"type":"string"},{"maxLength":3}]})", "allOf"},
      {R"({"allOf":[{"type":"string"}],"maxLength":3})", "beside"},
      {R"({"not":{"type":"string"}})", "not"},
      {R"({"type":"array","uniqueItems":true})", "uniqueItems"},
      {R"({"type":"object","properties":{"a":{"type":"string","pattern":"\\1"}}})", "/properties/a"},
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
