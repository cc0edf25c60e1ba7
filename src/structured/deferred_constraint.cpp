#include "structured/deferred_constraint.h"

#include "core/check.h"

namespace jinx {

DeferredConstraint::DeferredConstraint(std::shared_ptr<TokenConstraint> inner, std::string trigger,
                                       TokenText token_text, bool armed)
    : inner_(std::move(inner)),
      trigger_(std::move(trigger)),
      token_text_(std::move(token_text)),
      armed_(armed) {
  JINX_CHECK(inner_ != nullptr && token_text_, "a deferred constraint needs a constraint");
  JINX_CHECK(armed_ || !trigger_.empty(), "a deferred constraint needs a trigger");
}

void DeferredConstraint::mask_logits(float* logits, int32_t vocab_size) {
  if (armed_) inner_->mask_logits(logits, vocab_size);
}

bool DeferredConstraint::accept(int32_t token) {
  if (armed_) return inner_->accept(token);
  tail_ += token_text_(token);
  if (tail_.find(trigger_) != std::string::npos) {
    armed_ = true;  // text after the trigger in the same token is not fed: markers end tokens
    tail_.clear();
  } else if (tail_.size() >= trigger_.size()) {
    tail_.erase(0, tail_.size() - (trigger_.size() - 1));
  }
  return true;
}

bool DeferredConstraint::complete() const { return armed_ && inner_->complete(); }

bool DeferredConstraint::finished() const { return armed_ && inner_->finished(); }

}  // namespace jinx
