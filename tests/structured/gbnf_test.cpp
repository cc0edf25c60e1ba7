// GBNF grammars and regexes as constraints. The verdicts come from independent references
// (tools/make_grammar_fixtures.py: Python's re and lark parsers written per case), the masks
// are checked against feeding every token on its own, and random walks over the real SmolLM2
// vocabulary must end in sentences of the grammar.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "loader/gguf.h"
#include "structured/gbnf.h"
#include "structured/gbnf_constraint.h"
#include "structured/regex_grammar.h"
#include "tokenizer/tokenizer.h"
#include "../support/smollm2.h"

#include "../support/structured_fixtures.h"

namespace jinx {
namespace {

using json = nlohmann::json;

json load_fixture(const std::string& name) { return test::load_structured_fixture(name); }
using test::unhex;

bool accepts(const GbnfGrammar& g, std::string_view text) { return GbnfMatcher(g).accepts(text); }

std::string error_of(std::string_view grammar) {
  try {
    GbnfGrammar::parse(grammar);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Gbnf, BasicSyntax) {
  const auto g = GbnfGrammar::parse(R"g(
# a comment line
root ::= greeting ", " name ("!" | "?")?   # trailing comment
greeting ::= "hello" | "hi"
name ::= [A-Z] [a-z]*
)g");
  EXPECT_TRUE(accepts(*g, "hello, Bob!"));
  EXPECT_TRUE(accepts(*g, "hi, X"));
  EXPECT_FALSE(accepts(*g, "hi, bob"));
  EXPECT_FALSE(accepts(*g, "hi, Bob!!"));
  EXPECT_FALSE(accepts(*g, "hello,Bob"));
  EXPECT_FALSE(accepts(*g, ""));
}

TEST(Gbnf, RepetitionCounts) {
  const auto g = GbnfGrammar::parse(R"g(root ::= "a"{2} "b"{1,3} "c"{2,} "d"{0,1} "e"{,2})g");
  EXPECT_TRUE(accepts(*g, "aabcc"));
  EXPECT_TRUE(accepts(*g, "aabbbccccde"));
  EXPECT_TRUE(accepts(*g, "aabccee"));
  EXPECT_FALSE(accepts(*g, "abcc"));
  EXPECT_FALSE(accepts(*g, "aabbbbcc"));
  EXPECT_FALSE(accepts(*g, "aabc"));
  EXPECT_FALSE(accepts(*g, "aabccddd"));
  EXPECT_FALSE(accepts(*g, "aabcceee"));
}

TEST(Gbnf, MultiLineRulesAndGroups) {
  const auto g = GbnfGrammar::parse(
      "root ::= (\n  \"x\"\n  | \"y\"\n) item\n  | \"z\"\nitem ::= [0-9]+\n");
  EXPECT_TRUE(accepts(*g, "x12"));
  EXPECT_TRUE(accepts(*g, "y0"));
  EXPECT_TRUE(accepts(*g, "z"));
  EXPECT_FALSE(accepts(*g, "z1"));
}

TEST(Gbnf, Utf8AndEscapes) {
  const auto g = GbnfGrammar::parse(R"g(root ::= "é" [α-ω]+ "\x41\u00e9\U0001F600" [^a-z] .)g");
  EXPECT_TRUE(accepts(*g, "éαβAé\xF0\x9F\x98\x80Z\xE4\xB8\xAD"));
  EXPECT_FALSE(accepts(*g, "éαβAé\xF0\x9F\x98\x80zx"));
  // Overlong, surrogate and truncated forms are never accepted, even by `.`.
  const auto any = GbnfGrammar::parse("root ::= .*");
  EXPECT_TRUE(accepts(*any, "plain \xC3\xA9 \xF4\x8F\xBF\xBF"));
  EXPECT_FALSE(accepts(*any, "\xC0\xAF"));
  EXPECT_FALSE(accepts(*any, "\xE0\x80\xAF"));
  EXPECT_FALSE(accepts(*any, "\xED\xA0\x80"));
  EXPECT_FALSE(accepts(*any, "\xF4\x90\x80\x80"));
  EXPECT_FALSE(accepts(*any, "\xC3"));
  EXPECT_FALSE(accepts(*any, "\x80"));
}

TEST(Gbnf, RecursionNestsAndStacksStayBounded) {
  const auto g = GbnfGrammar::parse(R"g(
root ::= expr
expr ::= term (("+" | "-") term)*
term ::= factor (("*" | "/") factor)*
factor ::= [0-9]+ | "(" expr ")"
)g");
  EXPECT_TRUE(accepts(*g, "1+2*(3-4)/5"));
  EXPECT_TRUE(accepts(*g, "((((7))))"));
  EXPECT_FALSE(accepts(*g, "1+"));
  EXPECT_FALSE(accepts(*g, "(1"));
  EXPECT_FALSE(accepts(*g, "1)"));
  // A long repetition is a tail call: the stacks do not grow with it.
  const GbnfMatcher m(*g);
  GbnfState s = m.initial();
  std::string long_sum;
  for (int i = 0; i < 2000; ++i) long_sum += "1+";
  ASSERT_TRUE(m.feed(&s, long_sum));
  EXPECT_LT(s.frames.size(), 64u);
  // Nesting deeper than the matcher keeps is refused, not a crash.
  EXPECT_FALSE(accepts(*g, std::string(5000, '(') + "1" + std::string(5000, ')')));
}

TEST(Gbnf, ErrorsNameTheProblem) {
  EXPECT_NE(error_of("root ::= foo").find("undefined rule 'foo'"), std::string::npos);
  EXPECT_NE(error_of("start ::= \"a\"").find("no 'root' rule"), std::string::npos);
  EXPECT_NE(error_of("root ::= root \"a\" | \"b\"").find("left recursion in rule 'root'"),
            std::string::npos);
  EXPECT_NE(error_of("root ::= x \"a\"\nx ::= \"\" | root").find("left recursion"), std::string::npos);
  EXPECT_NE(error_of("root ::= a\na ::= b\nb ::= a").find("matches nothing"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"abc").find("unterminated string literal"), std::string::npos);
  EXPECT_NE(error_of("root ::= [a-").find("unterminated character class"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"\\q\"").find("unknown escape"), std::string::npos);
  EXPECT_NE(error_of("root ::= (\"a\"").find("expected ')'"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\" )").find("')'"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"{5,2}").find("n < m"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"{1001}").find("above 1000"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"a\"\nroot ::= \"b\"").find("defined twice"), std::string::npos);
  EXPECT_NE(error_of("root \"a\"").find("'::='"), std::string::npos);
  EXPECT_NE(error_of("").find("no rules"), std::string::npos);
  EXPECT_NE(error_of("root ::= *").find("nothing to repeat"), std::string::npos);
  EXPECT_NE(error_of("root ::= \"\xff\"").find("invalid UTF-8"), std::string::npos);
  EXPECT_NE(error_of("root ::= [z-a]").find("out of order"), std::string::npos);
  // Size: repetitions that would expand past the limit are refused, not built.
  EXPECT_NE(error_of("root ::= \"" + std::string(1100, 'a') + "\"{1000}").find("elements"), std::string::npos);
  // Nested counts stay small (each level refers to the one inside), and match what they say.
  const auto nested = GbnfGrammar::parse(R"g(root ::= (("ab"{3}){2}){1,2})g");
  EXPECT_TRUE(accepts(*nested, "abababababab"));
  EXPECT_TRUE(accepts(*nested, std::string("abababababab") + "abababababab"));
  EXPECT_FALSE(accepts(*nested, "ababababab"));
  // Errors carry the position.
  EXPECT_NE(error_of("root ::= \"a\"\nx ::= [").find("line 2"), std::string::npos);
}

// A repetition of something that can be empty loops without reading: allowed (regexes such as
// (a|)+ give it), the matcher stops at a stack it has met.
TEST(Gbnf, RepetitionOfNullableItems) {
  const auto g = GbnfGrammar::parse(R"g(root ::= ("a"?)* "b" (x | "c")+
x ::= "d"* | "")g");
  EXPECT_TRUE(g->cycle_guard());
  for (const char* ok : {"bc", "b", "ab", "aaab", "bddcdd", "bcccd"}) EXPECT_TRUE(accepts(*g, ok)) << ok;
  for (const char* bad : {"", "a", "ba", "bb", "abx"}) EXPECT_FALSE(accepts(*g, bad)) << bad;
  EXPECT_TRUE(accepts(*regex_grammar("(a|)+b"), "aab"));
  EXPECT_TRUE(accepts(*regex_grammar("(a|)+b"), "b"));
  EXPECT_FALSE(GbnfGrammar::parse("root ::= \"a\"*")->cycle_guard());
}

TEST(Gbnf, ChoiceAndQuote) {
  const std::vector<std::string> options = {"yes", "no", "a \"quoted\" \\ one", "line\nbreak", "é"};
  const auto g = GbnfGrammar::choice(options);
  for (const auto& o : options) EXPECT_TRUE(accepts(*g, o)) << o;
  EXPECT_FALSE(accepts(*g, "ye"));
  EXPECT_FALSE(accepts(*g, "yesno"));
  EXPECT_THROW(GbnfGrammar::choice({}), Error);
}

TEST(Gbnf, VerdictsMatchReference) {
  const json cases = load_fixture("grammar_verdicts.json");
  ASSERT_TRUE(cases.is_array() && !cases.empty()) << "tests/fixtures/structured/grammar_verdicts.json";
  size_t docs = 0;
  for (const auto& c : cases) {
    std::shared_ptr<const GbnfGrammar> g;
    ASSERT_NO_THROW(g = GbnfGrammar::parse(c["gbnf"].get<std::string>())) << c["name"];
    for (const auto& d : c["docs"]) {
      const std::string text = unhex(d["hex"]);
      EXPECT_EQ(accepts(*g, text), d["valid"].get<bool>()) << c["name"] << ": " << d["hex"];
      ++docs;
    }
  }
  EXPECT_GT(docs, 200u);
}

TEST(Regex, VerdictsMatchPython) {
  const json doc = load_fixture("regex_verdicts.json");
  const json& cases = doc.is_object() ? doc["cases"] : doc;
  ASSERT_TRUE(cases.is_array() && !cases.empty()) << "tests/fixtures/structured/regex_verdicts.json";
  size_t docs = 0;
  for (const auto& c : cases) {
    const std::string re = c["regex"];
    std::shared_ptr<const GbnfGrammar> g;
    ASSERT_NO_THROW(g = regex_grammar(re)) << re << "\n" << regex_to_gbnf(re);
    for (const auto& d : c["docs"]) {
      EXPECT_EQ(accepts(*g, unhex(d["hex"])), d["valid"].get<bool>())
          << c["name"] << " /" << re << "/ on " << d["hex"] << "\n" << regex_to_gbnf(re);
      ++docs;
    }
  }
  EXPECT_GT(docs, 200u);
}

TEST(Regex, Conversions) {
  EXPECT_TRUE(accepts(*regex_grammar("^\\d{4}-\\d{2}-\\d{2}$"), "2026-11-27"));
  EXPECT_TRUE(accepts(*regex_grammar("a|"), ""));
  EXPECT_TRUE(accepts(*regex_grammar("[]a]+"), "]a]"));
  EXPECT_TRUE(accepts(*regex_grammar("x{2"), "x{2"));  // not a quantifier: literal
  EXPECT_TRUE(accepts(*regex_grammar("(?P<y>\\w+)@(?:ab)+?"), "me@abab"));
  EXPECT_TRUE(accepts(*regex_grammar("[^\\s,]+"), "a;b"));
  EXPECT_FALSE(accepts(*regex_grammar("[^\\s,]+"), "a b"));
  EXPECT_FALSE(accepts(*regex_grammar("."), "\n"));
  // Python 3.11's readings (each verdict from re.fullmatch): {,} is {0,}, {} a literal; \0 takes
  // up to two more octal digits, three digits are octal, and in a class one digit is.
  EXPECT_TRUE(accepts(*regex_grammar("x{,}y"), "xxxy"));
  EXPECT_TRUE(accepts(*regex_grammar("x{,}y"), "y"));
  EXPECT_TRUE(accepts(*regex_grammar("x{}y"), "x{}y"));
  EXPECT_FALSE(accepts(*regex_grammar("x{}y"), "xy"));
  EXPECT_TRUE(accepts(*regex_grammar("a\\01b"), std::string("a\x01" "b")));
  EXPECT_TRUE(accepts(*regex_grammar("a\\012b"), "a\nb"));
  EXPECT_TRUE(accepts(*regex_grammar("a\\0b"), std::string("a\0b", 3)));
  EXPECT_TRUE(accepts(*regex_grammar("\\101\\060"), "A0"));
  EXPECT_TRUE(accepts(*regex_grammar("\\0101"), "\x08" "1"));
  EXPECT_TRUE(accepts(*regex_grammar("[\\101-\\103]+"), "ABC"));
  EXPECT_TRUE(accepts(*regex_grammar("[\\1]"), "\x01"));
  EXPECT_THROW(regex_grammar("\\60"), Error);  // a backreference to group 60 in Python
  for (const char* bad : {"(a", "a)", "*a", "a**", "(?=a)", "(a)\\1", "\\bword", "a^b", "a$b",
                          "[\\D]", "(?i)a", "[b-a]", "a{3,1}", "\\q", "a{5000}"}) {
    EXPECT_THROW(regex_grammar(bad), Error) << bad;
  }
}

// ------------------------------------------------------------------- constraint on a vocabulary

std::shared_ptr<const Tokenizer> smollm2() { return test::smollm2_tokenizer(); }

const char* const kWalkGrammars[] = {
    R"g(root ::= "{" ws "\"name\":" ws str "," ws "\"age\":" ws [0-9]{1,3} ws "}"
ws ::= [ ]?
str ::= "\"" [^"\\\n]{0,12} "\"")g",
    R"g(root ::= item{1,3}
item ::= "- " [A-Za-z ]{1,20} "\n")g",
    R"g(root ::= expr
expr ::= term (("+" | "-") term)*
term ::= [0-9]+ | "(" expr ")")g",
    R"g(root ::= ("yes" | "no" | "maybe") ("." | "!"))g",
    R"g(root ::= [^\n]{1,30} "\n")g",
    R"g(root ::= "日本" [一-龥]{1,4} | "emoji: " [\U0001F600-\U0001F64F]+)g",
};

std::vector<int32_t> unmasked(GbnfConstraint& c, int32_t n) {
  std::vector<float> logits(static_cast<size_t>(n), 1.0f);
  c.mask_logits(logits.data(), n);
  std::vector<int32_t> ok;
  for (int32_t t = 0; t < n; ++t)
    if (!std::isinf(logits[t])) ok.push_back(t);
  return ok;
}

// The trie walk's mask equals feeding every token on its own, along random walks.
TEST(GbnfConstraint, MaskMatchesPerTokenCheckSmolLM2) {
  const auto tok = smollm2();
  if (!tok) GTEST_SKIP() << "SmolLM2 GGUF not present";
  const auto vocab = std::make_shared<ConstraintVocab>(*tok);
  const int32_t eos = tok->eos_id();
  std::mt19937 rng(11);
  for (const char* text : kWalkGrammars) {
    const auto g = GbnfGrammar::parse(text);
    const GbnfMatcher m(*g);
    GbnfConstraint c(g, vocab, {eos});
    GbnfState state = m.initial();
    for (int step = 0; step < 6 && !c.finished(); ++step) {
      const auto& bits = c.allowed_text_tokens();
      std::vector<int32_t> ok;
      for (int32_t t = 0; t < vocab->size(); ++t) {
        GbnfState s = state;
        const bool want = !vocab->is_control(t) && m.feed(&s, vocab->bytes(t));
        ASSERT_EQ(((bits[static_cast<size_t>(t) >> 6] >> (t & 63)) & 1) != 0, want)
            << text << " token " << t << " step " << step;
        if (want) ok.push_back(t);
      }
      if (ok.empty()) break;
      const int32_t t = ok[std::uniform_int_distribution<size_t>(0, ok.size() - 1)(rng)];
      ASSERT_TRUE(c.accept(t));
      ASSERT_TRUE(m.feed(&state, vocab->bytes(t)));
    }
  }
}

// Random generations under the mask end in sentences of the grammar; EOS only when complete.
TEST(GbnfConstraint, RandomWalksEndInTheLanguage) {
  const auto tok = smollm2();
  if (!tok) GTEST_SKIP() << "SmolLM2 GGUF not present";
  const auto vocab = std::make_shared<ConstraintVocab>(*tok);
  const std::vector<int32_t> eos = tok->eos_ids();
  const int32_t n = tok->vocab_size();
  std::mt19937 rng(5);
  int finished = 0, total = 0;
  for (const char* text : kWalkGrammars) {
    const auto g = GbnfGrammar::parse(text);
    for (int w = 0; w < 6; ++w, ++total) {
      GbnfConstraint c(g, vocab, eos);
      std::string out;
      for (int step = 0; step < 120; ++step) {
        const std::vector<int32_t> ok = unmasked(c, n);
        ASSERT_FALSE(ok.empty()) << text << " after " << out;
        // Short tokens first after a while, so that the walks end.
        int32_t t = ok[std::uniform_int_distribution<size_t>(0, ok.size() - 1)(rng)];
        if (step > 20) {
          for (int32_t e : eos)
            if (std::find(ok.begin(), ok.end(), e) != ok.end()) t = e;
        }
        ASSERT_TRUE(c.accept(t));
        if (std::find(eos.begin(), eos.end(), t) != eos.end()) break;
        out += vocab->bytes(t);
        if (c.finished()) break;
      }
      if (c.complete()) {
        ++finished;
        EXPECT_TRUE(accepts(*g, out)) << text << ": " << out;
      }
    }
  }
  EXPECT_GE(finished, total / 2);
}

TEST(GbnfConstraint, EosOnlyWhenComplete) {
  const auto tok = smollm2();
  if (!tok) GTEST_SKIP() << "SmolLM2 GGUF not present";
  const auto vocab = std::make_shared<ConstraintVocab>(*tok);
  const int32_t eos = tok->eos_id();
  GbnfConstraint c(GbnfGrammar::parse(R"g(root ::= "ab" "c"?)g"), vocab, {eos});
  EXPECT_FALSE(c.accept(eos));
  const auto ids = tok->encode("ab", false);
  for (int32_t t : ids) ASSERT_TRUE(c.accept(t));
  EXPECT_TRUE(c.complete());
  EXPECT_FALSE(c.finished());
  const auto c_ids = tok->encode("c", false);
  ASSERT_EQ(c_ids.size(), 1u);
  ASSERT_TRUE(c.accept(c_ids[0]));
  EXPECT_TRUE(c.finished());
  const std::vector<int32_t> ok = unmasked(c, tok->vocab_size());
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0], eos);
}

}  // namespace
}  // namespace jinx
