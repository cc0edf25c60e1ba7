// Sequence state as the scheduler sees it: token ids and counters, no model, no text.
//
// A sequence's `tokens` are its prompt followed by every token sampled so far. Its KV cache
// holds the first `n_computed` of them; the scheduler computes the rest in chunks. When
// n_computed reaches tokens.size() the step that computed the last chunk also produced logits
// for the next token, which the caller samples and hands back (Scheduler::on_step_done).
// Preemption by recompute resets n_computed to 0 (keeping every token): the sequence then
// re-prefills prompt + generated tokens, reusing whatever of them the prefix cache still holds.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "kv/block_hash.h"
#include "kv/kv_cache_manager.h"

namespace jinx {

struct SamplingParams;

using SeqId = kv::SeqId;

// Overlap scheduling: the value of a token sampled by a step that is still running. The
// scheduler appends one for each sampling sequence when it schedules the next step ahead
// (Scheduler::schedule_ahead) and fills it in on_step_done().
constexpr int32_t kPlaceholderToken = -1;

enum class SeqStatus {
  kWaiting,   // queued (new or preempted), holds no KV blocks
  kRunning,   // admitted: holds a block table
  kFinished,  // done; holds nothing
};

enum class FinishReason {
  kNone,
  kStop,     // EOS, a stop token or a stop string (decided by the caller)
  kLength,   // max_tokens (caller) or the per-sequence limit max_model_len (scheduler)
  kAborted,  // cancelled by the client
};

constexpr std::string_view to_string(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "none";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kAborted:
      return "abort";
  }
  return "?";
}

struct Sequence {
  SeqId id = -1;
  uint64_t arrival = 0;         // admission order key (FCFS); smaller is older
  int32_t priority = 0;         // SchedulingPolicy::kPriority: smaller is served first
  std::vector<int32_t> tokens;  // prompt then generated
  int32_t n_prompt = 0;
  int32_t n_computed = 0;                   // leading tokens whose KV is in the cache
  std::vector<kv::BlockHash> block_hashes;  // chained hash of each full block of `tokens`
  SeqStatus status = SeqStatus::kWaiting;
  FinishReason finish_reason = FinishReason::kNone;
  FinishReason pending_finish = FinishReason::kNone;  // abort()/finish() applied next step
  int32_t n_preemptions = 0;
  int32_t n_cached_prompt = 0;  // prompt tokens the prefix cache served at first admission
  int32_t max_output = 0;       // generated tokens at most (0: no limit but max_model_len)
  // Overlap scheduling: 1 while the last token is a kPlaceholderToken (a step in flight samples
  // it), else 0; `draining` when that token is its last one (a length limit), so the
  // sequence is not scheduled again.
  int32_t n_placeholders = 0;
  bool draining = false;
  // Speculative decoding: the last n_draft tokens are guesses (Drafter) that the step in flight
  // checks; on_step_done() keeps the ones that stand and drops the rest.
  int32_t n_draft = 0;
  // LoRA adapter (Model::n_adapters) of its tokens; -1: the model's default. It seeds the
  // prefix-cache hashes, so blocks are shared only between sequences of the same adapter.
  int32_t adapter = -1;
  // Prompt logprobs wanted: every prompt position's logits are computed (no prefix-cache hit,
  // prompt chunks of at most kMaxPromptLogitRows tokens).
  bool prompt_logits = false;
  // Speculative sampling (EngineOptions::speculative_sampling): the request's sampling
  // parameters for the drafter, and the draft's distribution of each current guess
  // ([n_draft, vocab] when the drafter sampled them, else empty).
  std::shared_ptr<const SamplingParams> draft_sampling;
  std::vector<float> draft_probs;

  int32_t size() const { return static_cast<int32_t>(tokens.size()); }
  int32_t n_generated() const { return size() - n_prompt; }
  int32_t n_uncomputed() const { return size() - n_computed; }
  // Tokens whose value is known (no placeholder, no guess).
  int32_t n_known() const { return size() - n_placeholders - n_draft; }
};

}  // namespace jinx
