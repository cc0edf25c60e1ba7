// Byte automata for regexes and JSON Schema patterns: verdicts against Python's re (the
// fixture's fullmatch verdicts, hand-written re.search cases), against a brute-force search
// over the grammar matcher on random texts, and the structure every automaton promises
// (bytes not allowed never taken, every state can still reach acceptance).
#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "structured/byte_dfa.h"
#include "structured/gbnf.h"
#include "structured/regex_grammar.h"

#include "../support/structured_fixtures.h"

namespace jinx {
namespace {

using json = nlohmann::json;

json load_fixture(const std::string& name) { return test::load_structured_fixture(name); }
using test::unhex;

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Bytes outside `allowed` lead nowhere, and from every state some accepting state is
// reachable (the pruning the header promises).
void expect_well_formed(const ByteDfa& dfa, const std::array<bool, 256>& allowed, const std::string& what) {
  const size_t n = dfa.n_states();
  ASSERT_GT(n, 0u) << what;
  std::vector<std::vector<uint32_t>> rev(n);
  for (uint32_t s = 0; s < n; ++s) {
    for (int c = 0; c < 256; ++c) {
      const uint32_t t = dfa.next(s, static_cast<uint8_t>(c));
      if (t == ByteDfa::kDead) continue;
      ASSERT_TRUE(allowed[c]) << what << ": state " << s << " takes byte " << c;
      ASSERT_LT(t, n) << what;
      rev[t].push_back(s);
    }
  }
  std::vector<uint8_t> live(n, 0);
  std::vector<uint32_t> queue;
  for (uint32_t s = 0; s < n; ++s)
    if (dfa.accepting(s)) live[s] = 1, queue.push_back(s);
  for (size_t i = 0; i < queue.size(); ++i)
    for (uint32_t p : rev[queue[i]])
      if (!live[p]) live[p] = 1, queue.push_back(p);
  for (uint32_t s = 0; s < n; ++s) EXPECT_TRUE(live[s]) << what << ": state " << s << " cannot accept";
}

bool json_safe(const std::string& text) {
  for (unsigned char c : text)
    if (c < 0x20 || c == 0x7F || c == '"' || c == '\\') return false;
  return true;
}

TEST(ByteDfa, FullmatchVerdictsMatchPython) {
  const json doc = load_fixture("regex_verdicts.json");
  const json& cases = doc.is_object() ? doc["cases"] : doc;
  ASSERT_TRUE(cases.is_array() && !cases.empty()) << "tests/fixtures/structured/regex_verdicts.json";
  const auto allowed = ByteDfa::json_string_bytes();
  size_t docs = 0;
  for (const auto& c : cases) {
    const std::string re = c["regex"];
    std::shared_ptr<const ByteDfa> dfa;
    const std::string err = error_of([&] { dfa = ByteDfa::from_regex(re, allowed); });
    if (!err.empty()) {
      // Only a language with no text of allowed bytes may be refused (a\.b\\c\-d\n\t\/ needs
      // a backslash and control characters).
      EXPECT_NE(err.find("no text"), std::string::npos) << re << ": " << err;
      for (const auto& d : c["docs"]) {
        if (json_safe(unhex(d["hex"]))) {
          EXPECT_FALSE(d["valid"].get<bool>()) << re << " " << d["hex"];
        }
      }
      continue;
    }
    expect_well_formed(*dfa, allowed, re);
    for (const auto& d : c["docs"]) {
      const std::string text = unhex(d["hex"]);
      if (!json_safe(text)) continue;
      EXPECT_EQ(dfa->matches(text), d["valid"].get<bool>()) << c["name"] << " /" << re << "/ on " << d["hex"];
      ++docs;
    }
  }
  EXPECT_GT(docs, 400u);
}

// The automaton agrees with the matcher it was made from, on random texts near the language
// (mutations of accepted texts), with every byte allowed.
TEST(ByteDfa, AgreesWithMatcherOnRandomTexts) {
  std::array<bool, 256> all;
  all.fill(true);
  std::mt19937 rng(7);
  const char* const regexes[] = {
      "(a|b)*a(a|b){3}",           "[^\\n]{0,5}x",  ".*é.*",         "(ab|a)(bc|c)?",
      "\\w+@\\w+(\\.\\w+)*",       "[\\x00-\\U0010FFFF]{2}", "[α-ωé]+", "\\S+\\s\\S+",
      "(0|[1-9]\\d*)(\\.\\d+)?",   "(?:x|)+y",
  };
  const std::string pieces[] = {"a", "b", "c", "x", "y", "@", ".", " ", "\n", "0", "1", "é", "α", "ω",
                                "\xF0\x9F\x98\x80", "\xC3", "\x80", "\xED\xA0\x80", "\xE0\xA0", "\xF4\x90\x80\x80"};
  for (const char* re : regexes) {
    const auto g = regex_grammar(re);
    const GbnfMatcher m(*g);
    const auto dfa = ByteDfa::from_regex(re, all);
    expect_well_formed(*dfa, all, re);
    for (int i = 0; i < 3000; ++i) {
      std::string t;
      const int len = static_cast<int>(rng() % 9);
      for (int j = 0; j < len; ++j) t += pieces[rng() % std::size(pieces)];
      ASSERT_EQ(dfa->matches(t), m.accepts(t)) << re << " on '" << t << "'";
    }
  }
}

// Cases checked with Python 3 (re.search(pattern, text) for each, run with python3 -c): a
// JSON Schema pattern matches anywhere unless anchored. Python's `$` also matches before a
// final "\n", ECMA's does not; no case here has a newline (JSON content cannot hold one raw).
TEST(ByteDfa, JsonPatternSearchesLikeEcma) {
  struct Case {
    const char* pattern;
    std::vector<std::pair<std::string, bool>> texts;
  };
  const std::vector<Case> cases = {
      {"[a-z]+", {{"12ab34", true}, {"1234", false}, {"", false}}},
      {"^ab", {{"abzz", true}, {"zab", false}, {"ab", true}}},
      {"ab$", {{"zab", true}, {"abz", false}, {"ab", true}}},
      {"a\\$", {{"xa$y", true}, {"a", false}, {"a$", true}}},
      {"^a|b$", {{"axx", true}, {"xxb", true}, {"xbx", false}, {"bx", false}, {"b", true}}},
      {"", {{"", true}, {"anything", true}}},
      {"^$", {{"", true}, {"a", false}}},
      {"^\\d{3}$", {{"123", true}, {"1234", false}, {"12", false}}},
      {"\\d{3}", {{"ab1234", true}, {"12", false}, {"1a23", false}}},
      {"colou?r", {{"my colour", true}, {"color!", true}, {"colr", false}}},
      {"^(?:foo|bar)baz", {{"barbaz!", true}, {"bazbar", false}, {"foobaz", true}}},
      {"é", {{"café", true}, {"cafe", false}}},
      {"^[^0-9]*$", {{"abc", true}, {"a1", false}, {"", true}, {"é ü", true}}},
      {"x{2,}", {{"axxb", true}, {"axb", false}}},
      {"^.{2,3}$", {{"éé", true}, {"ééé", true}, {"éééé", false}, {"a", false}}},
      {"a.c", {{"abc", true}, {"a€c", true}, {"ac", false}, {"xa\xF0\x9F\x98\x80" "cx", true}}},
      {"^[a-z]+(-[a-z]+)*$", {{"ab-cd", true}, {"ab-", false}, {"-ab", false}, {"abc", true}}},
      {"\\$", {{"cost $5", true}, {"cost 5", false}}},
      {"^\\$\\d+$", {{"$12", true}, {"12", false}, {"$", false}}},
      {"b|^a", {{"xbx", true}, {"ax", true}, {"xa", false}}},
      {"(a|b)c$", {{"zzac", true}, {"zzbcz", false}, {"bc", true}}},
  };
  const auto allowed = ByteDfa::json_string_bytes();
  for (const Case& c : cases) {
    const auto dfa = ByteDfa::for_json_pattern(c.pattern);
    expect_well_formed(*dfa, allowed, c.pattern);
    for (const auto& [text, want] : c.texts) EXPECT_EQ(dfa->matches(text), want) << "/" << c.pattern << "/ on '" << text << "'";
    // Never a quote, a backslash or a control character, and never broken UTF-8.
    for (const char* bad : {"\"", "\\", "\n", "\x1f", "\x7f", "\xC3", "\xFF", "\xED\xA0\x80"})
      EXPECT_FALSE(dfa->matches(std::string("abzz") + bad)) << c.pattern;
  }
}

// Search semantics against a brute force over the matcher: some substring (between character
// boundaries, at the ends where anchored) fullmatches one alternative.
TEST(ByteDfa, JsonPatternAgreesWithBruteForceSearch) {
  struct Case {
    std::vector<std::string> alts;  // bodies
    std::vector<std::pair<bool, bool>> anchors;
    std::string pattern;
  };
  const std::vector<Case> cases = {
      {{"ab+"}, {{false, false}}, "ab+"},
      {{"a.{3}"}, {{false, false}}, "a.{3}"},
      {{"a.{3}"}, {{false, true}}, "a.{3}$"},
      {{"(ab|é)+"}, {{true, false}}, "^(ab|é)+"},
      {{"a", "b-"}, {{true, false}, {false, true}}, "^a|b-$"},
      {{"[^a]é", "1\\$"}, {{false, false}, {false, false}}, "[^a]é|1\\$"},
  };
  const std::string pieces[] = {"a", "b", "é", "-", "1", "$", " ", "\xE2\x82\xAC"};
  std::mt19937 rng(11);
  for (const Case& c : cases) {
    const auto dfa = ByteDfa::for_json_pattern(c.pattern);
    std::vector<std::shared_ptr<const GbnfGrammar>> grammars;
    for (const auto& a : c.alts) grammars.push_back(regex_grammar(a));
    for (int i = 0; i < 400; ++i) {
      std::string t;
      std::vector<size_t> bounds{0};
      const int len = static_cast<int>(rng() % 8);
      for (int j = 0; j < len; ++j) t += pieces[rng() % std::size(pieces)], bounds.push_back(t.size());
      bool want = false;
      for (size_t k = 0; k < grammars.size() && !want; ++k) {
        const GbnfMatcher m(*grammars[k]);
        for (size_t from : bounds) {
          if (c.anchors[k].first && from != 0) continue;
          for (size_t to : bounds) {
            if (to < from || (c.anchors[k].second && to != t.size())) continue;
            if (m.accepts(std::string_view(t).substr(from, to - from))) want = true;
          }
        }
      }
      ASSERT_EQ(dfa->matches(t), want) << "/" << c.pattern << "/ on '" << t << "'";
    }
  }
}

TEST(ByteDfa, RefusesEmptyLanguagesAndBlowUps) {
  for (const char* p : {"^\"$", "^\\n$", "^a\\\\b$", "\\x01"})
    EXPECT_NE(error_of([&] { ByteDfa::for_json_pattern(p); }).find("no text"), std::string::npos) << p;
  // The n-th symbol from the end: 2^20 states however they are built.
  EXPECT_NE(error_of([] { ByteDfa::for_json_pattern("^(a|b)*a(a|b){20}$"); }).find("pattern too complex: more than 4096 states"),
            std::string::npos);
  // Syntax errors name the pattern; anchors inside groups and unbalanced parentheses are
  // refused, not reinterpreted.
  for (const char* p : {"a\\", "(a", "a)|(b", "[a-", "(^a)", "a$b", "(?=a)", "\\p{L}"}) {
    const std::string err = error_of([&] { ByteDfa::for_json_pattern(p); });
    EXPECT_NE(err.find("pattern"), std::string::npos) << p << ": " << err;
  }
  std::array<bool, 256> letters{};
  for (int c = 'a'; c <= 'z'; ++c) letters[c] = true;
  EXPECT_THROW(ByteDfa::from_regex("\\d+", letters), Error);
  EXPECT_THROW(ByteDfa::from_regex("(a", letters), Error);
}

TEST(ByteDfa, OnlyAllowedBytesAndPrunedStates) {
  std::array<bool, 256> letters{};
  for (int c = 'a'; c <= 'z'; ++c) letters[c] = true;
  // The digit branch can never finish: its first byte already leads nowhere.
  const auto dfa = ByteDfa::from_regex("a\\d+z|ab.", letters);
  expect_well_formed(*dfa, letters, "a\\d+z|ab.");
  EXPECT_TRUE(dfa->matches("abq"));
  EXPECT_FALSE(dfa->matches("ab "));
  EXPECT_FALSE(dfa->matches("a1z"));
  EXPECT_EQ(dfa->next(dfa->next(dfa->start(), 'a'), '1'), ByteDfa::kDead);
  EXPECT_EQ(dfa->n_states(), 4u);  // "", "a", "ab", "abq"
}

TEST(ByteDfa, MultiByteCharacters) {
  const auto dfa = ByteDfa::for_json_pattern("^é+$");
  EXPECT_TRUE(dfa->matches("ééé"));
  EXPECT_TRUE(dfa->matches("é"));
  EXPECT_FALSE(dfa->matches(""));
  EXPECT_FALSE(dfa->matches("\xC3"));
  EXPECT_FALSE(dfa->matches("é\xC3"));
  EXPECT_FALSE(dfa->matches("e"));
  const uint32_t half = dfa->next(dfa->start(), 0xC3);
  ASSERT_NE(half, ByteDfa::kDead);
  EXPECT_FALSE(dfa->accepting(half));
  EXPECT_EQ(dfa->next(half, 0xA8), ByteDfa::kDead);  // è
  EXPECT_EQ(dfa->n_states(), 3u);
  // `.` over every character stays a few states per position: the bits of a partial
  // character matter only where UTF-8 validity differs (after E0, ED, F0, F4).
  const auto any = ByteDfa::for_json_pattern("^.{3}$");
  EXPECT_LE(any->n_states(), 4u * 8u);
  EXPECT_TRUE(any->matches("a\xF0\x9F\x98\x80€"));
  EXPECT_FALSE(any->matches("a\xED\xA0\x80€"));
  EXPECT_FALSE(any->matches("a\xF4\x90\x80\x80€"));
  EXPECT_FALSE(any->matches("a\xE0\x80\xAF€"));
}

TEST(ByteDfa, DeadAndOutOfRangeStates) {
  const auto dfa = ByteDfa::for_json_pattern("^ab$");
  // kDead is absorbing and never accepting; any other state past the end throws.
  EXPECT_EQ(dfa->next(ByteDfa::kDead, 'a'), ByteDfa::kDead);
  EXPECT_FALSE(dfa->accepting(ByteDfa::kDead));
  const auto n = static_cast<uint32_t>(dfa->n_states());
  EXPECT_THROW(dfa->next(n, 'a'), Error);
  EXPECT_THROW(dfa->accepting(n), Error);
  EXPECT_THROW(dfa->next(ByteDfa::kDead - 1, 'a'), Error);
  EXPECT_EQ(dfa->start(), 0u);
  EXPECT_EQ(dfa->n_states(), 3u);
  EXPECT_FALSE(dfa->matches("ab\xFF"));
}

// Compile times of typical schema patterns (printed; the bound only catches a blow-up).
TEST(ByteDfa, CompileTimes) {
  const char* const patterns[] = {
      "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
      "^([0-9]{4})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):([0-5][0-9]):"
      "([0-5][0-9]|60)(\\.[0-9]+)?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$",
      "^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)+$",
      "^\\d{1,10}$",
      "[a-z]+",
      "^.{0,200}$",
      "\\d{3}-\\d{4}",
  };
  for (const char* p : patterns) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto dfa = ByteDfa::for_json_pattern(p);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::printf("  %8.2f ms  %5zu states  %s\n", ms, dfa->n_states(), p);
    EXPECT_LT(ms, 2000.0) << p;
  }
}

}  // namespace
}  // namespace jinx
