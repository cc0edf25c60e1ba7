// AsyncEngine: the engine in its own thread, for the server. Any thread submits requests and
// cancels them; the engine thread adds them to the LLM between steps, steps while work is
// left, and sleeps otherwise. Each request's on_update callback runs on the engine thread
// (keep it short: hand the update to the waiting thread and return).
//
//   AsyncEngine eng(std::move(llm), {.max_queue = 256});
//   uint64_t h = eng.submit(std::move(request));   // throws QueueFull or jinx::Error
//   ... eng.cancel(h);                               // e.g. the client went away
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/check.h"
#include "engine/llm.h"

namespace jinx {

struct AsyncOptions {
  int32_t max_queue = 256;  // requests waiting for a slot (not yet running) before submit fails
  // The engine's run slots (EngineOptions::max_num_seqs). A submitted request that a free slot
  // will take at the next step is not counted as waiting, so a burst is admitted up to
  // max_running (minus those running) + max_queue. 0: every unstarted request counts as waiting.
  int32_t max_running = 0;
};

// Submitted while `max_queue` requests were already waiting for a run slot.
struct QueueFull : Error {
  using Error::Error;
};

// Cumulative histogram with fixed upper bounds (Prometheus style).
struct Histogram {
  std::vector<double> bounds;    // increasing; +Inf is implicit
  std::vector<int64_t> counts;   // [bounds.size() + 1], non-cumulative per bucket
  double sum = 0.0;
  int64_t count = 0;
  explicit Histogram(std::vector<double> b = {});
  void observe(double v);
};

struct EngineMetrics {
  int32_t running = 0;
  int32_t waiting = 0;  // queued in the engine or not yet handed to it
  int64_t kv_blocks_used = 0;
  int64_t kv_blocks_total = 0;
  int64_t prompt_tokens = 0;         // of finished and running requests, at admission
  int64_t prefix_hit_tokens = 0;     // prompt tokens served by the prefix cache
  int64_t generation_tokens = 0;
  int64_t preemptions = 0;
  int64_t spec_draft_tokens = 0;     // speculative guesses computed
  int64_t spec_accepted_tokens = 0;  // of which stood
  int64_t requests_finished = 0;
  std::unordered_map<std::string, int64_t> finished_by_reason;
  Histogram ttft;  // seconds, submission to first token
  Histogram tpot;  // seconds per output token after the first
  Histogram e2e;   // seconds, submission to last token
  bool failed = false;  // the engine thread hit an internal error and stopped
  std::string failure;
};

class AsyncEngine {
 public:
  AsyncEngine(std::unique_ptr<LLM> llm, const AsyncOptions& options);
  ~AsyncEngine();  // aborts what is left (each gets its final "abort" update) and joins
  AsyncEngine(const AsyncEngine&) = delete;
  AsyncEngine& operator=(const AsyncEngine&) = delete;

  // Validates (jinx::Error on a bad request; QueueFull when the queue is full) and queues.
  // Returns a handle for cancel(). Thread-safe.
  uint64_t submit(Request r);
  // Ends the request (final update "abort"; KV blocks freed). Harmless if already done.
  void cancel(uint64_t handle);
  // Sentence embeddings (LLM::embed), computed by the engine thread between steps in slices of
  // about kEmbedSliceTokens tokens, so a large job delays generation by one slice at a time.
  // The future holds [seqs.size(), hidden_size] floats, or the jinx::Error that ended the job.
  // Validates first (jinx::Error); QueueFull when max_queue jobs are already waiting.
  std::future<std::vector<float>> embed(std::vector<std::vector<int32_t>> seqs, Pooling pooling,
                                        bool normalize);
  static constexpr int64_t kEmbedSliceTokens = 2048;
  // Runs fn(llm) on the engine thread between steps, before the requests submitted after this
  // call are added; the future holds what it returns or the exception it threw. For changes to
  // the model while serving (runtime LoRA: LLM::load_adapter / unload_adapter).
  std::future<int32_t> run_between_steps(std::function<int32_t(LLM&)> fn);
  EngineMetrics metrics() const;
  const LLM& llm() const { return *llm_; }  // immutable parts only (model, tokenizer, limits)

 private:
  void loop();
  void publish_locked();
  int64_t waiting_for_slot_locked() const;
  void record_finished(const RequestOutput& out);
  struct EmbedJob {
    std::vector<std::vector<int32_t>> seqs;
    Pooling pooling = Pooling::kMean;
    bool normalize = true;
    std::vector<float> out;  // [seqs.size(), hidden_size]
    size_t next = 0;         // first sequence not embedded yet
    std::promise<std::vector<float>> done;
  };
  // Embeds the next slice of `job`; true when the job is complete (its promise kept).
  bool run_embed_slice(EmbedJob& job);

  std::unique_ptr<LLM> llm_;
  AsyncOptions opt_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  uint64_t next_handle_ = 1;
  std::vector<std::pair<uint64_t, Request>> incoming_;
  // Taken from incoming_ by the engine thread but not yet in the published metrics_.
  int64_t in_transit_ = 0;
  std::vector<uint64_t> cancels_;
  struct Task {
    std::function<int32_t(LLM&)> fn;
    std::promise<int32_t> done;
  };
  std::vector<Task> tasks_;  // run_between_steps(), not yet taken by the engine thread
  std::deque<std::unique_ptr<EmbedJob>> embeds_;  // submitted, not yet taken by the engine thread
  int64_t embeds_pending_ = 0;                    // submitted, not yet complete
  EngineMetrics metrics_;  // guarded by mu_
  // Engine thread only.
  std::unordered_map<uint64_t, SeqId> seq_of_;
  std::unordered_map<SeqId, uint64_t> handle_of_;
  std::thread thread_;
};

}  // namespace jinx
