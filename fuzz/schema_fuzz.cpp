// Fuzz target: the JSON Schema -> grammar compiler (structured/json_grammar) and the byte-level
// matcher that runs the grammar (structured/json_matcher), as response_format json_schema and
// forced tool calls use them.
// Input: a schema (JSON text), then optionally a NUL byte and a document to match against it.
// Properties: a bad schema throws jinx::Error; for a schema that compiles, feeding the document
// byte by byte agrees with accepts() (the document is accepted exactly when every byte is taken
// and the end state is complete), and a rejected byte leaves the state unchanged.
#include "fuzz/fuzz_util.h"
#include "structured/json_grammar.h"
#include "structured/json_matcher.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  jinx::fuzz::Split in = jinx::fuzz::split_at_nul(data, size);
  jinx::fuzz::expect_ok_or_error([&] {
    auto g = jinx::JsonGrammar::from_schema_text(in.first);
    jinx::JsonMatcher m(*g);
    jinx::fuzz::check_stepping(m, in.second, [](const jinx::MatchState&) {});
  });
  return 0;
}
