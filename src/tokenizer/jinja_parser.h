// Parser: tokens -> statement tree, following jinja2's grammar and operator precedence.
// Throws jinx::Error "template line N: ..." on syntax errors and on constructs outside the
// supported subset (extends, include, import, call blocks).
#pragma once

#include <string>

#include "tokenizer/jinja_ast.h"

namespace jinx::jinja {

Body parse_template(const std::string& source);

}  // namespace jinx::jinja
