// Structured output after a reasoning block (vLLM's structured outputs with a reasoning parser):
// the wrapped constraint starts once the output has written `trigger` (Qwen3 / DeepSeek-R1:
// "</think>"; gpt-oss: "<|channel|>final<|message|>"), so that the model thinks freely and its
// answer is the constrained value. Until then no token is masked, every token is accepted, and
// complete() is false (a reply that never leaves its thoughts is not a value). The trigger is
// matched on the tokens' text, special tokens included, wherever the token boundaries fall.
// `armed`: the prompt already closed the block (Qwen3 with enable_thinking=false renders an
// empty one), so the constraint holds from the first token.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "structured/constraint.h"

namespace jinx {

class DeferredConstraint : public TokenConstraint {
 public:
  using TokenText = std::function<std::string(int32_t)>;
  DeferredConstraint(std::shared_ptr<TokenConstraint> inner, std::string trigger,
                     TokenText token_text, bool armed);

  void mask_logits(float* logits, int32_t vocab_size) override;
  bool accept(int32_t token) override;
  bool complete() const override;
  bool finished() const override;
  bool armed() const { return armed_; }

 private:
  std::shared_ptr<TokenConstraint> inner_;
  std::string trigger_;
  TokenText token_text_;
  bool armed_;
  std::string tail_;  // the output's last trigger.size() - 1 bytes (or fewer) before arming
};

}  // namespace jinx
