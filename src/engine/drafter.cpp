#include "engine/drafter.h"

#include <algorithm>

#include "core/check.h"

namespace jinx {

NgramDrafter::NgramDrafter(int32_t min_ngram, int32_t max_ngram)
    : min_ngram_(min_ngram), max_ngram_(max_ngram) {
  if (min_ngram < 1 || max_ngram < min_ngram)
    fail("prompt lookup needs 1 <= min n-gram <= max n-gram, got ", min_ngram, " and ", max_ngram);
}

void NgramDrafter::guess(std::span<const int32_t> tokens, int32_t max_tokens,
                         std::vector<int32_t>* out) const {
  out->clear();
  const int64_t L = static_cast<int64_t>(tokens.size());
  if (max_tokens <= 0) return;
  for (int64_t n = std::min<int64_t>(max_ngram_, L - 1); n >= min_ngram_; --n) {
    const int32_t* suffix = tokens.data() + (L - n);
    // Latest start j < L - n of an earlier copy of the suffix (it may overlap the suffix).
    for (int64_t j = L - n - 1; j >= 0; --j) {
      if (!std::equal(suffix, suffix + n, tokens.data() + j)) continue;
      // Guess x is the token after the copy's x-th successor: ext[j + n + x] with ext = tokens
      // followed by the guesses so far; j + n + x < L + x, so it is always already known.
      for (int64_t x = 0; x < max_tokens; ++x) {
        const int64_t at = j + n + x;
        out->push_back(at < L ? tokens[static_cast<size_t>(at)]
                              : (*out)[static_cast<size_t>(at - L)]);
      }
      return;
    }
  }
}

}  // namespace jinx
