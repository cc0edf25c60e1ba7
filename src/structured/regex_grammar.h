// Regular expressions (vLLM's `guided_regex`, JSON Schema's `pattern`) as GBNF grammars: the
// text is matched whole, as Python's re.fullmatch(pattern, text, re.ASCII) matches it.
//
// Supported: literals (UTF-8 too), `.` (any character but "\n"), classes `[a-z_]` `[^,\s]`,
// escapes \d \w \s \D \W \S (ASCII: [0-9], [A-Za-z0-9_], [ \t\n\r\f\v]), \n \t \r \f \v \0
// \xHH \uHHHH and escaped punctuation, groups `( )` `(?: )` `(?P<name> )` `(?<name> )`,
// alternation, quantifiers * + ? {m} {m,} {m,n} {,n} (lazy forms `*?` etc. match the same
// texts), `^` at the start and `$` at the end. Refused with a jinx::Error naming the
// construct: backreferences, lookaround, word boundaries, inline flags, \D \W \S inside a
// class, anchors elsewhere, and counts above GbnfGrammar::kMaxRepeat.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "structured/gbnf.h"

namespace jinx {

// The GBNF text (one `root` rule) for the regex.
std::string regex_to_gbnf(std::string_view regex);
std::shared_ptr<const GbnfGrammar> regex_grammar(std::string_view regex);

}  // namespace jinx
