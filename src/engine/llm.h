// jinx::LLM: the engine. Many requests run together through the scheduler (continuous
// batching, chunked prefill, prefix caching, preemption by recompute), one flat forward pass per
// step over a paged KV cache, a sampler and a detokenizer per request.
//
//   jinx::LLM llm("model.gguf", jinx::EngineOptions{});
//   auto outs = llm.generate({"Hello", "The sky is"}, params);      // offline, all at once
//
// Step-wise (what AsyncEngine's thread does): add_request() at any time, step() while
// has_unfinished(); each request reports through its on_update callback after every step that
// gave it text or tokens, and once more when it finishes. Not thread-safe: one thread drives it.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/thread_pool.h"
#include "engine/draft_model.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "model/executor.h"
#include "model/model.h"
#include "structured/constraint.h"
#include "tokenizer/tokenizer.h"

namespace jinx {

// Overlap scheduling: the engine schedules step N+1 and builds its batch while the device runs
// step N (Scheduler::schedule_ahead; the new decode rows read their input tokens from step N's
// output on the device). Only steps whose every token is picked by the executor (greedy, or
// plain sampling on a GPU) are overlapped; a step with a row sampled on the host is waited for.
enum class SpeculativeSampling { kMatch, kRejection };

enum class OverlapMode {
  kAuto,  // on where the executor runs steps asynchronously (a GPU), unless JINX_OVERLAP=0
  kOn,    // also on a synchronous executor (no gain: for tests)
  kOff,
};

struct EngineOptions {
  int threads = 0;                        // 0: every core
  double kv_cache_gib = 0.0;              // KV pool size; 0: use kv_cache_tokens
  int64_t kv_cache_tokens = 0;            // 0 (and no GiB): 64k tokens (pages are touched only when used)
  int32_t block_size = 16;
  DType kv_dtype = DType::F32;            // F32, F16, BF16, I8 or F8_E4M3
  bool prefix_caching = true;
  int32_t max_num_seqs = 64;
  int32_t max_num_batched_tokens = 512;
  int32_t max_model_len = 0;              // 0: the model's context, capped by the pool
  // Order of admission and preemption (engine/scheduler.h): arrival, or Request::priority.
  SchedulingPolicy scheduling_policy = SchedulingPolicy::kFcfs;
  std::string device = "cpu";             // "cpu", "cuda" or "cuda:N" (a -DJINX_CUDA=ON build)
  // On a GPU without a KV size given: the share of device memory the engine may fill.
  double gpu_memory_utilization = 0.9;
  bool cuda_graphs = true;  // replay decode steps as CUDA graphs (false: --enforce-eager)
  OverlapMode overlap = OverlapMode::kAuto;
  // Speculative decoding by prompt lookup (vLLM's ngram method): each decode step also checks
  // up to num_speculative_tokens guesses copied from where the sequence's last n tokens
  // (prompt_lookup_max >= n >= prompt_lookup_min) occurred before. 0: off. Overlap scheduling
  // is off while it is on. Outputs are those of decoding without it (the same tokens greedy
  // or with a seed, on a batch-invariant executor).
  int32_t num_speculative_tokens = 0;
  int32_t prompt_lookup_min = 2;
  int32_t prompt_lookup_max = 4;
  // Speculative decoding with a draft model instead (engine/draft_model.h): a smaller model
  // sharing the target's tokenizer guesses num_speculative_tokens tokens (4 when that is 0)
  // greedily per step, on the same device with a KV pool of its own. speculative_model is a
  // model directory or .gguf file (LLM(path, ...) loads it and checks the vocabularies);
  // draft_model a loaded one (tests). Outputs are the same as without it.
  std::string speculative_model;
  std::shared_ptr<const Model> draft_model;
  // A draft guess less likely than this under the draft model ends that sequence's guesses
  // for the step (llama.cpp's --draft-p-min); 0: always num_speculative_tokens guesses.
  float draft_p_min = 0.0f;
  // How a draft model's guesses of a sampled request are checked. kMatch: the guesses are
  // greedy and the request samples each row as without them (a seed gives the very tokens of
  // a run without guesses). kRejection: the draft samples its guesses under the request's
  // temperature / top-k / top-p / min-p and each stands with probability min(1, p / q), else
  // the token is drawn from max(0, p - q) (vLLM's rejection sampler): the same distribution,
  // more guesses kept, but not the same tokens for a seed. Greedy requests: kMatch always.
  SpeculativeSampling speculative_sampling = SpeculativeSampling::kMatch;
  // --quantize: dense projection weights quantized at load (LLM(path, ...) only; a Model
  // passed in is used as it is).
  WeightQuant quantize = WeightQuant::kNone;
  // --lora: a PEFT LoRA adapter directory applied to the model at load (LLM(path, ...) and the
  // commands that load the model themselves; a Model passed in is used as it is).
  std::string lora;
  // LoRA adapters a request chooses by Request::adapter (1 = loras[0], ...), not with `lora`.
  std::vector<std::string> loras;
  // Tensor parallelism (LLM(path, ...) only): this process is rank 0 of the group, the others
  // run run_tp_worker(); the model is sharded over them (see LoadOptions::comm).
  std::shared_ptr<Communicator> comm;
  // Tests: wraps the executor the engine made (e.g. to stand in for a device that samples).
  std::function<std::unique_ptr<Executor>(std::unique_ptr<Executor>)> wrap_executor;
};

// What one step added to a request (streaming), or its end.
struct StreamUpdate {
  std::string text;                  // new text (stop strings and held UTF-8 bytes excluded)
  std::vector<int32_t> token_ids;    // new tokens
  std::vector<SampleResult> logprobs;  // one per new token when params.logprobs >= 0
  // params.prompt_logprobs >= 0: in the first update with tokens, one per prompt token after
  // the first (entry i is prompt token i + 1 given those before it).
  std::vector<PromptLogprob> prompt_logprobs;
  bool finished = false;
  std::string finish_reason;  // when finished: "stop", "length" or "abort"
  int64_t n_prompt = 0;
  int64_t n_cached_prompt = 0;
  int64_t n_generated = 0;  // tokens generated so far, in total
};
using StreamFn = std::function<void(const StreamUpdate&)>;

struct Request {
  std::vector<int32_t> prompt;
  SamplingParams params;
  // Optional: masks tokens before each sampling step (structured output); finishes the
  // request with "stop" when it reports finished(). One per request.
  std::shared_ptr<TokenConstraint> constraint;
  // Optional: called (on the stepping thread) after each step that changed the request.
  StreamFn on_update;
  // LoRA adapter (1..Model::n_adapters(), 0: the base model); -1: the model's default (the
  // --lora adapter, else the base).
  int32_t adapter = -1;
  // SchedulingPolicy::kPriority: smaller runs first, and a running request of a larger value
  // gives way to it when the KV pool or max_num_seqs is full (vLLM's `priority`). Must be 0
  // under kFcfs.
  int32_t priority = 0;
};

struct RequestOutput {
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<SampleResult> logprobs;  // one per token when params.logprobs >= 0
  std::vector<PromptLogprob> prompt_logprobs;  // params.prompt_logprobs >= 0: see StreamUpdate
  std::string finish_reason;  // "stop", "length" or "abort"
  int64_t n_prompt = 0;
  int64_t n_cached_prompt = 0;  // prompt tokens served by the prefix cache
  double ttft_s = 0.0;          // from submission to the first token
  double total_s = 0.0;         // from submission to the last token
  std::vector<double> token_times;  // seconds since submission of every generated token
};

struct EngineStats {
  int64_t steps = 0;
  int64_t computed_tokens = 0;     // tokens through the forward pass
  int64_t generated_tokens = 0;    // tokens sampled
  int64_t prefix_hit_tokens = 0;
  int64_t preemptions = 0;
  int64_t draft_tokens = 0;     // speculative guesses computed
  int64_t accepted_tokens = 0;  // of which stood (tokens gained over one per step)
  int64_t draft_passes = 0;     // draft model forward passes (0 without a draft model)
  double draft_seconds = 0.0;   // of `seconds`, in them
  double seconds = 0.0;
  double forward_seconds = 0.0;  // of which in the executor's forward pass (results copied back)
};

class LLM {
 public:
  LLM(const std::string& model_path, const EngineOptions& options);
  // For tests and tools that already hold a model (and a tokenizer, which may be null when
  // requests are token ids and no text is wanted).
  LLM(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tok,
      const EngineOptions& options);
  ~LLM();

  // Plain-text prompts (encoded with the tokenizer's BOS rules), one SamplingParams for all.
  std::vector<RequestOutput> generate(const std::vector<std::string>& prompts,
                                      const SamplingParams& params);
  // Called after every step with (requests done, requests total, tokens generated so far).
  using Progress = std::function<void(size_t, size_t, int64_t)>;
  std::vector<RequestOutput> generate(std::vector<Request> requests,
                                      const Progress& progress = nullptr);

  // Step-wise use. add_request validates (check_request) and queues; the id names the request
  // in step()'s results and in abort_request().
  SeqId add_request(Request r);
  // Ends a queued or running request at the next step (finish_reason "abort", its KV blocks
  // freed). False if the id is unknown or already finished.
  bool abort_request(SeqId id);
  bool has_unfinished() const;  // requests queued or running, or a step still in flight
  // One scheduler step: forward pass, sampling, updates. Returns the requests that ended.
  std::vector<std::pair<SeqId, RequestOutput>> step();
  int32_t n_running() const;
  int32_t n_waiting() const;
  int64_t kv_blocks_used() const;  // held by running sequences (cached free blocks excluded)

  const Model& model() const { return *model_; }
  const Tokenizer* tokenizer() const { return tok_.get(); }
  std::shared_ptr<const Tokenizer> tokenizer_ptr() const { return tok_; }
  const EngineStats& stats() const { return stats_; }
  int64_t kv_blocks() const;
  bool overlaps() const { return overlap_; }  // overlap scheduling is on
  // Where the forward pass runs, in words (device, weights, KV pool).
  std::string executor_description() const { return exec_->describe(); }
  // Longest sequence (prompt + generated) the engine runs: the model's context, capped by the
  // KV pool.
  int64_t max_model_len() const;
  // Throws jinx::Error naming what is wrong with a request (sampling values, token ids, a
  // prompt too long to ever run).
  void check_request(const Request& r, size_t index) const;

  // Runtime LoRA (the server's /v1/load_lora_adapter): loads an adapter (a PEFT directory or
  // an adapter .gguf) into the model between steps and returns its id for Request::adapter.
  // Only on the CPU, for an engine that loaded its model itself (LLM(path, ...)); throws
  // jinx::Error, the engine unchanged, on any problem. Stepping thread only.
  int32_t load_adapter(const std::string& path);
  // Retires adapter a: new requests naming it are refused (check_request), and its weights are
  // freed once no request of it is queued or running (they finish with it). Stepping thread.
  void unload_adapter(int32_t a);

  // Sentence embeddings of token sequences (Model::embed on the host weights, with threads of
  // the engine's own; out: [seqs.size(), hidden_size]). Runs on the stepping thread between
  // steps; touches no KV block or request. Throws jinx::Error for an empty sequence, an id
  // outside the vocabulary or a sequence longer than max_model_len().
  void embed(std::span<const std::vector<int32_t>> seqs, Pooling pooling, bool normalize,
             float* out);
  // embed()'s checks, without running anything (safe off the stepping thread).
  void check_embed(std::span<const std::vector<int32_t>> seqs) const;

 private:
  struct Live;
  struct Flight;
  void init(const EngineOptions& options);
  // Builds a scheduled step into a free Flight and submits it; `prev` is the step in flight.
  Flight* launch(const ScheduledStep& step, const Flight* prev);
  // Waits for the oldest submitted step (f), samples, and hands its tokens to the scheduler.
  void complete(Flight& f, std::vector<std::pair<SeqId, RequestOutput>>* done);
  void sample_step(Flight& f, std::vector<SampledToken>* sampled);
  void prompt_logprobs_step(Flight& f);
  void mask_row(Live& L, float* row);
  int32_t verify_row(Flight& f, size_t k, Live& L, int32_t guess, const float* q, bool* rejected,
                     FinishReason* reason);
  int32_t commit_token(Live& L, SampleResult sr, FinishReason* reason);
  std::vector<float> verify_p_;  // verify_row's target distribution, reused
  int32_t sample_row(Flight& f, size_t k, Live& L, FinishReason* reason);
  std::shared_ptr<const Model> load_draft(const EngineOptions& o) const;
  std::shared_ptr<Drafter> make_draft_drafter(const EngineOptions& o, ExecutorOptions eo,
                                              int32_t k);
  void retire(SeqId id, FinishReason reason,
              std::vector<std::pair<SeqId, RequestOutput>>* done);

  std::shared_ptr<const Model> model_;
  std::shared_ptr<Model> own_model_;  // the same model when LLM(path, ...) loaded it (runtime LoRA)
  // Runtime LoRA: queued or running requests per adapter id, and the adapters unloaded while
  // some still ran (freed when their count reaches 0). retired_adapters_ is read by
  // check_request off the stepping thread, hence the lock.
  std::unordered_map<int32_t, int32_t> adapter_users_;
  mutable std::mutex adapters_mu_;
  std::vector<int32_t> retired_adapters_;
  std::shared_ptr<const Tokenizer> tok_;
  EngineOptions opt_;
  std::unique_ptr<Executor> exec_;  // runs the forward pass and owns the KV pool
  kv::KVCacheConfig kv_config_;
  SchedulerConfig sched_config_;
  // Lives as long as the engine, so the prefix cache carries over from one generate() call to
  // the next (every call drains it of running sequences).
  std::unique_ptr<Scheduler> sched_;
  std::unordered_map<SeqId, std::unique_ptr<Live>> live_;
  // Two step buffers: with overlap scheduling one is in flight while the next is built.
  std::unique_ptr<Flight> flights_[2];
  Flight* in_flight_ = nullptr;  // submitted, not yet completed
  bool overlap_ = false;
  EngineStats stats_;
  std::unique_ptr<ThreadPool> embed_pool_;  // made by the first embed()
  const DraftModelDrafter* draft_ = nullptr;  // the scheduler's drafter, when a draft model
};

}  // namespace jinx
