#include "structured/json_constraint.h"

namespace jinx {

// Inside a string only the tokens that leave it (or are not string content) need a walk; the
// rest (most of the vocabulary) are allowed by their code-point count alone.
void JsonConstraint::compute_allowed(std::vector<uint64_t>* bits) {
  uint32_t room = 0;
  if (!matcher_.in_string_body(state_, &room)) {
    walk(vocab_->trie(), bits);
    return;
  }
  vocab_->add_string_tokens(room, bits);
  walk(vocab_->string_exit_trie(), bits);
}

std::unique_ptr<TokenConstraint> make_json_constraint(std::shared_ptr<const JsonGrammar> g,
                                                      std::shared_ptr<const ConstraintVocab> vocab,
                                                      std::vector<int32_t> eos_ids) {
  return std::make_unique<JsonConstraint>(std::move(g), std::move(vocab), std::move(eos_ids));
}

}  // namespace jinx
