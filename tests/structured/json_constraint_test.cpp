// Token-level constraint: random walks over the allowed tokens of a small vocabulary and of the
// real SmolLM2 vocabulary (skipped when the GGUF is absent). Every finished output must parse
// and validate against its schema; the validator below is written independently of the
// grammar code, and with JINX_STRUCTURED_DUMP=<file> the outputs are also written for
// `tools/make_structured_fixtures.py --check-outputs <file>` (the `jsonschema` package).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "core/check.h"
#include "loader/gguf.h"
#include "structured/json_constraint.h"
#include "tokenizer/tokenizer.h"
#include "../support/smollm2.h"

namespace jinx {
namespace {

using ojson = nlohmann::ordered_json;

// ------------------------------------------------------------- independent reference validator

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool has_type(const ojson& v, const std::string& t) {
  if (t == "integer") {
    return v.is_number_integer() ||
           (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  }
  if (t == "number") return v.is_number();
  if (t == "string") return v.is_string();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  if (t == "object") return v.is_object();
  return t == "array" && v.is_array();
}

bool validate(const ojson& v, const ojson& s, const ojson& root);

long double number_of(const ojson& v) {
  if (v.is_number_unsigned()) return static_cast<long double>(v.get<uint64_t>());
  if (v.is_number_integer()) return static_cast<long double>(v.get<int64_t>());
  return v.get<double>();
}

// UTF-8 -> code points (wchar_t is 32 bits here), so that std::regex sees characters.
std::wstring wide(const std::string& s) {
  std::wstring out;
  for (size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = n == 1 ? c : c & (0x3F >> (n - 1));
    for (int k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (s[i + k] & 0x3F);
    out += static_cast<wchar_t>(cp);
    i += n;
  }
  return out;
}

// pattern by std::regex (ECMAScript, search semantics, as JSON Schema has it); the formats by
// their definitions (a real calendar date, hex groups, dotted quads, an '@'). The date-time
// and time formats are checked by jsonschema over the JINX_STRUCTURED_DUMP outputs instead.
bool validate_text(const std::string& t, const ojson& s) {
  if (s.contains("pattern") &&
      !std::regex_search(wide(t), std::wregex(wide(s["pattern"].get<std::string>()),
                                               std::regex::ECMAScript)))
    return false;
  const std::string format = s.value("format", "");
  if (format == "date") {
    int y = 0, m = 0, d = 0;
    char tail = 0;
    if (t.size() != 10 || std::sscanf(t.c_str(), "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
      return false;
    static constexpr int kDays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return y >= 1 && m >= 1 && m <= 12 && d >= 1 && d <= (m == 2 && !leap ? 28 : kDays[m - 1]);
  }
  if (format == "uuid") {
    if (t.size() != 36) return false;
    for (size_t i = 0; i < t.size(); ++i) {
      const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
      if (dash ? t[i] != '-' : !std::isxdigit(static_cast<unsigned char>(t[i]))) return false;
    }
  }
  if (format == "ipv4") {
    int parts = 0;
    for (size_t i = 0; i <= t.size(); ++parts) {
      const size_t dot = std::min(t.find('.', i), t.size());
      const std::string p = t.substr(i, dot - i);
      if (p.empty() || p.size() > 3 || (p.size() > 1 && p[0] == '0') ||
          p.find_first_not_of("0123456789") != std::string::npos || std::stoi(p) > 255)
        return false;
      i = dot + 1;
    }
    return parts == 4;
  }
  if (format == "email" && t.find('@') == std::string::npos) return false;
  return true;
}

bool validate_bounds(const ojson& v, const ojson& s) {
  const long double x = number_of(v);
  if (s.contains("minimum") && x < number_of(s["minimum"])) return false;
  if (s.contains("maximum") && x > number_of(s["maximum"])) return false;
  if (s.contains("exclusiveMinimum") && x <= number_of(s["exclusiveMinimum"])) return false;
  if (s.contains("exclusiveMaximum") && x >= number_of(s["exclusiveMaximum"])) return false;
  return true;
}

bool validate_object(const ojson& v, const ojson& s, const ojson& root) {
  const ojson props = s.value("properties", ojson::object());
  for (const auto& r : s.value("required", ojson::array())) {
    if (!v.contains(r.get<std::string>())) return false;
  }
  for (const auto& [k, x] : v.items()) {
    if (props.contains(k)) {
      if (!validate(x, props[k], root)) return false;
    } else if (s.contains("additionalProperties") &&
               !validate(x, s["additionalProperties"], root)) {
      return false;
    }
  }
  return true;
}

bool validate_array(const ojson& v, const ojson& s, const ojson& root) {
  const ojson prefix = s.value("prefixItems", ojson::array());
  for (size_t i = 0; i < v.size(); ++i) {
    const bool ok = i < prefix.size()     ? validate(v[i], prefix[i], root)
                    : s.contains("items") ? validate(v[i], s["items"], root)
                                          : true;
    if (!ok) return false;
  }
  return v.size() >= s.value("minItems", 0u) && v.size() <= s.value("maxItems", 1u << 30);
}

bool validate(const ojson& v, const ojson& s, const ojson& root) {
  if (s.is_boolean()) return s.get<bool>();
  if (s.contains("$ref")) {
    const auto ptr = ojson::json_pointer(s["$ref"].get<std::string>().substr(1));
    if (!validate(v, root.at(ptr), root)) return false;
  }
  if (s.contains("type")) {
    const ojson types = s["type"].is_array() ? s["type"] : ojson::array({s["type"]});
    bool any = false;
    for (const auto& t : types) any = any || has_type(v, t.get<std::string>());
    if (!any) return false;
  }
  if (s.contains("enum")) {
    bool found = false;
    for (const auto& e : s["enum"]) found = found || e == v;
    if (!found) return false;
  }
  if (s.contains("const") && s["const"] != v) return false;
  if (s.contains("allOf")) {
    for (const auto& a : s["allOf"])
      if (!validate(v, a, root)) return false;
  }
  if (s.contains("anyOf")) {
    bool any = false;
    for (const auto& a : s["anyOf"]) any = any || validate(v, a, root);
    if (!any) return false;
  }
  if (s.contains("oneOf")) {
    int n = 0;
    for (const auto& a : s["oneOf"]) n += validate(v, a, root);
    if (n != 1) return false;
  }
  if (v.is_string()) {
    const size_t n = code_points(v.get<std::string>());
    if (n < s.value("minLength", 0u) || n > s.value("maxLength", 1u << 30)) return false;
    if (!validate_text(v.get<std::string>(), s)) return false;
  }
  if (v.is_number() && !validate_bounds(v, s)) return false;
  if (v.is_object() && !validate_object(v, s, root)) return false;
  if (v.is_array() && !validate_array(v, s, root)) return false;
  return true;
}

// ------------------------------------------------------------------------------ vocabularies

constexpr int32_t kEos = 400;  // past the text tokens of small_vocab()

// All 256 single bytes (so no state can run out of tokens), JSON-ish multi-byte tokens, a
// duplicate, an empty token, split UTF-8 pieces, and two special tokens (EOS = kEos).
std::shared_ptr<const ConstraintVocab> small_vocab() {
  std::vector<std::string> bytes;
  for (int c = 0; c < 256; ++c) bytes.emplace_back(1, static_cast<char>(c));
  const char* multi[] = {
      "{\"",      "\":",         "\": ",        "\",",
      "\", \"",   "\"}",         "\"]",         "[\"",
      "true",     "false",       "null",        "nu",
      "ll",       "12",          "-1",          ".5",
      "e+",       "name",        "age",         " \"",
      "\\u",      "\\n",         "\\\"",        "\\ud83d",
      "\xc3\xa9", "\xc3",        "\xa9x",       "\xf0\x9f\x98\x80",
      "\xf0\x9f", "\x98\x80",    "ab",          "abc",
      "red",      "green",       "kind",        "value",
      "children", "\"value\":",  "steps",       "[]",
      "{}",       "[{",          "}]",          "\":\"",
      "00",       "1,",          "a\\\"b",      "}}",
      "]]",       "\"a\"",       "\"kind\":\"", "\":[",
      ", ",       "name\":\"",   "\":{\"",      "tags",
      "\"\"",     "explanation", "output",      "final_answer",
      "color",
      "abc",  // duplicate bytes
  };
  for (const char* m : multi) bytes.emplace_back(m);
  bytes.emplace_back("");  // an empty token is never allowed
  EXPECT_LT(bytes.size(), static_cast<size_t>(kEos));
  std::vector<bool> special(bytes.size(), false);
  while (bytes.size() < static_cast<size_t>(kEos) + 2) {  // specials, EOS among them
    bytes.emplace_back("<|special|>");
    special.push_back(true);
  }
  return std::make_shared<ConstraintVocab>(std::move(bytes), std::move(special));
}

std::shared_ptr<const Tokenizer> smollm2() { return test::smollm2_tokenizer(); }

ojson load_schemas() {
  std::ifstream f(std::string(JINX_FIXTURES) + "/structured/verdicts.json");
  std::stringstream ss;
  ss << f.rdbuf();
  return ojson::parse(ss.str());
}

// --------------------------------------------------------------------------------- random walk

std::vector<int32_t> unmasked(JsonConstraint& c, int32_t n_logits) {
  std::vector<float> logits(n_logits, 0.0f);
  c.mask_logits(logits.data(), n_logits);
  std::vector<int32_t> ok;
  for (int32_t t = 0; t < n_logits; ++t) {
    if (!std::isinf(logits[t])) ok.push_back(t);
  }
  return ok;
}

// After `patience` steps the walk prefers tokens that end values so it terminates.
int32_t choose(const std::vector<int32_t>& ok, const ConstraintVocab& v, bool finishing,
               const std::vector<int32_t>& eos, std::mt19937& rng) {
  if (finishing) {
    for (int32_t e : eos) {
      if (std::find(ok.begin(), ok.end(), e) != ok.end()) return e;
    }
    for (const char* pref : {"\"", "}", "]", "0", ","}) {
      for (int32_t t : ok) {
        if (t < v.size() && v.bytes(t) == pref) return t;
      }
    }
  }
  return ok[std::uniform_int_distribution<size_t>(0, ok.size() - 1)(rng)];
}

struct WalkStats {
  int finished = 0;
  int steps = 0;
};

// One generation; returns the output when it finished, checking the constraint's contract.
std::optional<std::string> walk(const std::shared_ptr<const JsonGrammar>& g,
                                const std::shared_ptr<const ConstraintVocab>& vocab,
                                const std::vector<int32_t>& eos, int32_t n_logits,
                                std::mt19937& rng, WalkStats* stats) {
  JsonConstraint c(g, vocab, eos);
  std::string out;
  for (int step = 0; step < 600; ++step) {
    const std::vector<int32_t> ok = unmasked(c, n_logits);
    if (ok.empty()) {
      ADD_FAILURE() << "mask emptied; complete=" << c.complete() << " output so far: " << out;
      return std::nullopt;
    }
    // A masked token is refused and leaves the state as it was.
    const int32_t probe = std::uniform_int_distribution<int32_t>(0, n_logits - 1)(rng);
    if (std::find(ok.begin(), ok.end(), probe) == ok.end()) {
      EXPECT_FALSE(c.accept(probe)) << "masked token " << probe << " accepted after " << out;
      EXPECT_EQ(unmasked(c, n_logits), ok);
    }
    const int32_t t = choose(ok, *vocab, step > 60, eos, rng);
    ++stats->steps;
    const bool is_eos = std::find(eos.begin(), eos.end(), t) != eos.end();
    EXPECT_TRUE(c.accept(t)) << "allowed token " << t << " refused after " << out;
    if (is_eos) {
      EXPECT_TRUE(c.finished());
      ++stats->finished;
      return out;
    }
    out += vocab->bytes(t);
    if (c.finished()) {  // the engine stops here; only EOS may follow
      EXPECT_TRUE(c.complete());
      const std::vector<int32_t> rest = unmasked(c, n_logits);
      for (int32_t r : rest) {
        EXPECT_NE(std::find(eos.begin(), eos.end(), r), eos.end()) << "non-EOS after finish";
      }
      ++stats->finished;
      return out;
    }
  }
  return std::nullopt;
}

void check_output(const std::string& name, const ojson& schema, const std::string& out,
                  std::ofstream* dump) {
  ojson value;
  try {
    value = ojson::parse(out);
  } catch (const nlohmann::json::exception& e) {
    ADD_FAILURE() << name << ": output does not parse: " << out << " (" << e.what() << ")";
    return;
  }
  EXPECT_TRUE(validate(value, schema, schema)) << name << ": output does not validate: " << out;
  if (dump && dump->good()) {
    static const char* kHex = "0123456789abcdef";
    std::string hex;
    for (unsigned char ch : out) hex += {kHex[ch >> 4], kHex[ch & 15]};
    *dump << ojson{{"case", name}, {"schema", schema}, {"output_hex", hex}}.dump() << "\n";
  }
}

void run_walks(const std::shared_ptr<const ConstraintVocab>& vocab, const std::vector<int32_t>& eos,
               int32_t n_logits, int walks_per_schema, uint32_t seed) {
  const char* dump_path = std::getenv("JINX_STRUCTURED_DUMP");
  std::ofstream dump;
  if (dump_path) dump.open(dump_path, std::ios::app);
  std::mt19937 rng(seed);
  WalkStats stats;
  int total = 0;
  for (const auto& c : load_schemas()) {
    const auto g = JsonGrammar::from_schema(c["schema"]);
    for (int i = 0; i < walks_per_schema; ++i, ++total) {
      const auto out = walk(g, vocab, eos, n_logits, rng, &stats);
      if (out)
        check_output(c["name"].get<std::string>(), c["schema"], *out, dump_path ? &dump : nullptr);
      if (::testing::Test::HasFailure()) return;
    }
  }
  EXPECT_GE(stats.finished, total * 9 / 10) << "too few walks finished";
}

TEST(JsonConstraint, RandomWalksSmallVocab) {
  const auto vocab = small_vocab();
  run_walks(vocab, {kEos}, vocab->size() + 7, 40, 1234);  // logits padded past the vocab
}

TEST(JsonConstraint, RandomWalksSmolLM2Vocab) {
  const auto tok = smollm2();
  if (!tok) GTEST_SKIP() << "SmolLM2 GGUF not present";
  const auto vocab = std::make_shared<ConstraintVocab>(*tok);
  run_walks(vocab, tok->eos_ids(), tok->vocab_size(), 8, 99);
}

// The mask of the trie walk (and of the string fast path) equals feeding every token on its
// own, along random walks.
void check_masks(const std::shared_ptr<const ConstraintVocab>& vocab, int32_t eos, int steps,
                 size_t case_stride) {
  std::mt19937 rng(7);
  const ojson cases = load_schemas();
  for (size_t ci = 0; ci < cases.size(); ci += case_stride) {
    const auto& c = cases[ci];
    const auto g = JsonGrammar::from_schema(c["schema"]);
    const JsonMatcher m(*g);
    JsonConstraint jc(g, vocab, {eos});
    MatchState state = m.initial();
    for (int step = 0; step < steps && !jc.finished(); ++step) {
      const auto& bits = jc.allowed_text_tokens();
      std::vector<float> logits(vocab->size(), 1.0f);
      jc.mask_logits(logits.data(), vocab->size());
      std::vector<int32_t> ok;
      for (int32_t t = 0; t < vocab->size(); ++t) {
        MatchState s = state;
        const bool want = !vocab->is_control(t) && m.feed(&s, vocab->bytes(t));
        const bool got = (bits[t >> 6] >> (t & 63)) & 1;
        ASSERT_EQ(got, want) << c["name"] << " token " << t << " step " << step;
        const bool eos_ok = t == eos && jc.complete();
        ASSERT_EQ(logits[t] == 1.0f, want || eos_ok) << c["name"] << " logit of " << t;
        if (want) ok.push_back(t);
      }
      if (ok.empty()) {
        ASSERT_TRUE(jc.complete()) << c["name"];
        break;
      }
      const int32_t t = ok[std::uniform_int_distribution<size_t>(0, ok.size() - 1)(rng)];
      ASSERT_TRUE(jc.accept(t));
      ASSERT_TRUE(m.feed(&state, vocab->bytes(t)));
    }
  }
}

TEST(JsonConstraint, MaskMatchesPerTokenCheck) {
  check_masks(small_vocab(), kEos, 40, 1);
}

TEST(JsonConstraint, MaskMatchesPerTokenCheckSmolLM2) {
  const auto tok = smollm2();
  if (!tok) GTEST_SKIP() << "SmolLM2 GGUF not present";
  check_masks(std::make_shared<ConstraintVocab>(*tok), tok->eos_id(), 12, 1);
}

TEST(JsonConstraint, EosOnlyWhenComplete) {
  const auto vocab = small_vocab();
  JsonConstraint c(JsonGrammar::from_schema_text(R"({"type":"integer"})"), vocab, {kEos});
  EXPECT_FALSE(c.accept(kEos));
  EXPECT_FALSE(c.accept(kEos + 1));  // other special token
  EXPECT_FALSE(c.accept(-1));
  EXPECT_FALSE(c.accept(vocab->size()));
  ASSERT_TRUE(c.accept('1'));  // single-byte tokens have their byte as id
  EXPECT_TRUE(c.complete());
  EXPECT_FALSE(c.finished());  // more digits may follow
  std::vector<float> logits(vocab->size(), 1.0f);
  c.mask_logits(logits.data(), vocab->size());
  EXPECT_EQ(logits[kEos], 1.0f);
  EXPECT_EQ(logits['2'], 1.0f);
  EXPECT_TRUE(std::isinf(logits['"']));
  EXPECT_TRUE(std::isinf(logits[kEos + 1]));
  EXPECT_TRUE(c.accept(kEos));
  EXPECT_TRUE(c.finished());
  EXPECT_FALSE(c.accept('3'));
}

TEST(JsonConstraint, VocabFromTokenizer) {
  const char* json = R"({
    "added_tokens": [{"id": 6, "content": "<|end|>", "special": true}],
    "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "post_processor": null,
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"{": 0, "}": 1, "\"": 2, "a": 3, ":": 4, "1": 5},
              "merges": []}
  })";
  const auto tok = Tokenizer::from_hf_json(json);
  const auto vocab = std::make_shared<ConstraintVocab>(*tok);
  EXPECT_TRUE(vocab->is_control(6));
  auto c = make_json_constraint(JsonGrammar::any_object(), vocab, {6});
  std::vector<float> logits(7, 0.0f);
  c->mask_logits(logits.data(), 7);
  for (int t = 0; t < 7; ++t) EXPECT_EQ(std::isinf(logits[t]), t != 0) << t;
  for (int t : {0, 2, 3, 2, 4, 5, 1}) ASSERT_TRUE(c->accept(t)) << t;  // {"a":1}
  EXPECT_TRUE(c->finished());
  logits.assign(7, 0.0f);
  c->mask_logits(logits.data(), 7);
  for (int t = 0; t < 7; ++t) EXPECT_EQ(std::isinf(logits[t]), t != 6) << t;
}

}  // namespace
}  // namespace jinx
