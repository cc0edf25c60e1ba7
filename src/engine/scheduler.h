// Scheduler: continuous batching with chunked prefill over a paged, prefix-cached KV pool.
//
// Plain bookkeeping over sequence ids and block ids: no model, no tensors, no threads. The
// engine loop (one thread) drives it:
//
//   Scheduler sched(SchedulerConfig{...}, kv::KVCacheConfig{...});
//   SeqId id = sched.add(prompt_ids);                // throws jinx::Error if it can never fit
//   while (sched.has_unfinished()) {
//     ScheduledStep step = sched.schedule();         // applies pending aborts, picks the batch
//     for (auto& f : step.finished) ...              // aborted/finished since the last step
//     if (step.empty()) continue;                    // (only when nothing is runnable)
//     Batch batch = build_batch(step, sched);        // engine/batch.h
//     ... forward(batch), sample the rows batch.sample_rows ...
//     StepResult r = sched.on_step_done(sampled);    // one SampledToken per sampling sequence
//     for (auto& f : r.finished) ...                 // stop/length decided this step
//   }
//   sched.abort(id);  // any time between calls; blocks are freed at the next schedule()
//
// One step (schedule()), O(running + admitted) plus the blocks it allocates:
//   1. Pending abort()/finish() calls take effect: those sequences leave the queues and
//      release their blocks (kept in the prefix cache where full and computed).
//   2. (kPriority only) While the waiting head cannot be admitted (max_num_seqs running, or
//      too few free blocks for its first chunk) and the last running sequence has a strictly
//      worse priority, that one is preempted (as below). Those preempted are not admitted
//      again in the same step (step 4 stops at the best of them).
//   3. Running sequences in policy order (SchedulingPolicy: the oldest first under FCFS). A
//      decoding sequence (one uncomputed token) gets 1 token. A sequence still prefilling gets
//      a chunk of at most the budget left after reserving 1 token for each decode later in the
//      list, so prefill chunks never stall running streams (max_num_batched_tokens >=
//      max_num_seqs makes room for every decode).
//      A prefill chunk shrinks to the free blocks; when not even one token fits, the last
//      running sequence (the newest under FCFS) is preempted (by recompute: its blocks are
//      freed, it is requeued in policy order with all its tokens, n_computed = 0) until one
//      does, or the sequence itself is the last and is preempted. The first sequence is
//      therefore never preempted while others run, and alone it always fits (max_model_len <=
//      pool size).
//   4. If step 3 preempted nothing: waiting sequences in strict policy order (never skipping
//      the head, so a large request cannot starve) while running < max_num_seqs and
//      budget remains. Each matches its leading full blocks against the prefix cache (never
//      the last token, so logits exist), shares the hits and is admitted with a chunk of
//      min(uncached, budget) tokens if that chunk's blocks fit; else admission stops.
//   A scheduled sequence samples this step iff its chunk reaches its last token.
//
// on_step_done(): every scheduled sequence's n_computed advances by its chunk, its newly full
// computed blocks are registered in the prefix cache (hashes are kept incrementally per
// sequence), each sampling sequence appends its token, and sequences the caller flagged (EOS,
// stop ids, max_tokens) or that reached max_model_len or their max_output finish and free their
// blocks.
//
// Overlap scheduling (schedule_ahead()): the next step is scheduled while the last one still
// runs, before its sampled tokens are known. The open step is first taken as done: its
// sequences' n_computed advance, and each sampling sequence gets a kPlaceholderToken as its
// next token, which the new step computes (the forward pass reads its value from the running
// step's output). on_step_done() for that step then fills the placeholders and applies finishes.
// A sequence whose placeholder is its last token by length (max_output, max_model_len) is
// `draining`: not scheduled again. One that stops otherwise (EOS, a stop string, an abort) was
// already scheduled in the new step; that row is computed and its sample is dropped, and its
// blocks are freed while the new step may still write them: safe because steps run in order
// on the device (a later step that reuses the blocks runs after it). Prefix-cache hashes cover
// known tokens only, so a block holding a placeholder is registered once it is filled.
//
// Speculative decoding (set_drafter()): a decoding sequence's token is scheduled together with
// up to num_speculative_tokens guesses of the tokens after it, appended to its tokens (they
// take budget after the decodes' reserve, and are cut to the blocks that fit; a sequence that
// is preempted drops them). The step samples every row from the real token on (ScheduledSeq::
// n_draft + 1 rows); the caller samples them in order and reports how many guesses matched
// what it sampled (SampledToken::n_accepted) and the token after those. on_step_done() drops
// the rest, with their KV slots (the blocks past the kept tokens go back to the pool). Guesses
// are never hashed nor cached, and never pass max_output or max_model_len. Not with overlap
// scheduling (schedule_ahead() refuses a drafter).
//
// Invariant (check_invariants(), tests run it after every step): every block is free, cached
// and unreferenced, or referenced by exactly the sequences whose tables hold it; running
// sequences hold tables covering their computed tokens, waiting ones hold none.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/drafter.h"
#include "engine/request.h"
#include "kv/kv_cache_manager.h"
#include "kv/kv_config.h"

namespace jinx {

// Which waiting sequence runs next, and which running one gives way when KV blocks run out.
//   kFcfs: arrival order. The oldest runs first; the newest is preempted.
//   kPriority: (priority, arrival) order, the smaller value first (vLLM's --scheduling-policy
//     priority). The waiting queue and the running list are kept in that order, so a request
//     of a better priority is admitted before older ones of a worse priority, and the running
//     sequence of the worst priority (the newest among equals) is preempted first. And when the
//     waiting head cannot be admitted (max_num_seqs reached, or its first chunk's blocks not
//     free), running sequences of a strictly worse priority are preempted to make room for it.
enum class SchedulingPolicy { kFcfs, kPriority };
const char* scheduling_policy_name(SchedulingPolicy p);
// "fcfs" or "priority"; throws jinx::Error for anything else.
SchedulingPolicy scheduling_policy_from_name(std::string_view name);

struct SchedulerConfig {
  SchedulingPolicy policy = SchedulingPolicy::kFcfs;
  int32_t max_num_seqs = 256;             // running sequences at most, >= 1
  int32_t max_num_batched_tokens = 8192;  // tokens per step (decodes + prefill), >= max_num_seqs
  int32_t max_model_len = 0;  // prompt + generated tokens per sequence; 0: the pool's capacity
};

struct ScheduledSeq {
  SeqId id = -1;
  int32_t start = 0;    // position of the first token computed this step (= n_computed before)
  int32_t n_new = 0;    // tokens computed this step, positions [start, start + n_new)
  bool sample = false;  // start + n_new == sequence length: the last row's logits are sampled
  // Speculative decoding: the last n_draft of the n_new tokens are guesses; a sampling step
  // samples the n_draft + 1 rows from the sequence's real token on.
  int32_t n_draft = 0;
};

struct FinishedSeq {
  SeqId id = -1;
  FinishReason reason = FinishReason::kNone;
  int32_t n_prompt = 0;
  std::vector<int32_t> output;  // generated tokens
};

struct ScheduledStep {
  std::vector<ScheduledSeq> seqs;     // batch order: running (oldest first), then admitted
  int32_t n_tokens = 0;               // sum of n_new, <= max_num_batched_tokens
  int32_t n_sampling = 0;             // sequences with sample set
  std::vector<SeqId> preempted;       // lost their KV this step and went back to the queue
  std::vector<FinishedSeq> finished;  // aborted / finished by abort() or finish() before it
  bool empty() const { return seqs.empty(); }
};

// What the caller hands back for a sampling sequence.
struct SampledToken {
  SeqId seq = -1;
  int32_t token = -1;                         // >= 0
  FinishReason finish = FinishReason::kNone;  // kStop / kLength end it (token is kept)
  // Speculative decoding: how many of the sequence's guesses (leading ones) stand; `token`
  // follows them. 0..n_draft of its ScheduledSeq.
  int32_t n_accepted = 0;
};

struct StepResult {
  std::vector<FinishedSeq> finished;
};

struct SchedulerStats {
  int64_t n_steps = 0;              // non-empty steps
  int64_t n_computed_tokens = 0;    // tokens sent through the forward pass, all steps
  int64_t n_prefix_hit_tokens = 0;  // tokens served by the prefix cache at admissions
  int64_t n_preemptions = 0;
  int64_t n_finished = 0;  // any reason, aborts included
  int64_t n_draft_tokens = 0;     // speculative guesses scheduled
  int64_t n_accepted_tokens = 0;  // of which the sampled tokens confirmed
};

class Scheduler {
 public:
  Scheduler(const SchedulerConfig& config, const kv::KVCacheConfig& kv_config);

  // Queues a prompt; returns its id (ids count up from 0). Throws jinx::Error for an empty
  // prompt, a negative token id, or a prompt of max_model_len tokens or more (it could never
  // fit in the KV pool together with one generated token).
  // max_output: generated tokens at most (0: no limit but max_model_len); the caller still
  // reports kLength, this lets overlap scheduling stop scheduling a sequence at its last token.
  // prompt_logits: see Sequence::prompt_logits.
  // priority: SchedulingPolicy::kPriority's key (smaller runs first); ignored under kFcfs.
  SeqId add(std::vector<int32_t> prompt, int32_t max_output = 0, int32_t adapter = -1,
            bool prompt_logits = false, int32_t priority = 0);
  // Speculative sampling: the drafter draws this sequence's guesses under `params` and
  // reports their distributions (Sequence::draft_probs). Throws for an unknown id.
  void set_draft_sampling(SeqId id, std::shared_ptr<const SamplingParams> params);
  // Ends a waiting or running sequence at the next schedule(), which reports it in
  // ScheduledStep::finished and frees its blocks. False if the id is unknown or already done.
  // Called between schedule() and on_step_done(), the token sampled in that step is dropped
  // (the caller must still pass it to on_step_done()).
  bool abort(SeqId id) { return finish(id, FinishReason::kAborted); }
  bool finish(SeqId id, FinishReason reason);

  // Speculative decoding: each decode step of a sequence also computes up to `max_tokens`
  // guesses from `drafter` (null or 0: off). Throws jinx::Error for a negative count.
  void set_drafter(std::shared_ptr<Drafter> drafter, int32_t max_tokens);

  // Needs every scheduled step done (on_step_done()).
  ScheduledStep schedule();
  // The next step while the last scheduled one is still running (see the top of this file);
  // the one before it must be done. With no open step it is schedule().
  ScheduledStep schedule_ahead();
  // Completes the oldest open step. `sampled` holds exactly one entry per sequence of that
  // step with sample set (any order); entries of sequences that ended since it was scheduled
  // (with overlap scheduling: by a stop in the step before, or an abort) are ignored. Throws
  // jinx::Error, changing nothing, on a missing, extra or bad entry.
  StepResult on_step_done(std::span<const SampledToken> sampled);
  int32_t n_open_steps() const { return static_cast<int32_t>(open_.size()); }

  bool has_unfinished() const { return !seqs_.empty(); }
  int32_t n_waiting() const { return static_cast<int32_t>(waiting_.size()); }
  int32_t n_running() const { return static_cast<int32_t>(running_.size()); }
  bool contains(SeqId id) const { return seqs_.count(id) != 0; }
  const Sequence& sequence(SeqId id) const;  // throws for an unknown (or finished) id
  std::span<const int32_t> block_table(SeqId id) const { return kv_.block_table(id); }
  const kv::KVCacheManager& kv() const { return kv_; }
  const SchedulerConfig& config() const { return config_; }
  const SchedulerStats& stats() const { return stats_; }

  // Throws jinx::Error naming the first broken invariant (see the top of this file).
  void check_invariants() const;

 private:
  Sequence& get(SeqId id);
  void apply_pending(ScheduledStep* step);
  void schedule_running(ScheduledStep* step, int32_t* budget);
  void admit_waiting(ScheduledStep* step, int32_t* budget, const Sequence* floor);
  int32_t fit_or_preempt(size_t index, int32_t want, int32_t* n_decode_left, ScheduledStep* step);
  int32_t guess_limit(const Sequence* s) const;
  void propose_guesses(int32_t budget);
  int32_t add_guesses(size_t index, int32_t room);
  void drop_guesses(Sequence* s, int32_t n_keep);
  void preempt_back(ScheduledStep* step);
  bool ahead(const Sequence* a, const Sequence* b) const;
  auto policy_order() const {
    return [this](const Sequence* a, const Sequence* b) { return ahead(a, b); };
  }
  bool head_fits() const;
  const Sequence* preempt_for_priority(ScheduledStep* step);
  void enqueue_waiting(Sequence* s);
  void add_scheduled(Sequence* s, int32_t n, ScheduledStep* step, int32_t* budget);
  int32_t prompt_chunk_limit(const Sequence& s) const;
  FinishedSeq retire(Sequence* s, FinishReason reason);
  void extend_hashes(Sequence* s);
  void commit_known(Sequence* s);
  ScheduledStep schedule_step();
  void advance(std::span<const ScheduledSeq> seqs);
  void finish_step(std::span<const ScheduledSeq> seqs,
                   const std::unordered_map<SeqId, const SampledToken*>& by_id, bool advanced,
                   StepResult* result);
  void check_samples(std::span<const ScheduledSeq> seqs, std::span<const SampledToken> sampled,
                     std::unordered_map<SeqId, const SampledToken*>* by_id) const;

  SchedulerConfig config_;
  kv::KVCacheManager kv_;
  std::unordered_map<SeqId, std::unique_ptr<Sequence>> seqs_;  // waiting + running
  std::deque<Sequence*> waiting_;   // in policy order (ahead()): arrival, or (priority, arrival)
  std::vector<Sequence*> running_;  // in policy order
  std::vector<SeqId> pending_;                                 // ids with pending_finish set
  // Scheduled steps not yet done, oldest first: at most two, and then the older one was taken
  // as done by schedule_ahead() (`advanced`).
  struct OpenStep {
    std::vector<ScheduledSeq> seqs;
    bool advanced = false;
  };
  std::deque<OpenStep> open_;
  std::shared_ptr<Drafter> drafter_;
  int32_t max_draft_ = 0;
  std::vector<std::vector<int32_t>> draft_;  // this step's guesses, by index in running_
  std::vector<std::vector<float>> draft_probs_;  // their draft distributions (sampled guesses)
  std::vector<DraftSeq> draft_reqs_;         // scratch for propose_guesses()
  SeqId next_id_ = 0;
  uint64_t next_arrival_ = 0;
  SchedulerStats stats_;
};

}  // namespace jinx
