// Speculative decoding's proposers: cheap guesses of a sequence's next tokens, which the next
// forward pass checks together with the token it was going to compute anyway (one more row
// per guess; see Scheduler::set_drafter and LLM::sample_step). A proposer sees token ids only.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace jinx {

class Drafter {
 public:
  virtual ~Drafter() = default;
  // Replaces *out with at most `max_tokens` guesses of the tokens that follow `tokens` (none
  // when it has no guess).
  virtual void propose(std::span<const int32_t> tokens, int32_t max_tokens,
                       std::vector<int32_t>* out) const = 0;
};

// Prompt lookup (vLLM's "ngram" method, llama.cpp's lookup decoding): the latest earlier
// occurrence of the sequence's last n tokens, n from max_ngram down to min_ngram, and the
// tokens that followed it. Where those run into the end of the sequence the guesses continue
// the match with themselves (a text repeating with period p is guessed to keep repeating).
// O(sequence length x max_ngram) per call at worst.
class NgramDrafter final : public Drafter {
 public:
  // Throws jinx::Error unless 1 <= min_ngram <= max_ngram.
  NgramDrafter(int32_t min_ngram, int32_t max_ngram);
  void propose(std::span<const int32_t> tokens, int32_t max_tokens,
               std::vector<int32_t>* out) const override;

 private:
  int32_t min_ngram_;
  int32_t max_ngram_;
};

}  // namespace jinx
