#include "engine/scheduler.h"

#include <algorithm>
#include <limits>

#include "core/check.h"
#include "engine/sampler.h"

namespace jinx {
namespace {

SchedulerConfig resolved(SchedulerConfig c, const kv::KVCacheConfig& kv_config) {
  kv::validate(kv_config);
  if (c.max_num_seqs < 1) fail("max_num_seqs must be >= 1, got ", c.max_num_seqs);
  if (c.max_num_batched_tokens < c.max_num_seqs) {
    fail("max_num_batched_tokens (", c.max_num_batched_tokens, ") must be >= max_num_seqs (",
         c.max_num_seqs, ") so that every running sequence can decode each step");
  }
  const int64_t capacity = int64_t{kv_config.n_blocks} * kv_config.block_size;
  if (c.max_model_len < 0) fail("max_model_len must be >= 0, got ", c.max_model_len);
  if (c.max_model_len == 0) c.max_model_len = static_cast<int32_t>(capacity);
  if (c.max_model_len > capacity) {
    fail("max_model_len ", c.max_model_len, " exceeds the KV cache capacity of ", capacity,
         " tokens (", kv_config.n_blocks, " blocks of ", kv_config.block_size, ")");
  }
  if (c.max_model_len < 2) fail("max_model_len must be >= 2, got ", c.max_model_len);
  return c;
}

}  // namespace

const char* scheduling_policy_name(SchedulingPolicy p) {
  return p == SchedulingPolicy::kPriority ? "priority" : "fcfs";
}

SchedulingPolicy scheduling_policy_from_name(std::string_view name) {
  if (name == "fcfs") return SchedulingPolicy::kFcfs;
  if (name == "priority") return SchedulingPolicy::kPriority;
  fail("unknown scheduling policy \"", name, "\" (expected fcfs or priority)");
}

Scheduler::Scheduler(const SchedulerConfig& config, const kv::KVCacheConfig& kv_config)
    : config_(resolved(config, kv_config)), kv_(kv_config) {}

Sequence& Scheduler::get(SeqId id) {
  auto it = seqs_.find(id);
  JINX_CHECK(it != seqs_.end(), "unknown sequence ", id);
  return *it->second;
}

const Sequence& Scheduler::sequence(SeqId id) const {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) fail("unknown or finished sequence ", id);
  return *it->second;
}

void Scheduler::extend_hashes(Sequence* s) {
  if (!kv_.prefix_caching()) return;
  const std::span<const int32_t> known(s->tokens.data(), static_cast<size_t>(s->n_known()));
  // Another adapter computes other K/V for the same tokens: its chain starts from another seed.
  const uint64_t seed =
      s->adapter < 0 ? kv_.hash_seed()
                     : kv_.hash_seed() ^ (0x9E3779B97F4A7C15ull * (uint64_t(s->adapter) + 1));
  kv::extend_block_hashes(known, kv_.block_size(), seed, &s->block_hashes);
}

// Registers the computed full blocks whose tokens are all known (a block with a placeholder
// waits for its value; one with a guess may yet be given back).
void Scheduler::commit_known(Sequence* s) {
  int64_t n = std::min(s->n_computed, s->n_known());
  if (kv_.prefix_caching())
    n = std::min<int64_t>(n, static_cast<int64_t>(s->block_hashes.size()) * kv_.block_size());
  kv_.commit(s->id, s->block_hashes, n);
}

// Policy order: a runs before b (and b is preempted before a).
bool Scheduler::ahead(const Sequence* a, const Sequence* b) const {
  if (config_.policy == SchedulingPolicy::kPriority && a->priority != b->priority)
    return a->priority < b->priority;
  return a->arrival < b->arrival;
}

SeqId Scheduler::add(std::vector<int32_t> prompt, int32_t max_output, int32_t adapter,
                     bool prompt_logits, int32_t priority) {
  if (max_output < 0) fail("max_output must be >= 0, got ", max_output);
  if (prompt.empty()) fail("empty prompt: a request needs at least one token");
  if (static_cast<int64_t>(prompt.size()) >= config_.max_model_len) {
    fail("prompt of ", prompt.size(), " tokens does not fit: a sequence holds at most ",
         config_.max_model_len, " tokens (prompt + output) in this KV cache of ", kv_.n_blocks(),
         " blocks of ", kv_.block_size(), " tokens");
  }
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0) fail("prompt token ", i, " has negative id ", prompt[i]);
  }
  auto s = std::make_unique<Sequence>();
  s->id = next_id_++;
  s->arrival = next_arrival_++;
  s->n_prompt = static_cast<int32_t>(prompt.size());
  s->max_output = max_output;
  s->adapter = adapter;
  s->prompt_logits = prompt_logits;
  s->priority = config_.policy == SchedulingPolicy::kPriority ? priority : 0;
  s->tokens = std::move(prompt);
  extend_hashes(s.get());
  enqueue_waiting(s.get());  // last among its equals (the newest arrival)
  const SeqId id = s->id;
  seqs_.emplace(id, std::move(s));
  return id;
}

void Scheduler::set_draft_sampling(SeqId id, std::shared_ptr<const SamplingParams> params) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) fail("set_draft_sampling: unknown sequence ", id);
  it->second->draft_sampling = std::move(params);
}

void Scheduler::set_drafter(std::shared_ptr<Drafter> drafter, int32_t max_tokens) {
  if (max_tokens < 0) fail("the number of speculative tokens must be >= 0, got ", max_tokens);
  JINX_CHECK(open_.empty(), "set_drafter() with a step in flight");
  drafter_ = max_tokens > 0 ? std::move(drafter) : nullptr;
  max_draft_ = drafter_ ? max_tokens : 0;
}

bool Scheduler::finish(SeqId id, FinishReason reason) {
  JINX_CHECK(reason != FinishReason::kNone, "finish() needs a reason");
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return false;
  Sequence& s = *it->second;
  if (s.pending_finish == FinishReason::kNone) pending_.push_back(id);
  s.pending_finish = reason;
  return true;
}

FinishedSeq Scheduler::retire(Sequence* s, FinishReason reason) {
  if (kv_.contains(s->id)) kv_.free(s->id);
  if (drafter_) drafter_->release(s->id);
  s->status = SeqStatus::kFinished;
  s->finish_reason = reason;
  FinishedSeq f{s->id, reason, s->n_prompt,
                std::vector<int32_t>(s->tokens.begin() + s->n_prompt,
                                     s->tokens.begin() + s->n_known())};
  ++stats_.n_finished;
  seqs_.erase(s->id);  // destroys *s
  return f;
}

void Scheduler::apply_pending(ScheduledStep* step) {
  if (pending_.empty()) return;
  auto is_pending = [](const Sequence* s) { return s->pending_finish != FinishReason::kNone; };
  std::erase_if(running_, is_pending);
  std::erase_if(waiting_, is_pending);
  for (SeqId id : pending_) {
    auto it = seqs_.find(id);
    if (it == seqs_.end()) continue;  // finished in on_step_done meanwhile
    Sequence* s = it->second.get();
    step->finished.push_back(retire(s, s->pending_finish));
  }
  pending_.clear();
}

void Scheduler::enqueue_waiting(Sequence* s) {
  waiting_.insert(std::upper_bound(waiting_.begin(), waiting_.end(), s, policy_order()), s);
}

// Whether the waiting head could be admitted now: a free running slot, and free blocks for a
// first chunk of the step's budget less a token per running sequence (an estimate: the
// running sequences' own growth this step is not counted).
bool Scheduler::head_fits() const {
  if (n_running() >= config_.max_num_seqs) return false;
  const Sequence* s = waiting_.front();
  const int32_t bs = kv_.block_size();
  const std::vector<int32_t> hit =
      s->prompt_logits ? std::vector<int32_t>{}
                       : kv_.match_prefix(s->block_hashes, (s->size() - 1) / bs);
  const int32_t n_hit = static_cast<int32_t>(hit.size()) * bs;
  const int32_t budget = std::max(1, config_.max_num_batched_tokens - n_running());
  const int32_t n = std::min({s->size() - n_hit, budget, prompt_chunk_limit(*s)});
  return kv_.admit_cost(hit, int64_t{n_hit} + n) <= kv_.n_free_blocks();
}

// kPriority: the running sequences of a strictly worse priority than the waiting head give
// way to it, the worst first, until it fits. Nothing is scheduled yet this step. Returns the
// last one preempted (the best of them), or null.
const Sequence* Scheduler::preempt_for_priority(ScheduledStep* step) {
  const Sequence* last = nullptr;
  while (!waiting_.empty() && !running_.empty()) {
    const Sequence* head = waiting_.front();
    if (head->n_placeholders > 0 || head->priority >= running_.back()->priority) break;
    if (head_fits()) break;
    last = running_.back();
    preempt_back(step);
  }
  return last;
}

void Scheduler::preempt_back(ScheduledStep* step) {
  Sequence* s = running_.back();
  running_.pop_back();
  drop_guesses(s, 0);
  kv_.free(s->id);
  if (drafter_) drafter_->release(s->id);
  s->n_computed = 0;
  s->status = SeqStatus::kWaiting;
  ++s->n_preemptions;
  ++stats_.n_preemptions;
  step->preempted.push_back(s->id);
  enqueue_waiting(s);
}

// A sequence whose prompt logits are kept takes its prompt in chunks of kMaxPromptLogitRows.
int32_t Scheduler::prompt_chunk_limit(const Sequence& s) const {
  if (!s.prompt_logits || s.n_computed >= s.n_prompt) return std::numeric_limits<int32_t>::max();
  return std::max(1, std::min(kMaxPromptLogitRows, s.n_prompt - s.n_computed));
}

void Scheduler::add_scheduled(Sequence* s, int32_t n, ScheduledStep* step, int32_t* budget) {
  const bool sample = s->n_computed + n == s->size();
  JINX_CHECK(s->n_draft == 0 || sample, "sequence ", s->id, " has guesses past its chunk");
  step->seqs.push_back(ScheduledSeq{s->id, s->n_computed, n, sample, s->n_draft});
  stats_.n_draft_tokens += s->n_draft;
  step->n_tokens += n;
  step->n_sampling += sample;
  *budget -= n;
}

// Tokens (>= 1, <= want) that running_[index] can take now, after preempting the newest
// running sequences if not even one fits; 0 if it was itself preempted. Grows its table.
int32_t Scheduler::fit_or_preempt(size_t index, int32_t want, int32_t* n_decode_left,
                                  ScheduledStep* step) {
  Sequence* s = running_[index];
  for (;;) {
    const int64_t room = kv_.max_tokens_fitting(s->id) - s->n_computed;
    const int32_t n = static_cast<int32_t>(std::min<int64_t>(want, room));
    if (n >= 1) {
      JINX_CHECK(kv_.grow(s->id, int64_t{s->n_computed} + n), "KV grow failed after a fit check");
      return n;
    }
    Sequence* victim = running_.back();
    // Every sequence after `index` is still unscheduled this step, so freeing it is safe.
    if (victim != s && victim->n_uncomputed() == 1 && !victim->draining) --*n_decode_left;
    preempt_back(step);
    if (victim == s) return 0;
  }
}

// Guesses a decoding sequence may take: max_draft_, never past its max_output or
// max_model_len (counting the token sampled after them), none while its input is unknown.
int32_t Scheduler::guess_limit(const Sequence* s) const {
  int32_t k = max_draft_;
  if (s->max_output > 0) k = std::min(k, s->max_output - s->n_generated() - 1);
  k = std::min(k, config_.max_model_len - s->size() - 1);
  return s->n_placeholders > 0 ? 0 : std::max(k, 0);
}

// Asks the drafter, in one call, for the guesses of every running sequence that decodes this
// step; draft_[i] holds running_[i]'s (empty for the others). A budget too small for all of
// them only cuts the guesses later (add_guesses), so a sequence's guesses never depend on its
// place in the batch.
void Scheduler::propose_guesses(int32_t budget) {
  draft_.resize(running_.size());
  draft_probs_.resize(running_.size());
  for (std::vector<int32_t>& d : draft_) d.clear();  // none left from an earlier step
  for (std::vector<float>& d : draft_probs_) d.clear();
  draft_reqs_.clear();
  int32_t n_decodes = 0;
  for (const Sequence* s : running_) n_decodes += s->n_uncomputed() == 1 && !s->draining;
  if (budget - n_decodes <= 0) return;
  for (size_t i = 0; i < running_.size(); ++i) {
    const Sequence* s = running_[i];
    if (s->draining || s->n_uncomputed() != 1) continue;
    const int32_t k = std::min(guess_limit(s), budget - n_decodes);
    if (k > 0)
      draft_reqs_.push_back(DraftSeq{s->id, s->tokens, k, &draft_[i], s->draft_sampling.get(),
                                     s->draft_sampling ? &draft_probs_[i] : nullptr});
  }
  if (draft_reqs_.empty()) return;
  drafter_->propose(draft_reqs_);
  for (const DraftSeq& r : draft_reqs_) {
    JINX_CHECK(static_cast<int32_t>(r.out->size()) <= r.max_tokens, "the drafter proposed ",
               r.out->size(), " tokens for at most ", r.max_tokens);
    for (int32_t t : *r.out) JINX_CHECK(t >= 0, "the drafter proposed token ", t);
    JINX_CHECK(!r.probs || r.probs->empty() || r.out->empty() ||
                   r.probs->size() % r.out->size() == 0,
               "the drafter's distributions do not match its ", r.out->size(), " guesses");
  }
}

// Appends draft_[index]'s guesses after decoding running_[index] (at most `room`); returns
// how many.
int32_t Scheduler::add_guesses(size_t index, int32_t room) {
  Sequence* s = running_[index];
  const std::vector<int32_t>& g = draft_[index];
  const int32_t k = std::min({room, guess_limit(s), static_cast<int32_t>(g.size())});
  if (k <= 0) {
    s->draft_probs.clear();
    return 0;
  }
  s->tokens.insert(s->tokens.end(), g.begin(), g.begin() + k);
  s->n_draft = k;
  // The guesses' distributions move over (k rows of vocab floats each: no copy).
  std::vector<float>& q = draft_probs_[index];
  const size_t row = q.empty() ? 0 : q.size() / g.size();
  s->draft_probs.swap(q);
  s->draft_probs.resize(row * static_cast<size_t>(k));
  return k;
}

// Keeps the first n_keep guesses of s, drops the rest.
void Scheduler::drop_guesses(Sequence* s, int32_t n_keep) {
  JINX_CHECK(n_keep >= 0 && n_keep <= s->n_draft, "keeping ", n_keep, " of ", s->n_draft,
             " guesses");
  s->tokens.resize(s->tokens.size() - static_cast<size_t>(s->n_draft - n_keep));
  if (n_keep == 0 || s->n_draft == 0) {
    s->draft_probs.clear();
  } else if (!s->draft_probs.empty()) {
    s->draft_probs.resize(s->draft_probs.size() / static_cast<size_t>(s->n_draft) *
                          static_cast<size_t>(n_keep));
  }
  s->n_draft = n_keep;
}

void Scheduler::schedule_running(ScheduledStep* step, int32_t* budget) {
  if (drafter_) propose_guesses(*budget);
  int32_t n_decode_left = 0;
  for (const Sequence* s : running_) n_decode_left += s->n_uncomputed() == 1 && !s->draining;
  for (size_t i = 0; i < running_.size() && *budget > 0; ++i) {
    Sequence* s = running_[i];
    if (s->draining) continue;  // its last token is being sampled
    const bool decode = s->n_uncomputed() == 1;
    if (decode) --n_decode_left;
    int32_t want = decode ? 1 : std::min(s->n_uncomputed(), *budget - n_decode_left);
    if (!decode) want = std::min(want, prompt_chunk_limit(*s));
    if (want <= 0) continue;
    if (decode && drafter_) want += add_guesses(i, *budget - 1 - n_decode_left);
    const int32_t n = fit_or_preempt(i, want, &n_decode_left, step);
    if (n == 0) break;  // s was the newest and got preempted: nothing runs after it
    if (s->n_draft >= n) drop_guesses(s, n - 1);  // the guesses whose slots fit
    add_scheduled(s, n, step, budget);
  }
}

// Admits from the head of the queue; stops at `floor` (a sequence preempted this step for a
// better one: it does not come back in the same step, nor does anything behind it).
void Scheduler::admit_waiting(ScheduledStep* step, int32_t* budget, const Sequence* floor) {
  const int32_t bs = kv_.block_size();
  while (!waiting_.empty() && n_running() < config_.max_num_seqs && *budget > 0) {
    Sequence* s = waiting_.front();
    if (s->n_placeholders > 0) break;  // preempted while its token was being sampled
    if (floor && !ahead(s, floor)) break;
    // Never match the last token: its logits must be computed (and none when every prompt
    // position's logits are wanted).
    const std::vector<int32_t> hit =
        s->prompt_logits ? std::vector<int32_t>{}
                         : kv_.match_prefix(s->block_hashes, (s->size() - 1) / bs);
    const int32_t n_hit = static_cast<int32_t>(hit.size()) * bs;
    const int32_t n = std::min({s->size() - n_hit, *budget, prompt_chunk_limit(*s)});
    if (!kv_.admit(s->id, hit, int64_t{n_hit} + n)) break;  // FCFS: the head waits for room
    waiting_.pop_front();
    s->status = SeqStatus::kRunning;
    s->n_computed = n_hit;
    if (s->n_preemptions == 0) s->n_cached_prompt = n_hit;
    stats_.n_prefix_hit_tokens += n_hit;
    // In policy order: after every running sequence under FCFS (it is the oldest waiting one,
    // and preemption takes the newest running ones first), maybe before some under kPriority.
    running_.insert(std::upper_bound(running_.begin(), running_.end(), s, policy_order()), s);
    add_scheduled(s, n, step, budget);
  }
}

ScheduledStep Scheduler::schedule() {
  JINX_CHECK(open_.empty(), "schedule() called again before on_step_done()");
  return schedule_step();
}

ScheduledStep Scheduler::schedule_ahead() {
  if (open_.empty()) return schedule_step();
  JINX_CHECK(open_.size() == 1 && !open_.front().advanced,
             "schedule_ahead(): the step before the last one is not done yet");
  JINX_CHECK(!drafter_, "schedule_ahead(): overlap scheduling does not take speculative tokens");
  advance(open_.front().seqs);
  open_.front().advanced = true;
  return schedule_step();
}

// Takes a running step as done before its tokens are known: chunks computed, a placeholder
// for each sampled token.
void Scheduler::advance(std::span<const ScheduledSeq> seqs) {
  for (const ScheduledSeq& sc : seqs) {
    auto it = seqs_.find(sc.id);
    if (it == seqs_.end()) continue;  // ended (its row in that step is wasted)
    Sequence& s = *it->second;
    if (s.pending_finish != FinishReason::kNone) continue;  // retired by this schedule
    s.n_computed += sc.n_new;
    commit_known(&s);
    if (!sc.sample) continue;
    s.tokens.push_back(kPlaceholderToken);
    s.n_placeholders = 1;
    s.draining = s.size() >= config_.max_model_len ||
                 (s.max_output > 0 && s.n_generated() >= s.max_output);
  }
}

ScheduledStep Scheduler::schedule_step() {
  ScheduledStep step;
  apply_pending(&step);
  int32_t budget = config_.max_num_batched_tokens;
  const Sequence* floor =
      config_.policy == SchedulingPolicy::kPriority ? preempt_for_priority(&step) : nullptr;
  const size_t n_preempted = step.preempted.size();
  schedule_running(&step, &budget);
  if (step.preempted.size() == n_preempted) admit_waiting(&step, &budget, floor);
  if (!step.seqs.empty()) {
    open_.push_back(OpenStep{step.seqs, false});
    ++stats_.n_steps;
    stats_.n_computed_tokens += step.n_tokens;
  }
  return step;
}

// Validates `sampled` against a step (see on_step_done()) into by_id; throws on a bad entry.
void Scheduler::check_samples(std::span<const ScheduledSeq> seqs,
                              std::span<const SampledToken> sampled,
                              std::unordered_map<SeqId, const SampledToken*>* by_id) const {
  for (const SampledToken& t : sampled) {
    if (t.token < 0) fail("sampled token ", t.token, " for sequence ", t.seq, " is negative");
    if (!by_id->emplace(t.seq, &t).second) fail("two sampled tokens for sequence ", t.seq);
  }
  size_t n_matched = 0;
  for (const ScheduledSeq& sc : seqs) {
    if (!sc.sample) continue;
    // Ended since: an abort applied by schedule_ahead(), or (overlap) a stop decided by the
    // step before this one's on_step_done().
    const bool gone = !seqs_.count(sc.id);
    const auto it = by_id->find(sc.id);
    const bool given = it != by_id->end();
    if (!given && !gone) fail("no sampled token for sequence ", sc.id);
    if (given && (it->second->n_accepted < 0 || it->second->n_accepted > sc.n_draft)) {
      fail("sequence ", sc.id, " accepted ", it->second->n_accepted, " of ", sc.n_draft,
           " speculative tokens");
    }
    n_matched += given;
  }
  if (n_matched != by_id->size()) {
    fail("got ", by_id->size(), " sampled tokens, ", by_id->size() - n_matched,
         " of them for sequences that did not sample");
  }
}

StepResult Scheduler::on_step_done(std::span<const SampledToken> sampled) {
  JINX_CHECK(!open_.empty() || sampled.empty(), "on_step_done() without a scheduled step");
  StepResult result;
  if (open_.empty()) return result;
  const OpenStep& step = open_.front();
  std::unordered_map<SeqId, const SampledToken*> by_id;
  check_samples(step.seqs, sampled, &by_id);  // before changing anything
  finish_step(step.seqs, by_id, step.advanced, &result);
  open_.pop_front();
  return result;
}

void Scheduler::finish_step(std::span<const ScheduledSeq> seqs,
                            const std::unordered_map<SeqId, const SampledToken*>& by_id,
                            bool advanced, StepResult* result) {
  bool any_done = false;
  for (const ScheduledSeq& sc : seqs) {
    auto it = seqs_.find(sc.id);
    if (it == seqs_.end()) continue;  // ended since (overlap scheduling only)
    Sequence& s = *it->second;
    if (!advanced) {  // (an abort that dropped a placeholder leaves that row uncounted)
      s.n_computed = std::min(s.n_computed + sc.n_new, s.size());
      commit_known(&s);
    }
    if (!sc.sample) continue;
    if (s.n_draft > 0) {  // the guesses that stand are computed tokens now; the rest go
      const int32_t kept = s.pending_finish != FinishReason::kNone ? 0 : by_id.at(sc.id)->n_accepted;
      drop_guesses(&s, kept);
      s.n_draft = 0;  // the kept ones are known now
      s.draft_probs.clear();
      s.n_computed = std::min(s.n_computed, s.size());
      if (kv_.contains(s.id)) kv_.shrink(s.id, s.size());  // the slots of dropped guesses
      stats_.n_accepted_tokens += kept;
    }
    if (advanced && s.n_placeholders == 0) continue;  // aborted before schedule_ahead()
    if (s.pending_finish != FinishReason::kNone) {  // aborted: its token is dropped
      if (s.n_placeholders > 0) s.tokens.pop_back();
      s.n_placeholders = 0;
      continue;
    }
    const SampledToken& t = *by_id.at(sc.id);
    if (s.n_placeholders > 0) {
      JINX_CHECK(s.tokens.back() == kPlaceholderToken, "sequence ", s.id, " lost its placeholder");
      s.tokens.back() = t.token;
      s.n_placeholders = 0;
    } else {
      s.tokens.push_back(t.token);
    }
    extend_hashes(&s);
    if (kv_.contains(s.id)) commit_known(&s);  // (a preempted sequence holds no blocks)
    FinishReason reason = t.finish;
    if (reason == FinishReason::kNone &&
        (s.size() >= config_.max_model_len ||
         (s.max_output > 0 && s.n_generated() >= s.max_output))) {
      reason = FinishReason::kLength;
    }
    s.draining = false;
    if (reason != FinishReason::kNone) {
      s.status = SeqStatus::kFinished;  // marks it for removal from running_ / waiting_ below
      s.finish_reason = reason;
      any_done = true;
    }
  }
  if (!any_done) return;
  std::vector<Sequence*> done;
  auto take = [&](Sequence* s) {
    if (s->status != SeqStatus::kFinished) return false;
    done.push_back(s);
    return true;
  };
  std::erase_if(running_, take);
  std::erase_if(waiting_, take);  // preempted while its last token was sampled
  for (Sequence* s : done) result->finished.push_back(retire(s, s->finish_reason));
}

void Scheduler::check_invariants() const {
  kv_.check_invariants();
  JINX_CHECK(seqs_.size() == running_.size() + waiting_.size(), "scheduler tracks ", seqs_.size(),
             " sequences but ", running_.size(), " run and ", waiting_.size(), " wait");
  JINX_CHECK(kv_.n_sequences() == n_running(), kv_.n_sequences(), " block tables for ", n_running(),
             " running sequences");
  JINX_CHECK(n_running() <= config_.max_num_seqs, "more running sequences than max_num_seqs");
  const int32_t bs = kv_.block_size();
  for (size_t i = 0; i < running_.size(); ++i) {
    const Sequence* s = running_[i];
    JINX_CHECK(s->status == SeqStatus::kRunning, "sequence ", s->id, " runs in state ",
               int(s->status));
    JINX_CHECK(i == 0 || ahead(running_[i - 1], s), "running list out of order");
    const int64_t n_blocks = static_cast<int64_t>(kv_.block_table(s->id).size());
    JINX_CHECK(s->n_computed >= 0 && s->n_computed <= s->size(), "sequence ", s->id, " n_computed ",
               s->n_computed, " of ", s->size());
    // (An abort that dropped an overlapped step's placeholder leaves the slot of that step's
    // wasted row, until the next schedule() frees everything.)
    const int32_t slack = s->pending_finish != FinishReason::kNone ? 1 : 0;
    JINX_CHECK(n_blocks >= kv_.blocks_for(s->n_computed) &&
                   n_blocks <= kv_.blocks_for(s->size() + slack),
               "sequence ", s->id, " holds ", n_blocks, " blocks for ", s->n_computed,
               " computed of ", s->size(), " tokens");
  }
  for (size_t i = 0; i < waiting_.size(); ++i) {
    const Sequence* s = waiting_[i];
    JINX_CHECK(s->status == SeqStatus::kWaiting && s->n_computed == 0 && !kv_.contains(s->id),
               "waiting sequence ", s->id, " holds KV state");
    JINX_CHECK(i == 0 || ahead(waiting_[i - 1], s), "waiting queue out of order");
  }
  for (const auto& [id, s] : seqs_) {
    const size_t want = kv_.prefix_caching() ? static_cast<size_t>(s->n_known() / bs) : 0;
    JINX_CHECK(s->block_hashes.size() == want, "sequence ", id, " has ", s->block_hashes.size(),
               " block hashes for ", s->n_known(), " known tokens");
    JINX_CHECK(s->n_placeholders == 0 ||
                   (s->n_placeholders == 1 && s->tokens.back() == kPlaceholderToken),
               "sequence ", id, " has a bad placeholder");
  }
}

}  // namespace jinx
