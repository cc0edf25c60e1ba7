// A token-level constraint on what a sequence may generate (structured output, forced tool
// calls). The engine asks it, before every sampling step of its sequence, which tokens may come
// next, and tells it which token was chosen.
//
// Contract, per sequence (one object per request; not shared between threads at once):
//   mask_logits(logits, V)  sets logits[t] = -inf for every token t that cannot continue a valid
//                           output (EOS tokens are allowed exactly when complete() is true).
//                           Never masks every token while !complete().
//   accept(t)               advances the state by token t; false (state unchanged) if t was not
//                           allowed.
//   complete()              the output so far is a whole valid value; the engine stops the
//                           sequence with finish_reason "stop" once complete() is true and
//                           no token but EOS may follow (finished()).
#pragma once

#include <cstdint>

namespace jinx {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  virtual void mask_logits(float* logits, int32_t vocab_size) = 0;
  virtual bool accept(int32_t token) = 0;
  virtual bool complete() const = 0;
  // complete() and nothing but EOS may follow: the sequence ends here.
  virtual bool finished() const = 0;
};

}  // namespace jinx
