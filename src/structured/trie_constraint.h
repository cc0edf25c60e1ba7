// The part of a TokenConstraint that every byte-level grammar shares: allowed tokens found by
// walking the vocabulary trie with the matcher's state (a subtree is skipped at its first
// rejected byte), masks cached by state (the states of one request recur: inside a free
// string, in a repetition), EOS allowed exactly when the output so far is complete.
//
// Matcher: State initial(); bool step(const State&, uint8_t, State*); bool feed(State*, bytes);
//          bool complete(const State&); bool can_continue(const State&). State: key().
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/check.h"
#include "structured/constraint.h"
#include "structured/constraint_vocab.h"

namespace jinx {

// logits[t] = -inf for every text token t whose bit is clear, for padding rows past the
// vocabulary, and for EOS tokens unless eos_ok.
void apply_token_mask(const std::vector<uint64_t>& bits, int32_t n_vocab_text,
                      const std::vector<int32_t>& eos_ids, bool eos_ok, float* logits,
                      int32_t vocab_size);

inline void set_token_bit(std::vector<uint64_t>* bits, int32_t t) {
  (*bits)[static_cast<size_t>(t) >> 6] |= uint64_t{1} << (t & 63);
}

template <class Grammar, class Matcher, class State>
class TrieConstraint : public TokenConstraint {
 public:
  TrieConstraint(std::shared_ptr<const Grammar> g, std::shared_ptr<const ConstraintVocab> vocab,
                 std::vector<int32_t> eos_ids)
      : grammar_(g && vocab ? std::move(g) : throw Error("a constraint needs a grammar and a vocabulary")),
        vocab_(std::move(vocab)),
        eos_ids_(std::move(eos_ids)),
        matcher_(*grammar_) {
    state_ = matcher_.initial();
    walk_.resize(vocab_->max_depth() + 1);
  }

  void mask_logits(float* logits, int32_t vocab_size) override {
    apply_token_mask(allowed_text_tokens(), vocab_->size(), eos_ids_, complete(), logits, vocab_size);
  }

  bool accept(int32_t token) override {
    if (ended_) return false;
    if (is_eos(token)) {
      if (!complete()) return false;
      ended_ = true;
      current_ = nullptr;
      return true;
    }
    if (token < 0 || token >= vocab_->size() || vocab_->is_control(token)) return false;
    if (!matcher_.feed(&state_, vocab_->bytes(token))) return false;
    current_ = nullptr;
    finished_ = -1;
    return true;
  }

  bool complete() const override { return ended_ || matcher_.complete(state_); }

  bool finished() const override {
    if (ended_) return true;
    if (finished_ < 0) finished_ = matcher_.complete(state_) && !matcher_.can_continue(state_);
    return finished_ != 0;
  }

  // Bit t set: text token t may come next (EOS and special tokens are not in it).
  const std::vector<uint64_t>& allowed_text_tokens() {
    if (current_) return *current_;
    if (ended_) {  // nothing after EOS
      none_.assign(words(), 0);
      current_ = &none_;
      return none_;
    }
    std::string key = state_.key();
    auto it = cache_.find(key);
    if (it == cache_.end()) {
      if (cache_.size() >= kMaxCachedMasks) cache_.clear();
      std::vector<uint64_t> bits(words(), 0);
      compute_allowed(&bits);
      it = cache_.emplace(std::move(key), std::move(bits)).first;
    }
    current_ = &it->second;
    return *current_;
  }

  bool is_eos(int32_t token) const {
    return std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end();
  }
  size_t cache_size() const { return cache_.size(); }
  // Forgets the cached masks (benchmarks measure the uncached walk with it).
  void clear_cache() {
    cache_.clear();
    current_ = nullptr;
  }

 protected:
  // Masks kept per request (a mask is vocab/8 bytes: 6 KB for 49k tokens).
  static constexpr size_t kMaxCachedMasks = 32;

  size_t words() const { return (static_cast<size_t>(vocab_->size()) + 63) / 64; }

  // Sets the bits of the allowed text tokens (bits comes zeroed). The default walks the
  // whole vocabulary.
  virtual void compute_allowed(std::vector<uint64_t>* bits) { walk(vocab_->trie(), bits); }

  // One pass over a preorder trie; walk_[d] is the state after the first d bytes of the
  // current path, so a node costs one matcher step and a rejected node skips its subtree.
  void walk(const ConstraintVocab::Trie& trie, std::vector<uint64_t>* bits) {
    walk_[0] = state_;
    for (size_t i = 0; i < trie.nodes.size();) {
      const ConstraintVocab::Node& n = trie.nodes[i];
      if (!matcher_.step(walk_[n.depth - 1], n.byte, &walk_[n.depth])) {
        i = n.skip;
        continue;
      }
      for (uint32_t k = n.tok_begin; k < n.tok_end; ++k) set_token_bit(bits, trie.tokens[k]);
      ++i;
    }
  }

  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const ConstraintVocab> vocab_;
  std::vector<int32_t> eos_ids_;
  Matcher matcher_;
  State state_;
  bool ended_ = false;         // an EOS token was accepted
  mutable int finished_ = -1;  // cached for the current state; -1 unknown
  std::vector<State> walk_;    // per trie depth, reused
  std::unordered_map<std::string, std::vector<uint64_t>> cache_;
  std::vector<uint64_t> none_;                      // allowed bits after EOS
  const std::vector<uint64_t>* current_ = nullptr;  // allowed bits of state_, once computed
};

}  // namespace jinx
