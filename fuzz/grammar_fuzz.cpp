// Fuzz target: the GBNF parser (structured/gbnf), the regex -> GBNF converter
// (structured/regex_grammar) and the pushdown matcher, as `grammar`, `guided_regex` and
// `guided_choice` requests use them.
// Input: a mode byte ('r': the text is a regex; anything else: GBNF), the text, then optionally
// a NUL byte and a document to match.
// Properties: bad grammars and regexes throw jinx::Error; a regex the converter takes always
// gives GBNF the parser takes; feeding the document byte by byte agrees with accepts(), a
// rejected byte leaves the state as it was, and a state's stacks never exceed the matcher's
// bounds.
#include "fuzz/fuzz_util.h"
#include "structured/gbnf.h"
#include "structured/regex_grammar.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool regex = data[0] == 'r';
  jinx::fuzz::Split in = jinx::fuzz::split_at_nul(data + 1, size - 1);
  std::shared_ptr<const jinx::GbnfGrammar> g;
  if (regex) {
    std::string text;
    if (!jinx::fuzz::expect_ok_or_error([&] { text = jinx::regex_to_gbnf(in.first); })) return 0;
    try {
      g = jinx::GbnfGrammar::parse(text);
    } catch (const jinx::Error& e) {
      std::fprintf(stderr, "regex %.200s -> GBNF %.400s refused: %s\n", std::string(in.first).c_str(),
                   text.c_str(), e.what());
      JINX_FUZZ_ASSERT(false);
    }
  } else if (!jinx::fuzz::expect_ok_or_error([&] { g = jinx::GbnfGrammar::parse(in.first); })) {
    return 0;
  }
  const jinx::GbnfMatcher m(*g);
  jinx::fuzz::check_stepping(m, in.second, [](const jinx::GbnfState& s) {
    JINX_FUZZ_ASSERT(s.ends.size() <= jinx::GbnfMatcher::kMaxStacks);
  });
  return 0;
}
