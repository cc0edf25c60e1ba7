#include "structured/json_constraint.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/check.h"

namespace jinx {

namespace {

// Masks kept per request (a mask is vocab/8 bytes: 6 KB for 49k tokens); the walk is cheap
// enough that a few recent states are all worth keeping.
constexpr size_t kMaxCachedMasks = 32;

// logits[i] = -inf where bit i of w is clear. Bit arithmetic instead of a branch per token:
// inside strings the allowed set is a random-looking part of the vocabulary, where a branch
// mispredicts (4x slower on the whole vocabulary, measured), and this form vectorizes.
void mask_word(float* l, uint64_t w, int32_t n) {
  constexpr uint32_t kNegInfBits = 0xff800000u;
  for (int32_t i = 0; i < n; ++i) {
    const uint32_t keep = 0u - static_cast<uint32_t>((w >> i) & 1);
    uint32_t x;
    std::memcpy(&x, &l[i], 4);
    x = (x & keep) | (kNegInfBits & ~keep);
    std::memcpy(&l[i], &x, 4);
  }
}

void set_bit(std::vector<uint64_t>* bits, int32_t t) {
  (*bits)[static_cast<size_t>(t) >> 6] |= uint64_t{1} << (t & 63);
}

}  // namespace

JsonConstraint::JsonConstraint(std::shared_ptr<const JsonGrammar> g,
                               std::shared_ptr<const ConstraintVocab> vocab,
                               std::vector<int32_t> eos_ids)
    : grammar_(std::move(g)),
      vocab_(std::move(vocab)),
      eos_ids_(std::move(eos_ids)),
      matcher_(*grammar_) {
  JINX_CHECK(grammar_ && vocab_, "json constraint needs a grammar and a vocabulary");
  state_ = matcher_.initial();
  walk_.resize(vocab_->max_depth() + 1);
}

bool JsonConstraint::is_eos(int32_t token) const {
  return std::find(eos_ids_.begin(), eos_ids_.end(), token) != eos_ids_.end();
}

bool JsonConstraint::finished() const {
  if (ended_) return true;
  if (finished_ < 0) {
    finished_ = matcher_.complete(state_) && !matcher_.can_continue(state_);
  }
  return finished_ != 0;
}

// One pass over a preorder trie; walk_[d] is the state after the first d bytes of the
// current path, so a node costs one matcher step and a rejected node skips its subtree.
void JsonConstraint::walk(const ConstraintVocab::Trie& trie, std::vector<uint64_t>* bits) {
  walk_[0] = state_;
  for (size_t i = 0; i < trie.nodes.size();) {
    const ConstraintVocab::Node& n = trie.nodes[i];
    if (!matcher_.step(walk_[n.depth - 1], n.byte, &walk_[n.depth])) {
      i = n.skip;
      continue;
    }
    for (uint32_t k = n.tok_begin; k < n.tok_end; ++k) set_bit(bits, trie.tokens[k]);
    ++i;
  }
}

// Inside a string only the tokens that leave it (or are not string content) need a walk; the
// rest (most of the vocabulary) are allowed by their code-point count alone.
void JsonConstraint::compute_allowed(std::vector<uint64_t>* bits) {
  bits->assign((static_cast<size_t>(vocab_->size()) + 63) / 64, 0);
  uint32_t room = 0;
  if (!matcher_.in_string_body(state_, &room)) {
    walk(vocab_->trie(), bits);
    return;
  }
  vocab_->add_string_tokens(room, bits);
  walk(vocab_->string_exit_trie(), bits);
}

const std::vector<uint64_t>& JsonConstraint::allowed_text_tokens() {
  if (current_) return *current_;
  if (ended_) {  // nothing after EOS
    none_.assign((static_cast<size_t>(vocab_->size()) + 63) / 64, 0);
    current_ = &none_;
    return none_;
  }
  std::string key = state_.key();
  auto it = cache_.find(key);
  if (it == cache_.end()) {
    if (cache_.size() >= kMaxCachedMasks) cache_.clear();
    std::vector<uint64_t> bits;
    compute_allowed(&bits);
    it = cache_.emplace(std::move(key), std::move(bits)).first;
  }
  current_ = &it->second;
  return *current_;
}

void JsonConstraint::mask_logits(float* logits, int32_t vocab_size) {
  const std::vector<uint64_t>& bits = allowed_text_tokens();
  const bool eos_ok = complete();  // after EOS: only EOS again
  std::vector<float> eos_logits;
  for (int32_t e : eos_ids_) eos_logits.push_back(e >= 0 && e < vocab_size ? logits[e] : 0.0f);
  const int32_t n_text = std::min(vocab_size, vocab_->size());
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int32_t base = 0; base < n_text; base += 64) {
    const uint64_t w = bits[static_cast<size_t>(base) >> 6];
    if (w == ~uint64_t{0}) continue;
    mask_word(logits + base, w, std::min<int32_t>(64, n_text - base));
  }
  for (int32_t t = n_text; t < vocab_size; ++t) logits[t] = kNegInf;  // padding rows
  for (size_t i = 0; i < eos_ids_.size(); ++i) {
    const int32_t e = eos_ids_[i];
    if (e >= 0 && e < vocab_size) logits[e] = eos_ok ? eos_logits[i] : kNegInf;
  }
}

bool JsonConstraint::accept(int32_t token) {
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

std::unique_ptr<TokenConstraint> make_json_constraint(std::shared_ptr<const JsonGrammar> g,
                                                      std::shared_ptr<const ConstraintVocab> vocab,
                                                      std::vector<int32_t> eos_ids) {
  return std::make_unique<JsonConstraint>(std::move(g), std::move(vocab), std::move(eos_ids));
}

}  // namespace jinx
