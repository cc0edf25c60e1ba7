// Structured output: a TokenConstraint that keeps a sequence inside a JsonGrammar.
//
// Before each sampling step the allowed tokens are found by walking the vocabulary trie with
// the matcher state (a subtree is skipped at its first rejected byte) and cached by state: the
// states of one request recur (inside a free string, between properties), so most steps cost a
// cache lookup and one pass over the logits.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "structured/constraint.h"
#include "structured/constraint_vocab.h"
#include "structured/json_grammar.h"
#include "structured/json_matcher.h"

namespace jinx {

class JsonConstraint final : public TokenConstraint {
 public:
  JsonConstraint(std::shared_ptr<const JsonGrammar> g, std::shared_ptr<const ConstraintVocab> vocab,
                 std::vector<int32_t> eos_ids);

  void mask_logits(float* logits, int32_t vocab_size) override;
  bool accept(int32_t token) override;
  bool complete() const override { return ended_ || matcher_.complete(state_); }
  bool finished() const override;

  // Bit t set: text token t may come next (EOS and special tokens are not in it).
  const std::vector<uint64_t>& allowed_text_tokens();
  bool is_eos(int32_t token) const;
  size_t cache_size() const { return cache_.size(); }
  // Forgets the cached masks (benchmarks measure the uncached walk with it).
  void clear_cache() {
    cache_.clear();
    current_ = nullptr;
  }

 private:
  void compute_allowed(std::vector<uint64_t>* bits);
  void walk(const ConstraintVocab::Trie& trie, std::vector<uint64_t>* bits);

  std::shared_ptr<const JsonGrammar> grammar_;
  std::shared_ptr<const ConstraintVocab> vocab_;
  std::vector<int32_t> eos_ids_;
  JsonMatcher matcher_;
  MatchState state_;
  bool ended_ = false;            // an EOS token was accepted
  mutable int finished_ = -1;     // cached for the current state; -1 unknown
  std::vector<MatchState> walk_;  // per trie depth, reused
  std::unordered_map<std::string, std::vector<uint64_t>> cache_;
  std::vector<uint64_t> none_;                      // allowed bits after EOS
  const std::vector<uint64_t>* current_ = nullptr;  // allowed bits of state_, once computed
};

// json_object: JsonGrammar::any_object(); json_schema: JsonGrammar::from_schema(schema).
std::unique_ptr<TokenConstraint> make_json_constraint(std::shared_ptr<const JsonGrammar> g,
                                                      std::shared_ptr<const ConstraintVocab> vocab,
                                                      std::vector<int32_t> eos_ids);

}  // namespace jinx
