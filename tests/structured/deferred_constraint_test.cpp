// DeferredConstraint: nothing is masked or refused before the trigger text has been written
// (wherever token boundaries cut it), the wrapped constraint rules from then on, and a prompt
// that already closed the thoughts arms it from the first token.
#include "structured/deferred_constraint.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace jinx {
namespace {

// Allows only token 1 (then, once it was accepted, only EOS = token 0).
class OnlyOne : public TokenConstraint {
 public:
  void mask_logits(float* logits, int32_t n) override {
    for (int32_t t = 0; t < n; ++t)
      if (t != (done_ ? 0 : 1)) logits[t] = -INFINITY;
  }
  bool accept(int32_t t) override {
    if (t != (done_ ? 0 : 1)) return false;
    done_ = true;
    return true;
  }
  bool complete() const override { return done_; }
  bool finished() const override { return done_; }

 private:
  bool done_ = false;
};

const std::vector<std::string> kText = {"<eos>", "{}", "</", "think", ">", "</think>", "x", "\n"};

std::string text_of(int32_t id) { return kText[static_cast<size_t>(id)]; }

int32_t n_masked(TokenConstraint& c) {
  std::vector<float> logits(kText.size(), 0.0f);
  c.mask_logits(logits.data(), static_cast<int32_t>(logits.size()));
  int32_t n = 0;
  for (float x : logits) n += std::isinf(x);
  return n;
}

TEST(DeferredConstraint, HoldsOnlyAfterTheTrigger) {
  auto inner = std::make_shared<OnlyOne>();
  DeferredConstraint c(inner, "</think>", text_of, false);
  EXPECT_EQ(n_masked(c), 0);
  for (int32_t t : {6, 7, 2, 6, 2, 3}) EXPECT_TRUE(c.accept(t));  // "x\n</x</think"
  EXPECT_FALSE(c.armed());
  EXPECT_FALSE(c.complete());
  EXPECT_EQ(n_masked(c), 0);
  EXPECT_TRUE(c.accept(4));  // ">": the trigger, cut over three tokens
  EXPECT_TRUE(c.armed());
  EXPECT_EQ(n_masked(c), 7);  // only "{}" left
  EXPECT_FALSE(c.accept(6));
  EXPECT_TRUE(c.accept(1));
  EXPECT_TRUE(c.complete() && c.finished());
}

TEST(DeferredConstraint, OneTokenTriggerAndArmedStart) {
  DeferredConstraint c(std::make_shared<OnlyOne>(), "</think>", text_of, false);
  EXPECT_TRUE(c.accept(5));
  EXPECT_TRUE(c.armed());
  DeferredConstraint armed(std::make_shared<OnlyOne>(), "</think>", text_of, true);
  EXPECT_EQ(n_masked(armed), 7);
  EXPECT_FALSE(armed.accept(5));  // the thoughts were closed in the prompt
}

}  // namespace
}  // namespace jinx
