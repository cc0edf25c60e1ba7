// Speculative decoding's proposers: cheap guesses of a sequence's next tokens, which the next
// forward pass checks together with the token it was going to compute anyway (one more row
// per guess; see Scheduler::set_drafter and LLM::sample_step). A proposer sees token ids only;
// engine/draft_model.h runs a smaller model with the same vocabulary.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/request.h"
#include "engine/sampler.h"

namespace jinx {

// One sequence's request for guesses (Drafter::propose).
struct DraftSeq {
  SeqId id = -1;
  std::span<const int32_t> tokens;  // all its tokens, the one just sampled last
  int32_t max_tokens = 0;           // >= 1
  std::vector<int32_t>* out;        // replaced with at most max_tokens guesses (maybe none)
  // Speculative sampling (null: greedy guesses): guesses are drawn from the draft's
  // distribution under these parameters (temperature, top-k, top-p, min-p), and `probs` gets
  // that distribution for each guess, [out->size(), vocab] row-major. A drafter that cannot
  // sample leaves probs empty (its guesses are then checked as greedy ones).
  const SamplingParams* sampling = nullptr;
  std::vector<float>* probs = nullptr;
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  // Guesses for every sequence of one step at once (a draft model runs them as one batch).
  virtual void propose(std::span<const DraftSeq> seqs) = 0;
  // The sequence finished, was aborted or preempted: whatever was kept for it can go.
  virtual void release(SeqId) {}
};

// A proposer that keeps nothing between steps and guesses each sequence on its own.
class StatelessDrafter : public Drafter {
 public:
  // Replaces *out with at most `max_tokens` guesses of the tokens that follow `tokens` (none
  // when it has no guess).
  virtual void guess(std::span<const int32_t> tokens, int32_t max_tokens,
                     std::vector<int32_t>* out) const = 0;
  void propose(std::span<const DraftSeq> seqs) final {
    for (const DraftSeq& s : seqs) guess(s.tokens, s.max_tokens, s.out);
  }
};

// Prompt lookup (vLLM's "ngram" method, llama.cpp's lookup decoding): the latest earlier
// occurrence of the sequence's last n tokens, n from max_ngram down to min_ngram, and the
// tokens that followed it. Where those run into the end of the sequence the guesses continue
// the match with themselves (a text repeating with period p is guessed to keep repeating).
// O(sequence length x max_ngram) per call at worst.
class NgramDrafter final : public StatelessDrafter {
 public:
  // Throws jinx::Error unless 1 <= min_ngram <= max_ngram.
  NgramDrafter(int32_t min_ngram, int32_t max_ngram);
  void guess(std::span<const int32_t> tokens, int32_t max_tokens,
             std::vector<int32_t>* out) const override;

 private:
  int32_t min_ngram_;
  int32_t max_ngram_;
};

}  // namespace jinx
