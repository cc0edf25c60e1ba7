// Structured output by a GBNF grammar (llama.cpp's `grammar`, vLLM's `guided_grammar`,
// `guided_regex` through regex_grammar.h, `guided_choice` through GbnfGrammar::choice): a
// TokenConstraint whose allowed tokens come from the shared trie walk (trie_constraint.h).
#pragma once

#include "structured/gbnf.h"
#include "structured/trie_constraint.h"

namespace jinx {

class GbnfConstraint final : public TrieConstraint<GbnfGrammar, GbnfMatcher, GbnfState> {
 public:
  using TrieConstraint::TrieConstraint;
};

}  // namespace jinx
