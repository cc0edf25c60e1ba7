// A stand-in for an executor that runs steps asynchronously (a GPU), for the engine's overlap
// scheduling tests on the CPU: submit() only copies the step (as a GPU executor copies its
// metadata) and poisons its token outputs; the step runs when wait() completes it, after the
// engine has already scheduled and submitted the next one. Placeholder tokens are read from
// the previous step's picks at that moment, as the device reads them. So an engine that reads
// a step's outputs early, reuses a buffer still in flight, or frees KV blocks a later step
// needs, gives other tokens than a synchronous run.
#pragma once

#include <algorithm>
#include <deque>
#include <memory>
#include <vector>

#include "core/check.h"
#include "model/executor.h"

namespace jinx::test_support {

struct DeferredStats {
  int max_in_flight = 0;     // most steps submitted and not waited for
  int64_t placeholders = 0;  // input tokens read from the step before on the "device"
  int64_t steps = 0;
};

class DeferredDevice final : public Executor {
 public:
  DeferredDevice(std::unique_ptr<Executor> inner, DeferredStats* stats)
      : inner_(std::move(inner)), stats_(stats) {}

  void forward_batch(const ForwardBatch& b, float* logits, int32_t* tokens) override {
    submit(b, logits, tokens);
    wait();
  }
  void submit(const ForwardBatch& b, float* logits, int32_t* tokens) override {
    JINX_CHECK(queue_.size() < 2, "more than two steps in flight");
    Step s;
    s.tokens.assign(b.tokens.begin(), b.tokens.end());
    s.positions.assign(b.positions.begin(), b.positions.end());
    s.slots.assign(b.slot_mapping.begin(), b.slot_mapping.end());
    const cpu::AttnBatch& a = b.attn;
    s.n_seqs = a.n_seqs;
    s.width = a.max_blocks_per_seq;
    s.qstart.assign(a.query_start, a.query_start + a.n_seqs + 1);
    s.ctx.assign(a.context_len, a.context_len + a.n_seqs);
    s.tables.assign(a.block_tables, a.block_tables + a.n_seqs * a.max_blocks_per_seq);
    s.out_rows.assign(b.out_rows.begin(), b.out_rows.end());
    s.pick.assign(b.pick.begin(), b.pick.end());
    s.sampling.assign(b.sampling.begin(), b.sampling.end());
    s.logits = logits;
    s.out_tokens = tokens;
    if (tokens) std::fill(tokens, tokens + b.out_rows.size(), -7);  // nothing before wait()
    stats_->placeholders += std::count_if(s.tokens.begin(), s.tokens.end(),
                                          [](int32_t t) { return t < 0; });
    queue_.push_back(std::move(s));
    stats_->max_in_flight = std::max(stats_->max_in_flight, static_cast<int>(queue_.size()));
  }
  void wait() override {
    JINX_CHECK(!queue_.empty(), "wait() with no step in flight");
    Step s = std::move(queue_.front());
    queue_.pop_front();
    const std::vector<int32_t> tokens = resolve_placeholders(s.tokens, last_picks_);
    ForwardBatch fb;
    fb.tokens = tokens;
    fb.positions = s.positions;
    fb.slot_mapping = s.slots;
    fb.attn = {s.n_seqs, s.qstart.data(), s.ctx.data(), s.tables.data(), s.width};
    fb.out_rows = s.out_rows;
    fb.pick = s.pick;
    fb.sampling = s.sampling;
    inner_->forward_batch(fb, s.logits, s.out_tokens);
    last_picks_ = picks_of(s.pick, s.out_tokens, s.out_rows.size());
    ++stats_->steps;
  }
  bool runs_async() const override { return true; }
  bool samples_on_device() const override { return inner_->samples_on_device(); }
  int64_t n_kv_blocks() const override { return inner_->n_kv_blocks(); }
  size_t kv_bytes() const override { return inner_->kv_bytes(); }
  std::string describe() const override { return "deferred " + inner_->describe(); }

 private:
  struct Step {
    std::vector<int32_t> tokens, positions, qstart, ctx, tables, out_rows;
    std::vector<int64_t> slots;
    std::vector<uint8_t> pick;
    std::vector<sampling::RowSampling> sampling;
    int64_t n_seqs = 0, width = 0;
    float* logits = nullptr;
    int32_t* out_tokens = nullptr;
  };
  std::unique_ptr<Executor> inner_;
  DeferredStats* stats_;
  std::deque<Step> queue_;
  std::vector<int32_t> last_picks_;
};

}  // namespace jinx::test_support
