// Deterministic automata over bytes for regular languages (JSON Schema's `pattern`), for
// matchers that can keep only a small integer of state per string (json_matcher.h).
//
// Made by exploring the GbnfMatcher states of the regex's grammar (regex_grammar.h): the
// states are identified up to what they can still read (their stacks, in any order, and for
// a partial UTF-8 character only the completions that matter), then the automaton is
// minimized. Text is strict UTF-8, as the matcher reads it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

namespace jinx {

class ByteDfa {
 public:
  static constexpr uint32_t kDead = 0xffffffffu;
  static constexpr size_t kMaxStates = 4096;  // explored, before minimization

  // The texts re.fullmatch(regex, text, re.ASCII) accepts, as regex_grammar reads the regex,
  // that use only bytes where allowed[byte]. Every state left can still reach acceptance
  // (transitions that could not are kDead). Throws jinx::Error for a regex regex_grammar
  // refuses, when no text is left, or when more than kMaxStates states are met on the way
  // ("pattern too complex").
  static std::shared_ptr<const ByteDfa> from_regex(std::string_view regex, const std::array<bool, 256>& allowed);
  // A JSON Schema `pattern` (ECMA-262: a match anywhere in the string unless anchored) for
  // the content of a JSON string written without escapes: bytes 0x20-0xFF but '"', '\\' and
  // DEL (which the JSON matcher never writes).
  // Each top-level alternative may start with ^ and end with an unescaped $; others are
  // preceded / followed by any text. The rest of the syntax is regex_grammar's (Python's),
  // so the ECMA differences stay: `.` also matches U+2028/U+2029, \s is ASCII only, `[^]`
  // and `[]` are read as Python reads them (a class starting with ']').
  static std::shared_ptr<const ByteDfa> for_json_pattern(std::string_view pattern);
  // The allowed bytes of for_json_pattern.
  static std::array<bool, 256> json_string_bytes();

  uint32_t start() const { return 0; }
  // kDead when the byte is rejected; next(kDead, b) is kDead. Any other state >= n_states()
  // throws jinx::Error.
  uint32_t next(uint32_t state, uint8_t byte) const;
  // accepting(kDead) is false; any other state >= n_states() throws.
  bool accepting(uint32_t state) const;
  size_t n_states() const { return accept_.size(); }
  bool matches(std::string_view bytes) const;  // the whole text

 private:
  friend class ByteDfaBuilder;
  std::vector<uint32_t> next_;  // [n_states * 256]
  std::vector<uint8_t> accept_;
};

}  // namespace jinx
