// Scheduler tests, no model. A Driver plays the engine loop: it schedules a step, builds the
// batch, runs a fake forward that writes into a fake KV store through the slot mapping and then
// checks that every sequence's whole context (through its block table) holds exactly what its
// own tokens would have produced, samples a token that depends on the whole context, and hands
// it back. The expected outputs come from generating each prompt alone on plain token vectors,
// so a wrong block, a stale cached block, a lost token or a bad recompute shows up as a
// mismatch.
#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/check.h"
#include "engine/batch.h"

namespace jinx {
namespace {

uint64_t mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7fb5d329728ea185ULL;
  x ^= x >> 27;
  x *= 0x81dadef4bc2dd44dULL;
  x ^= x >> 33;
  return x;
}

// What the "KV" of position p is: a function of tokens [0, p].
std::vector<uint64_t> prefix_hashes(std::span<const int32_t> tokens) {
  std::vector<uint64_t> h(tokens.size());
  uint64_t acc = 0x1234;
  for (size_t p = 0; p < tokens.size(); ++p) h[p] = acc = mix(acc * 31 + tokens[p] + 1);
  return h;
}

int32_t next_token(uint64_t last_hash, int32_t vocab) {
  return static_cast<int32_t>(mix(last_hash ^ 0xabcdef) % vocab);
}

// Generation of one prompt alone: the reference every scheduled run must reproduce.
std::vector<int32_t> reference(std::vector<int32_t> tokens, int32_t max_tokens, int32_t vocab,
                               int32_t eos, int32_t max_model_len) {
  std::vector<int32_t> out;
  for (;;) {
    const int32_t t = next_token(prefix_hashes(tokens).back(), vocab);
    out.push_back(t);
    tokens.push_back(t);
    if (t == eos || static_cast<int32_t>(out.size()) >= max_tokens ||
        static_cast<int32_t>(tokens.size()) >= max_model_len) {
      return out;
    }
  }
}

// Speculative decoding: guesses the reference's real continuation, each guess wrong with
// probability 1/3 (decided by a hash of the tokens before it), so steps keep all, some or none
// of their guesses.
class OracleDrafter final : public StatelessDrafter {
 public:
  explicit OracleDrafter(int32_t vocab) : vocab_(vocab) {}
  void guess(std::span<const int32_t> tokens, int32_t max_tokens,
             std::vector<int32_t>* out) const override {
    out->clear();
    uint64_t h = prefix_hashes(tokens).back();
    for (int32_t i = 0; i < max_tokens; ++i) {
      int32_t g = next_token(h, vocab_);
      if (mix(h + 7) % 3 == 0) g = (g + 1) % vocab_;
      out->push_back(g);
      h = mix(h * 31 + g + 1);  // as prefix_hashes() continues
    }
  }

 private:
  int32_t vocab_;
};

kv::KVCacheConfig kv_config(int32_t n_blocks, int32_t block_size, bool caching = true) {
  kv::KVCacheConfig c;
  c.n_blocks = n_blocks;
  c.block_size = block_size;
  c.enable_prefix_caching = caching;
  c.hash_seed = 99;
  return c;
}

SchedulerConfig sched_config(int32_t max_num_seqs, int32_t budget, int32_t max_model_len = 0) {
  SchedulerConfig c;
  c.max_num_seqs = max_num_seqs;
  c.max_num_batched_tokens = budget;
  c.max_model_len = max_model_len;
  return c;
}

std::vector<int32_t> tokens_from(int32_t n, int32_t first) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

// With `overlap`, the Driver plays an engine with overlap scheduling on a device that runs
// steps in order: step k is scheduled (schedule_ahead) and its batch built with placeholder
// tokens before step k-1 has run; step k-1's forward runs only then (lazily, as a GPU would
// finish it), reading its placeholders from step k-2's samples, and its samples go to
// on_step_done().
class Driver {
 public:
  Driver(const SchedulerConfig& sc, const kv::KVCacheConfig& kc, int32_t vocab = 1000,
         int32_t eos = -1, bool overlap = false)
      : sched(sc, kc), vocab_(vocab), eos_(eos), overlap_(overlap) {
    kv_store_.assign(static_cast<size_t>(kc.n_blocks) * kc.block_size, 0);
  }

  SeqId add(std::vector<int32_t> prompt, int32_t max_tokens, bool prompt_logits = false,
            int32_t priority = 0) {
    const SeqId id = sched.add(prompt, max_tokens, -1, prompt_logits, priority);
    waiting_keys_[id] = key(id, priority);
    mirror_[id] = prompt;
    prompts_[id] = std::move(prompt);
    max_tokens_[id] = max_tokens;
    return id;
  }

  int32_t max_draft = 0;  // set_drafter()'s count, for the checks

  // With overlap, this share of steps (in percent) is completed before the next is scheduled,
  // as the engine does when a step has rows sampled on the host.
  int sync_percent = 0;

  // One engine iteration. `abort_in_flight` are aborted between schedule() and on_step_done().
  ScheduledStep step(const std::vector<SeqId>& abort_in_flight = {}) {
    if (overlap_ && pending_ && static_cast<int>(sync_rng_() % 100) < sync_percent) {
      const std::vector<SampledToken> sampled = forward(*pending_);
      StepResult r = sched.on_step_done(sampled);
      sched.check_invariants();
      for (FinishedSeq& f : r.finished) record(std::move(f));
      pending_.reset();
    }
    ScheduledStep st = overlap_ ? sched.schedule_ahead() : sched.schedule();
    sched.check_invariants();
    check_step(st);
    for (const FinishedSeq& f : st.finished) record(f);
    std::optional<Snapshot> next;
    if (!st.empty()) next = snapshot(st);
    if (!overlap_) {
      if (!next) return st;
      std::swap(pending_, next);
    }
    for (SeqId id : abort_in_flight) sched.abort(id);
    if (pending_) {
      const std::vector<SampledToken> sampled = forward(*pending_);
      StepResult r = sched.on_step_done(sampled);
      sched.check_invariants();
      for (FinishedSeq& f : r.finished) record(std::move(f));
      // (overlap) a sequence preempted by this schedule has no token to decode next
      for (SeqId id : st.preempted) std::erase(last_sampled_seqs_, id);
    }
    pending_ = std::move(next);
    if (!st.empty()) ++n_steps;
    return st;
  }

  // Steps until every request is done; fails (instead of hanging) after max_steps.
  void drain(int max_steps) {
    for (int i = 0; i < max_steps && (sched.has_unfinished() || pending_); ++i) step();
    ASSERT_FALSE(sched.has_unfinished())
        << "requests still unfinished after " << max_steps << " steps";
    ASSERT_FALSE(pending_.has_value());
  }

  // Every finished, non-aborted request produced exactly its reference output; aborted ones a
  // prefix of it.
  void check_outputs() const {
    for (const auto& [id, f] : finished) {
      const auto want = reference(prompts_.at(id), max_tokens_.at(id), vocab_, eos_,
                                  sched.config().max_model_len);
      if (f.reason == FinishReason::kAborted) {
        ASSERT_LE(f.output.size(), want.size()) << "seq " << id;
        EXPECT_TRUE(std::equal(f.output.begin(), f.output.end(), want.begin())) << "seq " << id;
      } else {
        EXPECT_EQ(f.output, want) << "seq " << id;
        const bool stop = !f.output.empty() && f.output.back() == eos_;
        EXPECT_EQ(f.reason, stop ? FinishReason::kStop : FinishReason::kLength) << "seq " << id;
      }
    }
  }

  // At rest every block is free or cached, none referenced.
  void check_all_blocks_free() const {
    EXPECT_EQ(sched.kv().n_sequences(), 0);
    EXPECT_EQ(sched.kv().n_free_blocks(), sched.kv().n_blocks());
    for (int32_t b = 0; b < sched.kv().n_blocks(); ++b)
      EXPECT_EQ(sched.kv().pool().ref_count(b), 0);
    sched.check_invariants();
  }

  Scheduler sched;
  std::map<SeqId, FinishedSeq> finished;
  std::vector<ScheduledStep> log;  // filled when keep_log
  bool keep_log = false;
  int64_t n_steps = 0;
  std::set<SeqId> admitted;

 private:
  void record(FinishedSeq f) {
    ASSERT_FALSE(finished.count(f.id)) << "seq " << f.id << " finished twice";
    finished.emplace(f.id, std::move(f));
  }

  // Per-step properties: budget, max_num_seqs, FCFS admission, decodes never starved.
  void check_step(const ScheduledStep& st) {
    if (keep_log) log.push_back(st);
    const auto& cfg = sched.config();
    int32_t n_tokens = 0, n_sampling = 0;
    std::set<SeqId> in_step;
    for (const ScheduledSeq& sc : st.seqs) {
      EXPECT_GE(sc.n_new, 1);
      n_tokens += sc.n_new;
      n_sampling += sc.sample;
      EXPECT_TRUE(in_step.insert(sc.id).second) << "seq " << sc.id << " scheduled twice";
      const Sequence& s = sched.sequence(sc.id);
      EXPECT_EQ(sc.start, s.n_computed);
      EXPECT_EQ(sc.sample, sc.start + sc.n_new == s.size());
      EXPECT_EQ(sc.n_draft, s.n_draft);
      EXPECT_LE(sc.n_draft, max_draft);
      if (sc.n_draft > 0) {  // never past the output or length limits
        EXPECT_LT(s.size(), cfg.max_model_len);
        EXPECT_LT(s.n_generated(), max_tokens_.at(sc.id));
      }
      EXPECT_FALSE(std::count(st.preempted.begin(), st.preempted.end(), sc.id))
          << "seq " << sc.id << " preempted and scheduled in one step";
    }
    // First admissions in policy order: nothing that waited with a better key is left behind.
    for (const auto& f : st.finished) waiting_keys_.erase(f.id);
    for (const ScheduledSeq& sc : st.seqs) {
      if (!admitted.insert(sc.id).second) continue;
      const auto k = waiting_keys_.at(sc.id);
      waiting_keys_.erase(sc.id);
      for (const auto& [other, ko] : waiting_keys_)
        EXPECT_FALSE(ko < k) << "seq " << sc.id << " admitted before seq " << other;
    }
    EXPECT_EQ(n_tokens, st.n_tokens);
    EXPECT_EQ(n_sampling, st.n_sampling);
    EXPECT_LE(n_tokens, cfg.max_num_batched_tokens);
    EXPECT_LE(sched.n_running(), cfg.max_num_seqs);
    std::set<SeqId> gone(st.preempted.begin(), st.preempted.end());
    for (const auto& f : st.finished) gone.insert(f.id);
    // Sequences that sampled in the last step still running: each decodes now (a draining one,
    // whose last token that was, excepted).
    std::set<SeqId> decoding;
    if (pending_ || last_sampled_seqs_.size())
      for (SeqId d : (overlap_ && pending_ ? pending_->sample_ids : last_sampled_seqs_))
        if (sched.contains(d) && !sched.sequence(d).draining) decoding.insert(d);
    for (SeqId d : decoding) {
      if (gone.count(d)) continue;
      auto it = std::find_if(st.seqs.begin(), st.seqs.end(),
                             [&](const ScheduledSeq& sc) { return sc.id == d; });
      ASSERT_NE(it, st.seqs.end())
          << "decoding seq " << d << " starved at step " << n_steps << " (n_computed "
          << sched.sequence(d).n_computed << " of " << sched.sequence(d).size() << ", "
          << st.seqs.size() << " scheduled, " << st.n_tokens << " tokens)";
      EXPECT_EQ(it->n_new, 1 + it->n_draft) << "seq " << d << " step " << n_steps << " start " << it->start
                              << " size " << sched.sequence(d).size() << " preemptions "
                              << sched.sequence(d).n_preemptions;
      EXPECT_TRUE(it->sample);
    }
  }

  // A built batch as the device gets it: placeholder tokens turned into references
  // -(k + 1) to sample row k of the step before (which must have sampled that sequence).
  struct Snapshot {
    Batch b;
    std::vector<SeqId> sample_ids;  // per sample row
  };

  Snapshot snapshot(const ScheduledStep& st) {
    Snapshot sn{build_batch(st, sched), {}};
    Batch& b = sn.b;
    const int32_t bs = b.block_size;
    std::set<int64_t> slots;
    for (int32_t i = 0; i < b.n_seqs; ++i) {
      const Sequence& s = sched.sequence(b.seq_ids[i]);
      for (int32_t r = b.query_start[i]; r < b.query_start[i + 1]; ++r) {
        const int32_t p = b.positions[r];
        EXPECT_EQ(b.token_ids[r], s.tokens[p]);
        const int64_t slot = b.slot_mapping[r];
        EXPECT_TRUE(slots.insert(slot).second) << "slot " << slot << " written twice";
        const int32_t block = static_cast<int32_t>(slot / bs);
        // New KV only ever goes into a private block that is not in the prefix cache.
        EXPECT_EQ(sched.kv().pool().ref_count(block), 1) << "write into shared block " << block;
        EXPECT_FALSE(sched.kv().pool().hash_of(block).has_value()) << "write into cached block";
        if (b.token_ids[r] != kPlaceholderToken) continue;
        EXPECT_TRUE(overlap_) << "placeholder without overlap";
        EXPECT_EQ(p, s.size() - 1);
        if (!pending_) {
          ADD_FAILURE() << "placeholder with no step in flight";
          continue;
        }
        const auto& prev = pending_->sample_ids;
        const auto k = std::find(prev.begin(), prev.end(), s.id) - prev.begin();
        EXPECT_LT(k, static_cast<ptrdiff_t>(prev.size())) << "placeholder of a seq that did not sample";
        b.token_ids[r] = static_cast<int32_t>(-(k + 1));
      }
    }
    for (int32_t i : b.sample_seqs) sn.sample_ids.push_back(b.seq_ids[i]);
    return sn;
  }

  // Writes every new token's "KV" through the slot mapping, then checks each sequence's whole
  // context through its block table, then samples. Tokens come from the Driver's own mirror
  // of each sequence (a sequence may have ended since the batch was built).
  // Speculative guesses are checked as an engine does: rows sampled in order until a sample
  // differs from the guess the next row holds.
  std::vector<SampledToken> forward(const Snapshot& sn) {
    const Batch& b = sn.b;
    const int32_t bs = b.block_size;
    std::vector<std::vector<uint64_t>> ph(b.n_seqs);
    for (int32_t i = 0; i < b.n_seqs; ++i) {
      const std::vector<int32_t>& toks = mirror_.at(b.seq_ids[i]);
      std::vector<int32_t> ctx(toks.begin(), toks.begin() + b.positions[b.query_start[i]]);
      for (int32_t r = b.query_start[i]; r < b.query_start[i + 1]; ++r) {
        const int32_t p = b.positions[r];
        int32_t t = b.token_ids[r];
        if (t < 0) t = last_tokens_.at(static_cast<size_t>(-t - 1));  // a placeholder
        if (p < static_cast<int32_t>(toks.size()))  // (past them: guesses)
          EXPECT_EQ(t, toks.at(p)) << "seq " << b.seq_ids[i] << " position " << p;
        ctx.push_back(t);
      }
      ph[i] = prefix_hashes(ctx);
      for (int32_t r = b.query_start[i]; r < b.query_start[i + 1]; ++r)
        kv_store_.at(b.slot_mapping[r]) = ph[i][b.positions[r]];
    }
    for (int32_t i = 0; i < b.n_seqs; ++i) {
      for (int32_t p = 0; p < b.context_len[i]; ++p) {
        const int32_t block = b.block_tables[static_cast<size_t>(i) * b.max_blocks + p / bs];
        const uint64_t got = kv_store_.at(static_cast<size_t>(block) * bs + p % bs);
        if (got != ph[i][p]) {
          ADD_FAILURE() << "seq " << b.seq_ids[i] << " reads wrong KV at position " << p;
          break;
        }
      }
    }
    std::vector<SampledToken> out;
    last_tokens_.assign(b.sample_rows.size(), -1);
    last_sampled_seqs_.clear();
    const size_t n = b.sample_rows.size();
    for (size_t k0 = 0, k1 = 0; k0 < n; k0 = k1) {
      const int32_t i = b.sample_seqs[k0];
      for (k1 = k0 + 1; k1 < n && b.sample_seqs[k1] == i;) ++k1;
      const SeqId id = b.seq_ids[i];
      EXPECT_EQ(b.sample_rows[k1 - 1], b.query_start[i + 1] - 1);
      std::vector<int32_t>& toks = mirror_.at(id);
      for (size_t k = k0; k < k1; ++k) {
        const int32_t row = b.sample_rows[k];
        EXPECT_EQ(row, b.sample_rows[k0] + static_cast<int32_t>(k - k0));
        EXPECT_EQ(b.positions[row], static_cast<int32_t>(toks.size()) - 1);
        const int32_t t = next_token(ph[i][b.positions[row]], vocab_);
        last_tokens_[k] = t;
        toks.push_back(t);
        if (!sched.contains(id)) break;  // ended meanwhile: the row was wasted
        const int32_t n_generated = static_cast<int32_t>(toks.size()) - sched.sequence(id).n_prompt;
        FinishReason fr = FinishReason::kNone;
        if (t == eos_)
          fr = FinishReason::kStop;
        else if (n_generated >= max_tokens_.at(id))
          fr = FinishReason::kLength;
        const bool guessed = k + 1 < k1 && b.token_ids[row + 1] == t;
        if (fr != FinishReason::kNone || !guessed) {
          last_sampled_seqs_.push_back(id);
          out.push_back(SampledToken{id, t, fr, static_cast<int32_t>(k - k0)});
          break;
        }
      }
    }
    return out;
  }

  int32_t vocab_, eos_;
  bool overlap_ = false;
  std::optional<Snapshot> pending_;  // built and not yet run (overlap: the step in flight)
  std::mt19937 sync_rng_{17};
  std::vector<int32_t> last_tokens_;  // the last forward's samples, by sample row
  std::vector<SeqId> last_sampled_seqs_;
  std::unordered_map<SeqId, std::vector<int32_t>> mirror_;  // prompt + every sample
  std::vector<uint64_t> kv_store_;
  std::unordered_map<SeqId, std::vector<int32_t>> prompts_;
  std::unordered_map<SeqId, int32_t> max_tokens_;
  // Sequences never admitted yet, by their policy order key.
  std::map<SeqId, std::pair<int64_t, SeqId>> waiting_keys_;
  std::pair<int64_t, SeqId> key(SeqId id, int32_t priority) const {
    return {sched.config().policy == SchedulingPolicy::kPriority ? priority : 0, id};
  }
};

const ScheduledSeq* find(const ScheduledStep& st, SeqId id) {
  for (const ScheduledSeq& sc : st.seqs) {
    if (sc.id == id) return &sc;
  }
  return nullptr;
}

TEST(Scheduler, SinglePromptPrefillsInBudgetChunksThenDecodes) {
  Driver d(sched_config(4, 32), kv_config(64, 16));
  const SeqId id = d.add(tokens_from(100, 1), 5);
  std::vector<int32_t> chunks;
  for (int i = 0; i < 4; ++i) chunks.push_back(d.step().n_tokens);
  EXPECT_EQ(chunks, (std::vector<int32_t>{32, 32, 32, 4}));
  EXPECT_EQ(d.sched.sequence(id).n_generated(), 1);
  d.drain(10);
  EXPECT_EQ(d.n_steps, 8);  // 4 prefill steps (the last samples) + 4 decodes
  EXPECT_EQ(d.sched.stats().n_computed_tokens, 104);
  d.check_outputs();
  d.check_all_blocks_free();
}

// Prompt logprobs: no prefix-cache hit (every position's logits are computed), the prompt in
// chunks of at most kMaxPromptLogitRows, and the batch asks for every prompt row but the last.
TEST(Scheduler, PromptLogitsComputeTheWholePromptInCappedChunks) {
  Driver d(sched_config(4, 2048), kv_config(256, 16));
  const std::vector<int32_t> prompt = tokens_from(600, 1);
  d.add(prompt, 2);
  d.drain(10);  // its blocks are now in the prefix cache
  const SeqId id = d.add(prompt, 2, /*prompt_logits=*/true);
  std::vector<int32_t> chunks;
  while (d.sched.sequence(id).n_generated() == 0) chunks.push_back(d.step().n_tokens);
  EXPECT_EQ(chunks, (std::vector<int32_t>{256, 256, 88}));
  EXPECT_EQ(d.sched.sequence(id).n_cached_prompt, 0);
  d.drain(10);
  d.check_outputs();
  d.check_all_blocks_free();
  // The batch builder: rows at positions < prompt_logits_end, sample row excluded.
  std::vector<int32_t> toks(20, 7), table(2, 0);
  table[1] = 1;
  const BatchSeq a{0, toks, table, 0, 20, true, 0, -1, 19};
  const BatchSeq b{1, toks, table, 16, 4, true, 0, -1, 0};
  const std::vector<BatchSeq> seqs{b, a};
  const Batch batch = build_batch(seqs, 16);
  ASSERT_EQ(batch.prompt_rows.size(), 19u);
  EXPECT_EQ(batch.prompt_rows.front(), 4);  // after b's 4 rows
  EXPECT_EQ(batch.prompt_rows.back(), 22);
  EXPECT_EQ(batch.prompt_seqs.front(), 1);
  EXPECT_EQ(batch.out_rows.size(), 2u + 19u);  // two sample rows first
  EXPECT_EQ(batch.out_rows[0], 3);
  EXPECT_EQ(batch.out_rows[1], 23);
  EXPECT_EQ(batch.out_rows[2], 4);
}

TEST(Scheduler, TokenBudgetRespectedEveryStep) {
  Driver d(sched_config(8, 40), kv_config(256, 8));
  std::mt19937 gen(5);
  for (int i = 0; i < 30; ++i) {
    d.add(tokens_from(1 + static_cast<int32_t>(gen() % 150), i * 7), 1 + gen() % 30);
  }
  d.keep_log = true;
  d.drain(2000);
  int64_t total = 0;
  for (const ScheduledStep& st : d.log) {
    EXPECT_LE(st.n_tokens, 40);
    total += st.n_tokens;
  }
  EXPECT_EQ(total, d.sched.stats().n_computed_tokens);
  // While prompts wait, the budget is used in full (the pool is never the limit here).
  EXPECT_EQ(d.log.front().n_tokens, 40);
  d.check_outputs();
  d.check_all_blocks_free();
}

TEST(Scheduler, ChunkedLongPromptInterleavesWithRunningDecodes) {
  Driver d(sched_config(8, 64), kv_config(512, 16));
  std::vector<SeqId> streams;
  for (int i = 0; i < 3; ++i) streams.push_back(d.add(tokens_from(10, 100 * i), 200));
  const ScheduledStep first = d.step();
  EXPECT_EQ(first.n_tokens, 30);
  EXPECT_EQ(first.n_sampling, 3);
  const SeqId longp = d.add(tokens_from(1000, 5000), 4);
  // Each step: the 3 streams decode one token each, the long prompt takes the other 61.
  int32_t done = 0, n_prefill_steps = 0;
  while (done < 1000) {
    const ScheduledStep st = d.step();
    ++n_prefill_steps;
    for (SeqId s : streams) {
      const ScheduledSeq* sc = find(st, s);
      ASSERT_NE(sc, nullptr) << "stream " << s << " stalled by the long prefill";
      EXPECT_EQ(sc->n_new, 1);
      EXPECT_TRUE(sc->sample);
    }
    const ScheduledSeq* lp = find(st, longp);
    ASSERT_NE(lp, nullptr);
    EXPECT_EQ(lp->start, done);
    EXPECT_EQ(lp->n_new, std::min(61, 1000 - done));
    EXPECT_EQ(lp->sample, done + lp->n_new == 1000);
    EXPECT_EQ(st.n_tokens, 3 + lp->n_new);
    done += lp->n_new;
  }
  EXPECT_EQ(n_prefill_steps, 17);  // ceil(1000 / 61)
  for (SeqId s : streams) EXPECT_EQ(d.sched.sequence(s).n_generated(), 1 + 17);
  d.drain(500);
  d.check_outputs();
  d.check_all_blocks_free();
}

TEST(Scheduler, AdmitsInArrivalOrderAndRespectsMaxNumSeqs) {
  Driver d(sched_config(3, 64), kv_config(256, 4));
  for (int i = 0; i < 10; ++i) d.add(tokens_from(5 + i, 10 * i), 4 + i % 3);
  d.keep_log = true;
  d.drain(500);
  std::vector<SeqId> order;
  std::set<SeqId> seen;
  for (const ScheduledStep& st : d.log) {
    EXPECT_LE(st.seqs.size(), 3u);
    for (const ScheduledSeq& sc : st.seqs) {
      if (seen.insert(sc.id).second) order.push_back(sc.id);
    }
  }
  EXPECT_EQ(order, (std::vector<SeqId>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  d.check_outputs();
  d.check_all_blocks_free();
}

TEST(Scheduler, HeadOfTheQueueIsNeverSkipped) {
  // 8 blocks of 4. A runs (20 + 10 tokens ~ all 8 blocks); B (20 tokens) cannot fit beside it;
  // C (2 tokens) would, but arrived after B: it must not run before B.
  Driver d(sched_config(4, 64), kv_config(8, 4));
  const SeqId a = d.add(tokens_from(20, 1), 10);
  d.step();
  const SeqId b = d.add(tokens_from(20, 100), 3);
  const SeqId c = d.add(tokens_from(2, 200), 3);
  d.keep_log = true;
  d.drain(200);
  int b_first = -1, c_first = -1;
  for (int i = 0; i < static_cast<int>(d.log.size()); ++i) {
    if (b_first < 0 && find(d.log[i], b)) b_first = i;
    if (c_first < 0 && find(d.log[i], c)) c_first = i;
  }
  ASSERT_GE(b_first, 0);
  EXPECT_GE(c_first, b_first);
  EXPECT_EQ(d.finished.at(a).output.size(), 10u);
  d.check_outputs();
  d.check_all_blocks_free();
}

TEST(Scheduler, PreemptsWhenThePoolRunsOutAndEveryRequestCompletes) {
  // 8 blocks of 4 = 32 tokens; four requests of 6 + 20 tokens (7 blocks each) must share.
  Driver d(sched_config(4, 64), kv_config(8, 4, /*caching=*/false));
  for (int i = 0; i < 4; ++i) d.add(tokens_from(6, 50 * i + 1), 20);
  d.keep_log = true;
  d.drain(1000);
  EXPECT_GT(d.sched.stats().n_preemptions, 0);
  std::set<SeqId> preempted;
  for (const ScheduledStep& st : d.log) preempted.insert(st.preempted.begin(), st.preempted.end());
  EXPECT_FALSE(preempted.empty());
  EXPECT_FALSE(preempted.count(0)) << "the oldest request must never be preempted";
  ASSERT_EQ(d.finished.size(), 4u);
  for (const auto& [id, f] : d.finished) EXPECT_EQ(f.output.size(), 20u);
  d.check_outputs();  // recompute reproduces exactly what an uninterrupted run produces
  d.check_all_blocks_free();
}

TEST(Scheduler, PreemptedRequestReusesItsCachedBlocks) {
  Driver d(sched_config(4, 64), kv_config(8, 4, /*caching=*/true));
  for (int i = 0; i < 4; ++i) d.add(tokens_from(6, 50 * i + 1), 20);
  d.drain(1000);
  EXPECT_GT(d.sched.stats().n_preemptions, 0);
  EXPECT_GT(d.sched.stats().n_prefix_hit_tokens, 0);
  d.check_outputs();
  d.check_all_blocks_free();
}

TEST(Scheduler, RequestThatCanNeverFitIsRejectedWithAClearError) {
  Driver d(sched_config(4, 64), kv_config(4, 4));  // 16 tokens in all
  try {
    d.add(tokens_from(16, 0), 1);
    FAIL() << "a 16-token prompt cannot fit beside its output in 16 slots";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("does not fit"), std::string::npos) << e.what();
  }
  EXPECT_THROW(d.add(tokens_from(1000, 0), 1), Error);
  EXPECT_THROW(d.add({}, 1), Error);
  EXPECT_THROW(d.add({1, -2, 3}, 1), Error);
  EXPECT_FALSE(d.sched.has_unfinished());
  // The largest prompt that fits runs, and stops at the pool's length with "length".
  const SeqId id = d.add(tokens_from(15, 0), 100);
  d.drain(20);
  EXPECT_EQ(d.finished.at(id).output.size(), 1u);
  EXPECT_EQ(d.finished.at(id).reason, FinishReason::kLength);
  d.check_all_blocks_free();
}

TEST(Scheduler, BadConfigsThrow) {
  EXPECT_THROW(Scheduler(sched_config(8, 4), kv_config(16, 4)), Error);  // budget < seqs
  EXPECT_THROW(Scheduler(sched_config(0, 4), kv_config(16, 4)), Error);
  EXPECT_THROW(Scheduler(sched_config(4, 64, 65), kv_config(16, 4)), Error);  // > capacity
  EXPECT_THROW(Scheduler(sched_config(4, 64, -1), kv_config(16, 4)), Error);
  EXPECT_THROW(Scheduler(sched_config(4, 64), kv_config(0, 4)), Error);
  EXPECT_NO_THROW(Scheduler(sched_config(4, 64, 64), kv_config(16, 4)));
}

TEST(Scheduler, MaxModelLenFinishesWithLength) {
  Driver d(sched_config(2, 16, 12), kv_config(16, 4));
  const SeqId id = d.add(tokens_from(5, 1), 1000);
  d.drain(100);
  EXPECT_EQ(d.finished.at(id).output.size(), 7u);  // 5 + 7 = 12
  EXPECT_EQ(d.finished.at(id).reason, FinishReason::kLength);
  d.check_outputs();
}

TEST(Scheduler, CancellationFreesBlocksAtTheNextStep) {
  Driver d(sched_config(4, 64), kv_config(16, 4, /*caching=*/false));
  const SeqId a = d.add(tokens_from(10, 1), 50);
  const SeqId b = d.add(tokens_from(10, 100), 50);
  d.step();
  d.step();
  const int32_t free_before = d.sched.kv().n_free_blocks();
  const size_t a_blocks = d.sched.block_table(a).size();
  EXPECT_EQ(a_blocks, 3u);
  // Between steps: nothing is freed until the next schedule().
  EXPECT_TRUE(d.sched.abort(a));
  EXPECT_TRUE(d.sched.kv().contains(a));
  EXPECT_EQ(d.sched.kv().n_free_blocks(), free_before);
  const ScheduledStep st = d.step();
  ASSERT_EQ(st.finished.size(), 1u);
  EXPECT_EQ(st.finished[0].id, a);
  EXPECT_EQ(st.finished[0].reason, FinishReason::kAborted);
  EXPECT_EQ(st.finished[0].output.size(), 2u);
  EXPECT_EQ(find(st, a), nullptr);
  EXPECT_FALSE(d.sched.kv().contains(a));
  EXPECT_FALSE(d.sched.contains(a));
  EXPECT_FALSE(d.sched.abort(a));  // already gone
  // In flight: the step completes (its token is dropped), the blocks go at the next step.
  const size_t b_out = d.sched.sequence(b).n_generated();
  d.step({b});
  EXPECT_EQ(d.sched.sequence(b).n_generated(), static_cast<int32_t>(b_out));
  EXPECT_TRUE(d.sched.kv().contains(b));
  const ScheduledStep st2 = d.step();
  ASSERT_EQ(st2.finished.size(), 1u);
  EXPECT_EQ(st2.finished[0].id, b);
  EXPECT_TRUE(st2.empty());
  d.check_all_blocks_free();
  d.check_outputs();
}

TEST(Scheduler, CancelWhileWaitingOrPreempted) {
  Driver d(sched_config(1, 16), kv_config(16, 4));
  const SeqId a = d.add(tokens_from(4, 1), 5);
  const SeqId b = d.add(tokens_from(4, 9), 5);  // waits: max_num_seqs 1
  d.step();
  EXPECT_EQ(d.sched.sequence(b).status, SeqStatus::kWaiting);
  EXPECT_TRUE(d.sched.finish(b, FinishReason::kAborted));
  const ScheduledStep st = d.step();
  ASSERT_EQ(st.finished.size(), 1u);
  EXPECT_EQ(st.finished[0].id, b);
  EXPECT_TRUE(st.finished[0].output.empty());
  d.drain(20);
  EXPECT_EQ(d.finished.at(a).output.size(), 5u);
  EXPECT_FALSE(d.sched.abort(12345));
  d.check_all_blocks_free();
}

TEST(Scheduler, RepeatedSystemPromptIsComputedOnce) {
  Driver d(sched_config(8, 256), kv_config(64, 16));
  const std::vector<int32_t> sys = tokens_from(100, 1000);  // 6 full blocks + 4 tokens
  auto with_user = [&](int32_t n, int32_t first) {
    auto t = sys;
    const auto u = tokens_from(n, first);
    t.insert(t.end(), u.begin(), u.end());
    return t;
  };
  const SeqId r1 = d.add(with_user(20, 1), 3);
  d.drain(10);
  // 120 prompt tokens, then 2 decodes (the third token is sampled but never fed back).
  EXPECT_EQ(d.sched.stats().n_computed_tokens, 122);
  EXPECT_EQ(d.sched.stats().n_prefix_hit_tokens, 0);
  const SeqId r2 = d.add(with_user(30, 7), 3);
  const ScheduledStep st = d.step();
  const ScheduledSeq* sc = find(st, r2);
  ASSERT_NE(sc, nullptr);
  EXPECT_EQ(sc->start, 96);  // the 6 full system-prompt blocks come from the cache
  EXPECT_EQ(sc->n_new, 34);
  EXPECT_EQ(d.sched.sequence(r2).n_cached_prompt, 96);
  d.drain(10);
  EXPECT_EQ(d.sched.stats().n_computed_tokens, 122 + 34 + 2);
  EXPECT_EQ(d.sched.stats().n_prefix_hit_tokens, 96);
  // While r3 runs, r4 with the same system prompt shares its blocks too.
  const SeqId r3 = d.add(with_user(5, 300), 30);
  d.step();
  const SeqId r4 = d.add(with_user(40, 400), 3);
  d.step();
  const auto t3 = d.sched.block_table(r3), t4 = d.sched.block_table(r4);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(t3[i], t4[i]);
    EXPECT_EQ(d.sched.kv().pool().ref_count(t3[i]), 2);
  }
  d.drain(100);
  EXPECT_EQ(d.sched.stats().n_prefix_hit_tokens, 96 * 3);
  EXPECT_EQ(d.finished.size(), 4u);
  EXPECT_TRUE(d.finished.count(r1));
  d.check_outputs();
  d.check_all_blocks_free();
}

TEST(Scheduler, OnStepDoneRejectsBadSamples) {
  Scheduler s(sched_config(4, 64), kv_config(16, 4));
  const SeqId a = s.add(tokens_from(3, 1));
  const SeqId b = s.add(tokens_from(3, 5));
  const ScheduledStep st = s.schedule();
  ASSERT_EQ(st.n_sampling, 2);
  EXPECT_THROW(s.schedule(), Error);  // step still open
  const std::vector<SampledToken> missing = {{a, 1}};
  EXPECT_THROW(s.on_step_done(missing), Error);
  const std::vector<SampledToken> extra = {{a, 1}, {b, 2}, {77, 3}};
  EXPECT_THROW(s.on_step_done(extra), Error);
  const std::vector<SampledToken> twice = {{a, 1}, {a, 2}};
  EXPECT_THROW(s.on_step_done(twice), Error);
  const std::vector<SampledToken> negative = {{a, -1}, {b, 2}};
  EXPECT_THROW(s.on_step_done(negative), Error);
  EXPECT_EQ(s.sequence(a).size(), 3);  // nothing changed
  const std::vector<SampledToken> good = {{b, 2}, {a, 1, FinishReason::kStop}};
  const StepResult r = s.on_step_done(good);
  ASSERT_EQ(r.finished.size(), 1u);
  EXPECT_EQ(r.finished[0].id, a);
  EXPECT_EQ(r.finished[0].reason, FinishReason::kStop);
  EXPECT_EQ(r.finished[0].output, std::vector<int32_t>{1});
  EXPECT_EQ(s.sequence(b).tokens.back(), 2);
  s.check_invariants();
}

TEST(SchedulerOverlap, PlaceholdersAreScheduledThenFilled) {
  Scheduler s(sched_config(4, 64), kv_config(16, 4));
  const SeqId a = s.add(tokens_from(3, 1));
  const SeqId b = s.add(tokens_from(5, 10));
  const ScheduledStep s1 = s.schedule_ahead();  // nothing open: a plain schedule
  ASSERT_EQ(s1.n_sampling, 2);
  const ScheduledStep s2 = s.schedule_ahead();  // step 1 still running
  EXPECT_EQ(s.n_open_steps(), 2);
  EXPECT_EQ(s.sequence(a).tokens.back(), kPlaceholderToken);
  EXPECT_EQ(s.sequence(a).n_computed, 3);
  ASSERT_EQ(s2.seqs.size(), 2u);
  EXPECT_EQ(s2.seqs[0].start, 3);
  EXPECT_EQ(s2.seqs[0].n_new, 1);
  EXPECT_TRUE(s2.seqs[0].sample);
  EXPECT_EQ(build_batch(s2, s).token_ids, (std::vector<int32_t>{kPlaceholderToken, kPlaceholderToken}));
  s.check_invariants();
  EXPECT_THROW(s.schedule_ahead(), Error);  // step 1 must be done first
  EXPECT_THROW(s.schedule(), Error);
  const std::vector<SampledToken> missing = {{a, 7}};
  EXPECT_THROW(s.on_step_done(missing), Error);
  const std::vector<SampledToken> t1 = {{a, 7}, {b, 8, FinishReason::kStop}};
  const StepResult r1 = s.on_step_done(t1);
  ASSERT_EQ(r1.finished.size(), 1u);  // b stopped; its row in step 2 is wasted
  EXPECT_EQ(r1.finished[0].output, std::vector<int32_t>{8});
  EXPECT_EQ(s.sequence(a).tokens.back(), 7);
  s.check_invariants();
  const ScheduledStep s3 = s.schedule_ahead();
  ASSERT_EQ(s3.seqs.size(), 1u);
  EXPECT_EQ(s3.seqs[0].start, 4);
  // Step 2's sample for b is ignored (b ended); a's must be there.
  EXPECT_THROW(s.on_step_done(std::vector<SampledToken>{{b, 9}}), Error);
  const StepResult r2 = s.on_step_done(std::vector<SampledToken>{{a, 5}, {b, 9}});
  EXPECT_TRUE(r2.finished.empty());
  EXPECT_EQ(s.sequence(a).tokens, (std::vector<int32_t>{1, 2, 3, 7, 5}));
  s.abort(a);  // while step 3 runs
  const ScheduledStep s4 = s.schedule_ahead();
  ASSERT_EQ(s4.finished.size(), 1u);
  EXPECT_EQ(s4.finished[0].output, (std::vector<int32_t>{7, 5}));  // no placeholder in it
  EXPECT_TRUE(s4.empty());
  EXPECT_TRUE(s.on_step_done(std::vector<SampledToken>{{a, 6}}).finished.empty());
  EXPECT_FALSE(s.has_unfinished());
  EXPECT_EQ(s.n_open_steps(), 0);
  EXPECT_EQ(s.kv().n_free_blocks(), s.kv().n_blocks());
  s.check_invariants();
}

TEST(SchedulerOverlap, LastTokenByLengthIsNotScheduledAgain) {
  Scheduler s(sched_config(4, 64, /*max_model_len=*/8), kv_config(16, 4));
  const SeqId a = s.add(tokens_from(3, 1), /*max_output=*/2);
  const SeqId b = s.add(tokens_from(6, 1));  // reaches max_model_len 8 after 2 tokens
  s.schedule_ahead();
  const ScheduledStep s2 = s.schedule_ahead();  // first tokens in flight
  EXPECT_EQ(s2.seqs.size(), 2u);
  EXPECT_TRUE(s.on_step_done(std::vector<SampledToken>{{a, 1}, {b, 1}}).finished.empty());
  const ScheduledStep s3 = s.schedule_ahead();  // both second tokens in flight: their last
  EXPECT_TRUE(s3.empty());
  EXPECT_TRUE(s.sequence(a).draining);
  EXPECT_TRUE(s.sequence(b).draining);
  const StepResult r = s.on_step_done(std::vector<SampledToken>{{a, 2}, {b, 3}});
  ASSERT_EQ(r.finished.size(), 2u);
  for (const FinishedSeq& f : r.finished) EXPECT_EQ(f.reason, FinishReason::kLength);
  EXPECT_FALSE(s.has_unfinished());
  s.check_invariants();
}

struct SimParams {
  uint32_t seed;
  int32_t block_size, n_blocks, max_num_seqs, budget;
  bool caching;
};

// Thousands of steps of random arrivals, lengths, shared prefixes and cancellations (between
// steps and in flight) over tiny pools, with every invariant checked after every step.
// priorities: requests get a random priority in [0, 2] under SchedulingPolicy::kPriority.
void simulate(const SimParams& p, bool overlap = false, int sync_percent = 0, int32_t n_draft = 0,
              bool priorities = false) {
  SCOPED_TRACE(::testing::Message()
               << "seed " << p.seed << " bs " << p.block_size << " blocks " << p.n_blocks
               << " seqs " << p.max_num_seqs << " budget " << p.budget << " caching " << p.caching
               << " overlap " << overlap << " guesses " << n_draft << " priorities " << priorities);
  SchedulerConfig sc = sched_config(p.max_num_seqs, p.budget);
  if (priorities) sc.policy = SchedulingPolicy::kPriority;
  Driver d(sc, kv_config(p.n_blocks, p.block_size, p.caching), /*vocab=*/40, /*eos=*/0, overlap);
  d.sync_percent = sync_percent;
  d.sched.set_drafter(std::make_shared<OracleDrafter>(40), n_draft);
  d.max_draft = n_draft;
  std::mt19937 gen(p.seed);
  auto rnd = [&](int32_t lo, int32_t hi) {  // [lo, hi]
    return lo + static_cast<int32_t>(gen() % static_cast<uint32_t>(hi - lo + 1));
  };
  std::vector<std::vector<int32_t>> systems;
  for (int i = 0; i < 3; ++i) systems.push_back(tokens_from(rnd(1, 3 * p.block_size), 100 * i));
  const int32_t max_len = d.sched.config().max_model_len;
  std::vector<SeqId> live;
  for (int step = 0; step < 3000; ++step) {
    if (rnd(0, 99) < 35) {
      std::vector<int32_t> prompt;
      if (rnd(0, 1)) prompt = systems[rnd(0, 2)];
      const int32_t n_user = rnd(prompt.empty() ? 1 : 0, max_len / 2);
      for (int i = 0; i < n_user; ++i) prompt.push_back(rnd(1, 39));
      if (static_cast<int32_t>(prompt.size()) >= max_len) prompt.resize(max_len - 1);
      const int32_t max_tokens = rnd(1, 40);
      live.push_back(d.add(prompt, max_tokens, false, priorities ? rnd(0, 2) : 0));
    }
    std::vector<SeqId> in_flight_abort;
    if (!live.empty() && rnd(0, 99) < 6) {
      const SeqId victim = live[rnd(0, static_cast<int32_t>(live.size()) - 1)];
      if (rnd(0, 1)) {
        d.sched.abort(victim);
      } else {
        in_flight_abort.push_back(victim);
      }
    }
    d.step(in_flight_abort);
    if (::testing::Test::HasFailure()) return;
    std::erase_if(live, [&](SeqId id) { return !d.sched.contains(id); });
  }
  d.drain(20000);
  int n_aborted = 0;
  for (const auto& [id, f] : d.finished) n_aborted += f.reason == FinishReason::kAborted;
  const SchedulerStats& st = d.sched.stats();
  std::printf(
      "sim seed %u%s: %zu finished (%d aborted), %lld steps, %lld tokens computed, "
      "%lld prefix-hit tokens, %lld preemptions, %lld of %lld guesses kept\n",
      p.seed, overlap ? " (overlap)" : (priorities ? " (priorities)" : ""), d.finished.size(), n_aborted, static_cast<long long>(st.n_steps),
      static_cast<long long>(st.n_computed_tokens), static_cast<long long>(st.n_prefix_hit_tokens),
      static_cast<long long>(st.n_preemptions), static_cast<long long>(st.n_accepted_tokens),
      static_cast<long long>(st.n_draft_tokens));
  if (n_draft > 0 && p.budget > p.max_num_seqs) {
    EXPECT_GT(st.n_accepted_tokens, 0);
    EXPECT_LT(st.n_accepted_tokens, st.n_draft_tokens);
  }
  d.check_outputs();
  d.check_all_blocks_free();
  EXPECT_GT(d.finished.size(), 500u);
}

constexpr SimParams kSimParams[] = {
      {1, 4, 12, 4, 16, true},  {2, 1, 40, 3, 8, true},  {3, 8, 6, 2, 9, true},
      {4, 2, 30, 6, 6, false},  {5, 16, 5, 4, 64, true}, {6, 3, 17, 8, 20, true},
      {7, 4, 64, 8, 200, true}, {8, 2, 9, 1, 1, true},
};

TEST(SchedulerSim, RandomWorkloadsKeepEveryBlockAccountedFor) {
  for (const SimParams& p : kSimParams) {
    simulate(p);
    if (::testing::Test::HasFailure()) return;
  }
}

// The same workloads scheduled one step ahead (overlap scheduling): the same outputs, every
// block accounted for, although sequences end and free their blocks while a step that still
// writes them is in flight.
TEST(SchedulerSim, OverlapSchedulingGivesTheSameOutputs) {
  for (const SimParams& p : kSimParams) {
    simulate(p, /*overlap=*/true);
    if (::testing::Test::HasFailure()) return;
  }
}

// And with a third of the steps completed before the next is scheduled (the engine's steps
// with rows sampled on the host): such a step may hold rows of sequences that the step before
// ended.
TEST(SchedulerSim, OverlapWithSomeStepsWaitedFor) {
  for (const SimParams& p : kSimParams) {
    simulate(p, /*overlap=*/true, /*sync_percent=*/33);
    if (::testing::Test::HasFailure()) return;
  }
}

// Speculative decoding over the same workloads: guesses appended after decoding sequences,
// partly wrong, checked row by row; the outputs are the reference's, every block accounted for
// (the KV slots of rejected guesses are rewritten before anything reads them: the forward
// checks every context it reads).
TEST(SchedulerSim, SpeculativeGuessesGiveTheSameOutputs) {
  for (int32_t k : {1, 3}) {
    for (const SimParams& p : kSimParams) {
      simulate(p, /*overlap=*/false, 0, /*n_draft=*/k);
      if (::testing::Test::HasFailure()) return;
    }
  }
}

// Priority scheduling over the same workloads, alone, with overlap and with guesses: the same
// outputs, every block accounted for, first admissions in (priority, arrival) order (the
// Driver checks each step), no sequence preempted and scheduled in one step.
TEST(SchedulerSim, PrioritiesGiveTheSameOutputs) {
  for (const SimParams& p : kSimParams) {
    simulate(p, /*overlap=*/false, 0, 0, /*priorities=*/true);
    simulate(p, /*overlap=*/true, /*sync_percent=*/33, 0, /*priorities=*/true);
    simulate(p, /*overlap=*/false, 0, /*n_draft=*/2, /*priorities=*/true);
    if (::testing::Test::HasFailure()) return;
  }
}

SchedulerConfig priority_config(int32_t max_num_seqs, int32_t budget) {
  SchedulerConfig c = sched_config(max_num_seqs, budget);
  c.policy = SchedulingPolicy::kPriority;
  return c;
}

int first_step_of(const std::vector<ScheduledStep>& log, SeqId id) {
  for (int i = 0; i < static_cast<int>(log.size()); ++i)
    if (find(log[i], id)) return i;
  return -1;
}

TEST(SchedulerPriority, PolicyNames) {
  EXPECT_EQ(scheduling_policy_from_name("fcfs"), SchedulingPolicy::kFcfs);
  EXPECT_EQ(scheduling_policy_from_name("priority"), SchedulingPolicy::kPriority);
  EXPECT_STREQ(scheduling_policy_name(SchedulingPolicy::kPriority), "priority");
  EXPECT_THROW(scheduling_policy_from_name("lifo"), Error);
}

// Waiting requests are admitted by (priority, arrival), whatever their arrival order.
TEST(SchedulerPriority, AdmitsTheBetterPriorityFirst) {
  Driver d(priority_config(1, 64), kv_config(64, 4));
  const SeqId a = d.add(tokens_from(5, 1), 3, false, 2);
  const SeqId b = d.add(tokens_from(5, 100), 3, false, 1);
  const SeqId c = d.add(tokens_from(5, 200), 3, false, 0);
  const SeqId e = d.add(tokens_from(5, 300), 3, false, 1);
  d.keep_log = true;
  d.drain(100);
  std::vector<int> first;
  for (SeqId id : {c, b, e, a}) first.push_back(first_step_of(d.log, id));
  EXPECT_TRUE(std::is_sorted(first.begin(), first.end())) << first[0] << first[1] << first[2] << first[3];
  EXPECT_EQ(d.sched.stats().n_preemptions, 0);
  d.check_outputs();
  d.check_all_blocks_free();
}

// Under FCFS the priority is ignored: arrival order.
TEST(SchedulerPriority, FcfsIgnoresPriorities) {
  Driver d(sched_config(1, 64), kv_config(64, 4));
  const SeqId a = d.add(tokens_from(5, 1), 3, false, 2);
  const SeqId b = d.add(tokens_from(5, 100), 3, false, 0);
  EXPECT_EQ(d.sched.sequence(b).priority, 0);
  d.keep_log = true;
  d.drain(100);
  EXPECT_LT(first_step_of(d.log, a), first_step_of(d.log, b));
  d.check_outputs();
}

// A request of a better priority takes the only run slot from a running one, which resumes
// (recomputed) after it and still gives its exact output.
TEST(SchedulerPriority, BetterPriorityPreemptsForARunSlot) {
  Driver d(priority_config(1, 64), kv_config(64, 4));
  const SeqId low = d.add(tokens_from(6, 1), 30, false, 5);
  for (int i = 0; i < 4; ++i) d.step();
  const SeqId high = d.add(tokens_from(6, 100), 5, false, 0);
  d.keep_log = true;
  const ScheduledStep st = d.step();
  EXPECT_EQ(st.preempted, std::vector<SeqId>{low});
  ASSERT_EQ(st.seqs.size(), 1u);
  EXPECT_EQ(st.seqs[0].id, high);
  d.drain(200);
  EXPECT_EQ(d.sched.stats().n_preemptions, 1);
  // The high-priority request ran to its end before the low one came back.
  int last_high = -1, back_low = -1;
  for (int i = 0; i < static_cast<int>(d.log.size()); ++i) {
    if (find(d.log[i], high)) last_high = i;
    if (back_low < 0 && find(d.log[i], low)) back_low = i;
  }
  EXPECT_LT(last_high, back_low);
  d.check_outputs();
  d.check_all_blocks_free();
}

// Equal priorities never preempt one another for admission: FCFS among equals.
TEST(SchedulerPriority, EqualPrioritiesWaitTheirTurn) {
  Driver d(priority_config(1, 64), kv_config(64, 4));
  const SeqId first = d.add(tokens_from(6, 1), 10, false, 1);
  d.step();
  const SeqId second = d.add(tokens_from(6, 100), 5, false, 1);
  d.keep_log = true;
  d.drain(200);
  EXPECT_EQ(d.sched.stats().n_preemptions, 0);
  EXPECT_GT(first_step_of(d.log, second), 0);
  EXPECT_EQ(d.finished.at(first).output.size(), 10u);
  d.check_outputs();
}

// A full KV pool: the running request of the worst priority gives its blocks to a better one
// at once, and the others (better than the newcomer) keep running.
TEST(SchedulerPriority, BetterPriorityTakesBlocksFromTheWorst) {
  // 16 blocks of 4. Three requests of 16 + 4 tokens take 5 blocks each at the end.
  Driver d(priority_config(8, 256), kv_config(16, 4, /*caching=*/false));
  const SeqId top = d.add(tokens_from(16, 1), 4, false, 0);
  const SeqId mid = d.add(tokens_from(16, 100), 4, false, 2);
  const SeqId worst = d.add(tokens_from(16, 200), 4, false, 3);
  d.step();  // 4 blocks each, 4 free
  const SeqId newcomer = d.add(tokens_from(24, 300), 2, false, 1);  // needs 6 blocks
  d.keep_log = true;
  const ScheduledStep st = d.step();
  EXPECT_EQ(st.preempted, std::vector<SeqId>{worst});
  EXPECT_NE(find(st, newcomer), nullptr);
  EXPECT_NE(find(st, top), nullptr);
  EXPECT_NE(find(st, mid), nullptr);
  EXPECT_EQ(find(st, worst), nullptr);
  d.drain(200);
  EXPECT_EQ(d.finished.size(), 4u);
  d.check_outputs();
  d.check_all_blocks_free();
}

}  // namespace
}  // namespace jinx
