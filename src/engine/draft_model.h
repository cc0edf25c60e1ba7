// Speculative decoding with a draft model (vLLM's draft-model method, llama.cpp's
// --model-draft): a smaller model with the target's vocabulary guesses each decoding
// sequence's next K tokens greedily, in K forward passes of its own over all the step's
// sequences at once. The target then checks the guesses as it checks prompt-lookup guesses
// (LLM::sample_step samples every row in order and keeps the guesses that match), so the
// output is the target's alone, token for token; the draft only decides how many tokens one
// target pass yields.
//
// The draft keeps each sequence's K/V in a paged pool of its own between steps. A call rolls a
// sequence back to the longest prefix its cache shares with the tokens (the target rejected the
// guesses after it), catches up on the tokens after that prefix (the whole prompt the first
// time, in passes of at most max_batched_tokens), then guesses. The pool holds no prefix cache:
// two requests with the same system prompt each compute it in the draft.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/batch.h"
#include "engine/drafter.h"
#include "kv/kv_cache_manager.h"
#include "model/executor.h"

namespace jinx {

class Tokenizer;

class DraftModelDrafter final : public Drafter {
 public:
  // `exec` runs `model` over a KV pool of exec->n_kv_blocks() blocks of `block_size` slots.
  // Guesses at or past `target_vocab` end a sequence's guesses (the target could not read them).
  // A guess whose probability under the draft is below p_min ends the sequence's guesses
  // (llama.cpp's --draft-p-min): an unsure draft costs a pass and a target row for little.
  DraftModelDrafter(std::shared_ptr<const Model> model, std::unique_ptr<Executor> exec,
                    int32_t block_size, int32_t max_batched_tokens, int64_t target_vocab,
                    float p_min = 0.0f);

  // A sequence whose tokens the draft cannot read (an id outside its vocabulary), or whose K/V
  // no longer fit in the pool, gets no guesses this step. A failing draft pass (e.g. NaN
  // logits) is logged once and gives no guesses; it never stops the target.
  void propose(std::span<const DraftSeq> seqs) override;
  void release(SeqId id) override;

  // Tests and benchmarks.
  int64_t n_tracked() const { return static_cast<int64_t>(states_.size()); }
  int64_t n_passes() const { return n_passes_; }            // draft forward passes so far
  int64_t n_tokens_computed() const { return n_tokens_; }   // draft tokens run so far
  double seconds() const { return seconds_; }               // in draft passes so far
  const Executor& executor() const { return *exec_; }

 private:
  struct Live {
    const DraftSeq* req;
    std::vector<int32_t>* cached;  // the tokens whose K/V the pool holds, positions 0..
    bool done = false;
  };
  bool start(const DraftSeq& r);  // rollback + room for r; false: no guesses for it
  bool run_pass();                // one draft forward pass over the live sequences
  int32_t sure_argmax(size_t k) const;
  // Guesses drawn from the draft's distribution (speculative sampling) for this sequence.
  static bool sampled(const Live& l) {
    return l.req->sampling && l.req->probs && l.req->sampling->temperature >= kGreedyTemperature;
  }
  int32_t sample_guess(size_t k, Live& l);
  void propose_all(std::span<const DraftSeq> seqs);

  std::shared_ptr<const Model> model_;
  std::unique_ptr<Executor> exec_;
  kv::KVCacheManager kv_;
  int32_t block_size_;
  int32_t max_batched_tokens_;
  int64_t target_vocab_;
  float p_min_;
  std::unordered_map<SeqId, std::vector<int32_t>> states_;
  std::unordered_map<SeqId, std::mt19937_64> rngs_;  // per sampled sequence
  int64_t n_passes_ = 0, n_tokens_ = 0;
  double seconds_ = 0.0;
  bool warned_ = false;
  // Scratch, kept across calls.
  std::vector<Live> live_;
  std::vector<BatchSeq> pass_seqs_;
  std::vector<size_t> pass_live_;  // pass_seqs_[i] is live_[pass_live_[i]]
  Batch batch_;
  std::vector<uint8_t> pick_;
  std::vector<int32_t> picked_;
  std::vector<float> logits_;
  std::vector<float> q_;
};

// Throws jinx::Error unless a draft model's guesses mean the same to the target (llama.cpp's
// rules): vocabulary sizes within 128 of each other, the same text for every token id both
// tokenizers have, the same BOS/EOS ids. Either tokenizer may be null (then only the sizes count).
void check_draft_vocabulary(int64_t target_vocab, const Tokenizer* target, int64_t draft_vocab,
                            const Tokenizer* draft);

}  // namespace jinx
