// Structured output: a TokenConstraint that keeps a sequence inside a JsonGrammar.
//
// Allowed tokens come from the shared trie walk (trie_constraint.h); inside a free string
// most of the vocabulary is plain string content, allowed by its code-point count alone, so
// only the tokens that can leave the string are walked.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "structured/json_grammar.h"
#include "structured/json_matcher.h"
#include "structured/trie_constraint.h"

namespace jinx {

class JsonConstraint final : public TrieConstraint<JsonGrammar, JsonMatcher, MatchState> {
 public:
  using TrieConstraint::TrieConstraint;

 private:
  void compute_allowed(std::vector<uint64_t>* bits) override;
};

// json_object: JsonGrammar::any_object(); json_schema: JsonGrammar::from_schema(schema).
std::unique_ptr<TokenConstraint> make_json_constraint(std::shared_ptr<const JsonGrammar> g,
                                                      std::shared_ptr<const ConstraintVocab> vocab,
                                                      std::vector<int32_t> eos_ids);

}  // namespace jinx
