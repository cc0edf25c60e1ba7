// Lexer for the Jinja subset chat templates use, configured as transformers configures jinja2:
// trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False, newlines normalized to
// "\n". Whitespace control ('-' and '+') follows jinja2's lexer rule by rule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace jinx::jinja {

enum class Tok : uint8_t {
  kData,        // text outside tags (value: the text)
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // value: the unescaped string
  kInt,     // value: decimal digits of the value
  kFloat,   // value: text of the literal, '_' removed
  kOp,      // value: the operator text
  kEof,
};

struct Token {
  Tok type;
  std::string value;
  int line;
};

// Throws jinx::Error "template line N: ..." on malformed input.
std::vector<Token> tokenize(const std::string& source);

}  // namespace jinx::jinja
