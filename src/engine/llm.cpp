#include "engine/llm.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <utility>
#include <unordered_map>

#include "core/check.h"
#include "core/log.h"
#include "engine/batch.h"
#include "kv/kv_config.h"

namespace jinx {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

// A request in flight: its sampler (own RNG: the same seed gives the same tokens whatever else
// runs), its text stream, and where its output goes.
struct LLM::Live {
  RequestOutput out;
  SamplingParams params;
  Sampler sampler;
  std::unique_ptr<IncrementalDetokenizer> detok;  // null without a tokenizer
  StopStringMatcher stops;
  std::shared_ptr<TokenConstraint> constraint;
  StreamFn on_update;
  bool stopped_by_string = false;
  std::vector<int32_t> prompt;  // kept when prompt logprobs are wanted
  std::vector<uint8_t> allowed;  // params.allowed_token_ids as a per-token flag, once needed
  bool sent_prompt_logprobs = false;
  size_t sent_text = 0;    // out.text bytes already reported through on_update
  size_t sent_tokens = 0;  // out.token_ids already reported
  int32_t adapter = -1;    // its LoRA adapter id (> 0), as the scheduler got it
  Clock::time_point t0;

  // What the step must return for this row. Greedy with nothing that needs the logits on the
  // host: their argmax (the Sampler's greedy rule, ties to the lowest id). Plain temperature
  // sampling on an executor that samples: a token drawn there with this sequence's next
  // uniform (*u). Else the logits.
  sampling::Pick pick(bool device_samples, double* u) {
    const SamplingParams& p = params;
    if (constraint || p.logprobs >= 0 || !p.logit_bias.empty() || p.repetition_penalty != 1.0f ||
        p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f ||
        static_cast<int>(out.token_ids.size()) < p.min_tokens || !p.allowed_token_ids.empty() ||
        !p.bad_words_ids.empty())
      return sampling::kPickLogits;
    if (p.temperature < kGreedyTemperature) return sampling::kPickArgmax;
    if (!device_samples) return sampling::kPickLogits;
    *u = sampler.draw_uniform();
    return sampling::kPickSample;
  }
  Live(Request& r, const Tokenizer* tok)
      : params(r.params),
        sampler(r.params, r.prompt),
        stops(r.params.stop, r.params.include_stop_str_in_output),
        constraint(std::move(r.constraint)),
        on_update(std::move(r.on_update)),
        t0(Clock::now()) {
    out.n_prompt = static_cast<int64_t>(r.prompt.size());
    stops.set_active(r.params.min_tokens == 0);  // stop strings count from min_tokens on
    if (r.params.prompt_logprobs >= 0) {
      prompt = r.prompt;
      out.prompt_logprobs.reserve(prompt.size() - 1);
    }
    if (tok) detok = std::make_unique<IncrementalDetokenizer>(*tok, r.params.skip_special_tokens);
  }

  // Appends the token's text; true when a stop string has now appeared.
  bool push_text(int32_t token) {
    if (!detok) return false;
    auto r = stops.push(detok->push(token));
    out.text += r.text;
    stopped_by_string = r.stopped;
    return r.stopped;
  }

  void finish(FinishReason reason) {
    if (detok && !stopped_by_string) {  // bytes held for UTF-8 or a possible stop string
      auto tail = stops.push(detok->flush());
      out.text += tail.text;
      if (!tail.stopped) out.text += stops.flush();
    }
    out.finish_reason = std::string(to_string(reason));
    out.total_s = since(t0);
    report(true);
  }

  // Sends what is new since the last report (nothing when nothing is, unless finishing).
  void report(bool finished) {
    if (!on_update) return;
    if (!finished && sent_text == out.text.size() && sent_tokens == out.token_ids.size()) return;
    StreamUpdate u;
    u.text = out.text.substr(sent_text);
    u.token_ids.assign(out.token_ids.begin() + static_cast<ptrdiff_t>(sent_tokens),
                       out.token_ids.end());
    if (!out.logprobs.empty())
      u.logprobs.assign(out.logprobs.begin() + static_cast<ptrdiff_t>(sent_tokens),
                        out.logprobs.end());
    if (!sent_prompt_logprobs && params.prompt_logprobs >= 0 && !out.token_ids.empty()) {
      u.prompt_logprobs = out.prompt_logprobs;
      sent_prompt_logprobs = true;
    }
    u.finished = finished;
    u.finish_reason = finished ? out.finish_reason : "";
    u.n_prompt = out.n_prompt;
    u.n_cached_prompt = out.n_cached_prompt;
    u.n_generated = static_cast<int64_t>(out.token_ids.size());
    sent_text = out.text.size();
    sent_tokens = out.token_ids.size();
    on_update(u);
  }
};

// One submitted step and what its outputs go to.
struct LLM::Flight {
  Batch batch;
  std::vector<int32_t> tokens;  // batch.token_ids, placeholders as -(k + 1) (Executor::submit)
  std::vector<uint8_t> pick;    // per sampling row: a sampling::Pick
  std::vector<sampling::RowSampling> sampling;
  std::vector<int32_t> picked;  // the executor's tokens for kPickArgmax / kPickSample rows
  std::vector<float> logits;    // [sampling rows, vocab]
  bool host_samples = false;    // some row's logits are sampled here
};

namespace {

std::unique_ptr<Tokenizer> tokenizer_of(const Model& m, const std::string& path) {
  return m.store().gguf() ? Tokenizer::from_gguf(*m.store().gguf())
                          : Tokenizer::from_hf_dir(path);
}

}  // namespace

LLM::LLM(const std::string& model_path, const EngineOptions& options) {
  std::shared_ptr<Model> m =
      Model::load(model_path, LoadOptions{options.quantize, options.threads, options.comm,
                                          options.lora, options.loras});
  model_ = m;
  own_model_ = m;
  tok_ = tokenizer_of(*m, model_path);
  init(options);
}

// EngineOptions::speculative_model, loaded whole on this process (under tensor parallelism
// too) in its own format, its vocabulary checked against the target's.
std::shared_ptr<const Model> LLM::load_draft(const EngineOptions& o) const {
  std::shared_ptr<Model> draft =
      Model::load(o.speculative_model, LoadOptions{WeightQuant::kNone, o.threads, nullptr});
  // A draft without tokenizer files (a bare checkpoint) is checked by its vocabulary size only.
  std::unique_ptr<Tokenizer> draft_tok;
  if (draft->store().gguf() ||
      std::filesystem::exists(std::filesystem::path(o.speculative_model) / "tokenizer.json")) {
    draft_tok = tokenizer_of(*draft, o.speculative_model);
  } else {
    log_warn("draft model ", o.speculative_model, " has no tokenizer.json: only its vocabulary "
             "size is checked against the target's");
  }
  check_draft_vocabulary(model_->config().vocab_size, tok_.get(), draft->config().vocab_size,
                         draft_tok.get());
  return draft;
}

LLM::LLM(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tok,
         const EngineOptions& options)
    : model_(std::move(model)), tok_(std::move(tok)) {
  init(options);
}

LLM::~LLM() = default;

void LLM::check_embed(std::span<const std::vector<int32_t>> seqs) const {
  const int64_t vocab = model_->config().vocab_size;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].empty()) fail("input ", i, " is empty");
    if (static_cast<int64_t>(seqs[i].size()) > max_model_len())
      fail("input ", i, " has ", seqs[i].size(), " tokens, more than the model's context (",
           max_model_len(), ")");
    for (int32_t id : seqs[i])
      if (id < 0 || id >= vocab)
        fail("input ", i, ": token id ", id, " is outside the vocabulary (", vocab, ")");
  }
}

void LLM::embed(std::span<const std::vector<int32_t>> seqs, Pooling pooling, bool normalize,
                float* out) {
  check_embed(seqs);
  if (model_->tp_size() > 1) return exec_->embed(seqs, pooling, normalize, out);
  if (!embed_pool_) embed_pool_ = std::make_unique<ThreadPool>(opt_.threads);
  model_->embed(seqs, pooling, normalize, out, *embed_pool_);
}

void LLM::init(const EngineOptions& options) {
  EngineOptions o = options;
  if (!o.speculative_model.empty() && !o.draft_model) o.draft_model = load_draft(o);
  opt_ = o;
  const ModelConfig& c = model_->config();
  const bool kv_scaled = o.kv_dtype == DType::I8 || o.kv_dtype == DType::F8_E4M3;
  kv::KVLayout layout{c.n_layers,
                      c.n_kv_heads,
                      c.head_dim,
                      c.head_dim,
                      static_cast<int64_t>(traits(o.kv_dtype).block_bytes),
                      kv_scaled ? 4 : 0};
  int32_t n_blocks = 0;  // 0 on a GPU: sized from free device memory by the executor
  const bool on_cpu = o.device == "cpu";
  if (o.kv_cache_gib > 0) {
    n_blocks = kv::kv_blocks_for_memory(o.kv_cache_gib, layout, o.block_size);
  } else if (on_cpu || o.kv_cache_tokens > 0) {
    int64_t tokens = o.kv_cache_tokens > 0 ? o.kv_cache_tokens : int64_t{65536};
    n_blocks = kv::kv_blocks_for_tokens(tokens, o.block_size);
  }
  ExecutorOptions eo;
  eo.device = o.device;
  eo.threads = o.threads;
  eo.block_size = o.block_size;
  eo.kv_dtype = o.kv_dtype;
  eo.n_blocks = n_blocks;
  eo.gpu_memory_utilization = o.gpu_memory_utilization;
  eo.max_batched_tokens = std::max(o.max_num_batched_tokens, o.max_num_seqs);
  eo.max_seqs = o.max_num_seqs;
  eo.max_model_len = o.max_model_len;
  eo.cuda_graphs = o.cuda_graphs;
  eo.quantize = o.quantize;
  const bool drafting = o.draft_model != nullptr;
  if (drafting && on_cpu) eo.pool = std::make_shared<ThreadPool>(o.threads);
  exec_ = make_executor(model_, eo);
  if (o.wrap_executor) exec_ = o.wrap_executor(std::move(exec_));
  n_blocks = static_cast<int32_t>(exec_->n_kv_blocks());
  kv_config_.block_size = o.block_size;
  kv_config_.n_blocks = n_blocks;
  kv_config_.enable_prefix_caching = o.prefix_caching;
  kv::validate(kv_config_);
  sched_config_.policy = o.scheduling_policy;
  sched_config_.max_num_seqs = o.max_num_seqs;
  sched_config_.max_num_batched_tokens = std::max(o.max_num_batched_tokens, o.max_num_seqs);
  const int64_t pool_tokens = int64_t{n_blocks} * o.block_size;
  int64_t max_len = o.max_model_len > 0 ? o.max_model_len : c.max_position_embeddings;
  sched_config_.max_model_len = static_cast<int32_t>(std::min(max_len, pool_tokens));
  sched_ = std::make_unique<Scheduler>(sched_config_, kv_config_);
  for (auto& f : flights_) f = std::make_unique<Flight>();
  // JINX_OVERLAP=0 turns the automatic choice off (diagnosis: the GPU tests rerun with it).
  const char* env = std::getenv("JINX_OVERLAP");
  const bool auto_off = env && std::string(env) == "0";
  overlap_ = o.overlap == OverlapMode::kOn ||
             (o.overlap == OverlapMode::kAuto && exec_->runs_async() && !auto_off);
  if (o.num_speculative_tokens > 0 || drafting) {
    if (o.overlap == OverlapMode::kOn)
      fail("speculative decoding does not run with overlap scheduling (--overlap on)");
    overlap_ = false;
    if (drafting) {
      const int32_t k = o.num_speculative_tokens > 0 ? o.num_speculative_tokens : 4;
      sched_->set_drafter(make_draft_drafter(o, eo, k), k);
    } else {
      sched_->set_drafter(
          std::make_shared<NgramDrafter>(o.prompt_lookup_min, o.prompt_lookup_max),
          o.num_speculative_tokens);
    }
  }
}

// The draft model's executor: the target's device and (on the CPU) thread pool, a pool of as
// many tokens as the target's plus every sequence's guesses, so that it never runs short
// while the target does not.
std::shared_ptr<Drafter> LLM::make_draft_drafter(const EngineOptions& o, ExecutorOptions eo,
                                                 int32_t k) {
  const ModelConfig& d = o.draft_model->config();
  if (o.draft_model->tp_size() > 1) fail("the draft model must not be sharded");
  check_draft_vocabulary(model_->config().vocab_size, nullptr, d.vocab_size, nullptr);
  eo.n_blocks = kv_config_.n_blocks + int64_t{o.max_num_seqs} * ((k + o.block_size - 1) /
                                                                     o.block_size + 1);
  eo.quantize = WeightQuant::kNone;
  auto drafter = std::make_shared<DraftModelDrafter>(
      o.draft_model, make_executor(o.draft_model, eo), o.block_size,
      static_cast<int32_t>(eo.max_batched_tokens), model_->config().vocab_size, o.draft_p_min);
  draft_ = drafter.get();
  log_info("draft model ", o.draft_model->path(), ": ", drafter->executor().describe(), ", ", k,
           " guesses per step");
  return drafter;
}

int64_t LLM::kv_blocks() const {
  return kv_config_.n_blocks;
}

int64_t LLM::max_model_len() const {
  return sched_config_.max_model_len;
}

void LLM::check_request(const Request& r, size_t index) const {
  const int64_t V = model_->config().vocab_size;
  if (std::string err = r.params.validate(static_cast<int>(V)); !err.empty())
    fail("request ", index, ": ", err);
  if (r.prompt.empty()) fail("request ", index, ": the prompt is empty");
  if (r.priority != 0 && opt_.scheduling_policy != SchedulingPolicy::kPriority) {
    fail("request ", index, ": priority ", r.priority,
         " needs the priority scheduling policy (--scheduling-policy priority)");
  }
  if (r.adapter > 0) {
    std::lock_guard<std::mutex> lk(adapters_mu_);
    if (std::count(retired_adapters_.begin(), retired_adapters_.end(), r.adapter))
      fail("request ", index, ": LoRA adapter ", r.adapter, " was unloaded");
  }
  if (r.adapter < -1 || r.adapter > model_->n_adapters())
    fail("request ", index, ": LoRA adapter ", r.adapter, " is not loaded (", model_->n_adapters(),
         " are)");
  for (int32_t t : r.prompt)
    if (t < 0 || t >= V) fail("request ", index, ": token id ", t, " is outside the vocabulary");
  if (static_cast<int64_t>(r.prompt.size()) >= max_model_len())
    fail("request ", index, ": the prompt has ", r.prompt.size(), " tokens; at most ",
         max_model_len() - 1, " fit with one generated token");
}

std::vector<RequestOutput> LLM::generate(const std::vector<std::string>& prompts,
                                         const SamplingParams& params) {
  JINX_CHECK(tok_ != nullptr, "text prompts need a tokenizer");
  std::vector<Request> reqs;
  for (const auto& p : prompts) reqs.push_back({tok_->encode(p, true, true), params});
  return generate(std::move(reqs));
}

// The request's own masks on a logits row: allowed_token_ids, min_tokens, bad words, its
// constraint.
void LLM::mask_row(Live& L, float* row) {
  const int64_t V = model_->config().vocab_size;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  if (!L.params.allowed_token_ids.empty()) {  // everything else masked
    if (L.allowed.empty()) {
      L.allowed.assign(static_cast<size_t>(V), 0);
      for (int32_t id : L.params.allowed_token_ids) L.allowed[static_cast<size_t>(id)] = 1;
    }
    for (int64_t t = 0; t < V; ++t)
      if (!L.allowed[static_cast<size_t>(t)]) row[t] = kNegInf;
  }
  if (static_cast<int>(L.out.token_ids.size()) < L.params.min_tokens) {  // no end yet
    for (int32_t id : model_->config().eos_token_ids)
      if (id >= 0 && id < V) row[id] = kNegInf;
    if (tok_)
      for (int32_t id : tok_->eos_ids())
        if (id >= 0 && id < V) row[id] = kNegInf;
    for (int32_t id : L.params.stop_token_ids) row[id] = kNegInf;
  }
  const std::vector<int32_t>& done = L.out.token_ids;
  for (const std::vector<int32_t>& w : L.params.bad_words_ids) {  // bad words: their last token
    const size_t lead = w.size() - 1;                               // where the rest was written
    if (lead <= done.size() && std::equal(w.begin(), w.end() - 1, done.end() - lead))
      row[w.back()] = kNegInf;
  }
  if (L.constraint) L.constraint->mask_logits(row, static_cast<int32_t>(V));
}

// The token of sampling row k (of request L), and whether it ends the request.
int32_t LLM::sample_row(Flight& f, size_t k, Live& L, FinishReason* reason) {
  const int64_t V = model_->config().vocab_size;
  SampleResult sr{f.picked[k], std::numeric_limits<float>::quiet_NaN(), {}};
  if (f.pick[k] == sampling::kPickLogits) {
    float* row = f.logits.data() + k * V;  // the sampler modifies its row in place
    mask_row(L, row);
    sr = L.sampler.sample(row, static_cast<int32_t>(V));
  } else if (sr.token < 0) {  // as the host sampler would have refused these logits
    fail("sampler: the logits hold a NaN or no finite maximum (row drawn on the device)");
  }
  return commit_token(L, std::move(sr), reason);
}

// Speculative sampling of guess row k (the draft drew the guess from q): the guess stands with
// probability min(1, p / q) under the target's distribution p; else the token is drawn from
// max(0, p - q), normalized (Leviathan et al. 2023; vLLM's rejection sampler). *rejected tells
// which. The output has the distribution of sampling without guesses.
int32_t LLM::verify_row(Flight& f, size_t k, Live& L, int32_t guess, const float* q,
                        bool* rejected, FinishReason* reason) {
  const int64_t V = model_->config().vocab_size;
  float* row = f.logits.data() + k * V;
  mask_row(L, row);
  SampleResult sr{guess, std::numeric_limits<float>::quiet_NaN(), {}};
  std::vector<float> raw;
  if (L.params.logprobs >= 0) raw.assign(row, row + V);  // logprobs are of the raw logits
  std::vector<float>& p = verify_p_;
  L.sampler.probs(row, static_cast<int32_t>(V), &p);
  const double u = L.sampler.draw_uniform();
  *rejected = !(u * q[guess] < p[static_cast<size_t>(guess)]);
  if (*rejected) {
    double total = 0.0;
    for (int64_t t = 0; t < V; ++t) total += std::max(0.0f, p[static_cast<size_t>(t)] - q[t]);
    const bool residual = total > 0.0;  // p == q leaves nothing: draw from p itself
    const double target = L.sampler.draw_uniform() * (residual ? total : 1.0);
    double cum = 0.0;
    int32_t pick = -1;
    for (int64_t t = 0; t < V; ++t) {
      const double w = residual ? std::max(0.0f, p[static_cast<size_t>(t)] - q[t])
                                : static_cast<double>(p[static_cast<size_t>(t)]);
      if (w <= 0.0) continue;
      pick = static_cast<int32_t>(t);
      cum += w;
      if (cum > target) break;
    }
    JINX_CHECK(pick >= 0, "speculative sampling: no token with probability");
    sr.token = pick;
  }
  if (L.params.logprobs >= 0) {
    const PromptLogprob lp = logprob_of(raw.data(), static_cast<int32_t>(V), sr.token, L.params.logprobs);
    sr.logprob = lp.logprob;
    sr.top = lp.top;
  }
  return commit_token(L, std::move(sr), reason);
}

// Records the request's next token and decides whether it ends the request.
int32_t LLM::commit_token(Live& L, SampleResult sr, FinishReason* reason) {
  const int64_t V = model_->config().vocab_size;
  JINX_CHECK(sr.token >= 0 && sr.token < V, "engine: sampled token ", sr.token,
             " outside the vocabulary");
  const int32_t token = sr.token;
  L.sampler.accept(token);
  L.out.token_ids.push_back(token);
  if (L.params.logprobs >= 0) L.out.logprobs.push_back(std::move(sr));
  const double t = since(L.t0);
  if (L.out.token_times.empty()) L.out.ttft_s = t;
  L.out.token_times.push_back(t);
  *reason = FinishReason::kNone;
  const auto& stop_ids = L.params.stop_token_ids;
  const auto& eos = model_->config().eos_token_ids;
  bool is_eos = std::find(eos.begin(), eos.end(), token) != eos.end();
  if (tok_) {
    const auto tok_eos = tok_->eos_ids();
    is_eos = is_eos || std::find(tok_eos.begin(), tok_eos.end(), token) != tok_eos.end();
  }
  // Stop strings count once min_tokens are out (the text before is never searched).
  if (static_cast<int>(L.out.token_ids.size()) >= L.params.min_tokens) L.stops.set_active(true);
  // A constrained request ends when its value is whole (or, should the mask ever let one
  // through, at a token its automaton rejects: stopping beats emitting invalid output).
  const bool constraint_done =
      L.constraint && !is_eos && (!L.constraint->accept(token) || L.constraint->finished());
  if (std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end() ||
      (is_eos && !L.params.ignore_eos)) {
    *reason = FinishReason::kStop;
  } else if (L.push_text(token) || constraint_done) {
    *reason = FinishReason::kStop;
  } else if (static_cast<int64_t>(L.out.token_ids.size()) >= L.params.max_tokens) {
    *reason = FinishReason::kLength;
  }
  return token;
}

// The sampled tokens of every sampling sequence, with the finish decision for its request.
// (A row of a request that ended since the step was built, by an abort or, with overlap
// scheduling, by the token of the step before, is dropped.) A sequence with speculative
// guesses has a row per guess before its last: its rows are sampled in order, exactly as one
// step each would have sampled them (same logits, the sampler's state and draws advancing the
// same way), until a sampled token differs from the guess the next row was computed with, or
// ends the request. For guesses that are one fixed token this is speculative sampling with
// nothing rejected wrongly: the output has the distribution, and with a seed the very tokens,
// of decoding one token per step.
void LLM::sample_step(Flight& f, std::vector<SampledToken>* sampled) {
  const Batch& batch = f.batch;
  sampled->clear();
  const size_t n = batch.sample_rows.size();
  for (size_t k0 = 0, k1 = 0; k0 < n; k0 = k1) {
    k1 = k0 + 1;
    while (k1 < n && batch.sample_seqs[k1] == batch.sample_seqs[k0]) ++k1;
    const SeqId id = batch.seq_ids[batch.sample_seqs[k0]];
    auto it = live_.find(id);
    if (it == live_.end()) continue;
    Live& L = *it->second;
    // Guesses drawn by the draft from its distribution (speculative sampling).
    const std::vector<float>* q = nullptr;
    if (k1 - k0 > 1) {
      const Sequence& s = sched_->sequence(id);
      if (!s.draft_probs.empty() &&
          s.draft_probs.size() == static_cast<size_t>(k1 - k0 - 1) * model_->config().vocab_size)
        q = &s.draft_probs;
    }
    for (size_t k = k0; k < k1; ++k) {
      FinishReason reason;
      int32_t token;
      bool guessed;
      if (q && k + 1 < k1) {
        const int32_t guess = batch.token_ids[static_cast<size_t>(batch.sample_rows[k]) + 1];
        bool rejected = false;
        token = verify_row(f, k, L, guess,
                           q->data() + (k - k0) * static_cast<size_t>(model_->config().vocab_size),
                           &rejected, &reason);
        guessed = !rejected;
      } else {
        token = sample_row(f, k, L, &reason);
        guessed =
            k + 1 < k1 && batch.token_ids[static_cast<size_t>(batch.sample_rows[k]) + 1] == token;
      }
      const int32_t n_accepted = static_cast<int32_t>(k - k0);
      if (reason != FinishReason::kNone || !guessed) {
        sampled->push_back({id, token, reason, n_accepted});
        break;
      }
    }
  }
}

// The logprob of each prompt token whose predecessor's row this step computed (rows of a
// prompt computed again after a preemption are skipped: they were recorded the first time).
void LLM::prompt_logprobs_step(Flight& f) {
  const Batch& batch = f.batch;
  const int64_t V = model_->config().vocab_size;
  const size_t n_sample = batch.sample_rows.size();
  for (size_t k = 0; k < batch.prompt_rows.size(); ++k) {
    auto it = live_.find(batch.seq_ids[batch.prompt_seqs[k]]);
    if (it == live_.end()) continue;
    Live& L = *it->second;
    const int32_t p = batch.positions[static_cast<size_t>(batch.prompt_rows[k])];
    if (static_cast<size_t>(p) != L.out.prompt_logprobs.size()) continue;
    JINX_CHECK(static_cast<size_t>(p) + 1 < L.prompt.size(), "engine: prompt row past the prompt");
    L.out.prompt_logprobs.push_back(logprob_of(f.logits.data() + (n_sample + k) * V,
                                               static_cast<int32_t>(V), L.prompt[p + 1],
                                               L.params.prompt_logprobs));
  }
}

SeqId LLM::add_request(Request r) {
  check_request(r, 0);
  auto l = std::make_unique<Live>(r, tok_.get());
  // With adapters loaded every sequence names one, so a batch's tokens all carry theirs.
  const int32_t adapter =
      model_->n_adapters() == 0 ? -1 : (r.adapter < 0 ? model_->default_adapter() : r.adapter);
  const bool draft_samples = opt_.speculative_sampling == SpeculativeSampling::kRejection &&
                            draft_ != nullptr && r.params.temperature >= kGreedyTemperature;
  auto draft_params = draft_samples ? std::make_shared<const SamplingParams>(r.params) : nullptr;
  SeqId id = sched_->add(std::move(r.prompt), r.params.max_tokens, adapter,
                         r.params.prompt_logprobs >= 0, r.priority);
  if (adapter > 0) ++adapter_users_[adapter];
  l->adapter = adapter;
  if (draft_params) sched_->set_draft_sampling(id, std::move(draft_params));
  live_[id] = std::move(l);
  return id;
}

bool LLM::abort_request(SeqId id) {
  return sched_->abort(id);
}

bool LLM::has_unfinished() const {
  return sched_->has_unfinished() || in_flight_ != nullptr;
}

int32_t LLM::n_running() const {
  return sched_->n_running();
}

int32_t LLM::n_waiting() const {
  return sched_->n_waiting();
}

int64_t LLM::kv_blocks_used() const {
  return kv_config_.n_blocks - sched_->kv().n_free_blocks();
}

int32_t LLM::load_adapter(const std::string& path) {
  if (!own_model_)
    fail("adapters can be loaded only into a model the engine loaded itself (LLM(path, ...))");
  if (opt_.device != "cpu") fail("--device ", opt_.device, ": LoRA adapters run on the CPU only so far");
  return own_model_->add_adapter(path);
}

void LLM::unload_adapter(int32_t a) {
  if (!own_model_ || a < 1 || a > model_->n_adapters()) fail("LoRA adapter ", a, " is not loaded");
  std::lock_guard<std::mutex> lk(adapters_mu_);
  if (std::count(retired_adapters_.begin(), retired_adapters_.end(), a))
    fail("LoRA adapter ", a, " was already unloaded");
  retired_adapters_.push_back(a);
  if (!adapter_users_.count(a)) own_model_->remove_adapter(a);
}

void LLM::retire(SeqId id, FinishReason reason,
                 std::vector<std::pair<SeqId, RequestOutput>>* done) {
  auto it = live_.find(id);
  JINX_CHECK(it != live_.end(), "engine: finished sequence ", id, " is not live");
  it->second->finish(reason);
  done->emplace_back(id, std::move(it->second->out));
  const int32_t adapter = it->second->adapter;
  live_.erase(it);
  if (adapter > 0 && --adapter_users_[adapter] == 0) {
    adapter_users_.erase(adapter);
    std::lock_guard<std::mutex> lk(adapters_mu_);
    if (std::count(retired_adapters_.begin(), retired_adapters_.end(), adapter))
      own_model_->remove_adapter(adapter);
  }
}

LLM::Flight* LLM::launch(const ScheduledStep& step, const Flight* prev) {
  const int64_t V = model_->config().vocab_size;
  Flight& f = *flights_[prev == flights_[0].get() ? 1 : 0];
  Batch& batch = f.batch;
  build_batch(step, *sched_, &batch);
  f.tokens = batch.token_ids;
  if (prev) {  // decode rows whose input the step in flight is sampling
    std::unordered_map<SeqId, int32_t> prev_row;
    for (size_t k = 0; k < prev->batch.sample_seqs.size(); ++k)
      prev_row[prev->batch.seq_ids[prev->batch.sample_seqs[k]]] = static_cast<int32_t>(k);
    for (int32_t i = 0; i < batch.n_seqs; ++i) {
      const int32_t r = batch.query_start[i + 1] - 1;
      if (f.tokens[r] != kPlaceholderToken) continue;
      auto it = prev_row.find(batch.seq_ids[i]);
      JINX_CHECK(it != prev_row.end() && prev->pick[it->second] != sampling::kPickLogits,
                 "engine: sequence ", batch.seq_ids[i], " waits for a token nobody samples");
      f.tokens[r] = -(it->second + 1);
    }
  }
  // Plain greedy rows need only the argmax, and plain sampled rows only their token, both of
  // which a GPU computes where the logits are.
  const bool device_samples = exec_->samples_on_device();
  const size_t n = batch.sample_rows.size();
  auto same_seq = [&](size_t a, size_t b) {
    return a < n && b < n && batch.sample_seqs[a] == batch.sample_seqs[b];
  };
  f.pick.assign(n, sampling::kPickLogits);
  f.sampling.assign(n, sampling::RowSampling{});
  f.host_samples = false;
  for (size_t k = 0; k < n; ++k) {
    Live& L = *live_.at(batch.seq_ids[batch.sample_seqs[k]]);
    sampling::RowSampling& rs = f.sampling[k];
    // Rows checking guesses: the host samples them in order, drawing only the uniforms of rows
    // it gets to (a row drawn on the device would draw one ahead for each).
    const bool several = same_seq(k, k + 1) || (k > 0 && same_seq(k - 1, k));
    f.pick[k] = L.pick(device_samples && !several, &rs.u);
    f.host_samples = f.host_samples || f.pick[k] == sampling::kPickLogits;
    rs.temperature = L.params.temperature;
    rs.top_k = L.params.top_k;
    rs.top_p = L.params.top_p;
    rs.min_p = L.params.min_p;
  }
  // Prompt rows (prompt logprobs): output rows after the sample rows, their logits kept.
  const size_t n_out = batch.out_rows.size();
  f.pick.resize(n_out, sampling::kPickLogits);
  f.sampling.resize(n_out, sampling::RowSampling{});
  f.host_samples = f.host_samples || n_out > n;
  f.picked.assign(n_out, -1);
  f.logits.resize(n_out * V);
  ForwardBatch fb = forward_batch_of(batch);
  fb.tokens = f.tokens;  // with placeholders
  fb.pick = f.pick;
  fb.sampling = f.sampling;
  const auto tf = Clock::now();
  exec_->submit(fb, f.logits.data(), f.picked.data());
  stats_.forward_seconds += since(tf);
  return &f;
}

void LLM::complete(Flight& f, std::vector<std::pair<SeqId, RequestOutput>>* done) {
  Scheduler& sched = *sched_;
  const auto tf = Clock::now();
  exec_->wait();
  stats_.forward_seconds += since(tf);
  prompt_logprobs_step(f);
  std::vector<SampledToken> sampled;
  sample_step(f, &sampled);
  for (const SampledToken& t : sampled) stats_.generated_tokens += 1 + t.n_accepted;
  for (const SampledToken& t : sampled) {  // first token: the admission is settled
    Live& L = *live_.at(t.seq);
    if (L.out.token_ids.size() == 1)
      L.out.n_cached_prompt = sched.sequence(t.seq).n_cached_prompt;
  }
  StepResult res = sched.on_step_done(sampled);
  for (const auto& fin : res.finished) retire(fin.id, fin.reason, done);
  for (const SampledToken& t : sampled)
    if (auto it = live_.find(t.seq); it != live_.end()) it->second->report(false);
#ifndef NDEBUG
  sched.check_invariants();  // every block free, cached, or held by exactly its holders
#endif
}

// Without overlap: schedule, submit, wait, sample. With it: a step in flight whose tokens are
// all picked on the device stays in flight while the next one is scheduled and submitted
// (its decode rows read the tokens there); then it is completed.
std::vector<std::pair<SeqId, RequestOutput>> LLM::step() {
  Scheduler& sched = *sched_;
  const auto t0 = Clock::now();
  std::vector<std::pair<SeqId, RequestOutput>> done;
  if (in_flight_ && (!overlap_ || in_flight_->host_samples)) {
    Flight* f = std::exchange(in_flight_, nullptr);
    complete(*f, &done);
  }
  ScheduledStep step = in_flight_ ? sched.schedule_ahead() : sched.schedule();
  for (const auto& f : step.finished) retire(f.id, f.reason, &done);
  Flight* prev = in_flight_;
  in_flight_ = step.empty() ? nullptr : launch(step, prev);
  if (prev) complete(*prev, &done);
  if (in_flight_ && !overlap_) {
    Flight* f = std::exchange(in_flight_, nullptr);
    complete(*f, &done);
  }
  const SchedulerStats& st = sched.stats();
  stats_.steps = st.n_steps;
  stats_.computed_tokens = st.n_computed_tokens;
  stats_.prefix_hit_tokens = st.n_prefix_hit_tokens;
  stats_.preemptions = st.n_preemptions;
  stats_.draft_tokens = st.n_draft_tokens;
  stats_.accepted_tokens = st.n_accepted_tokens;
  if (draft_) {
    stats_.draft_passes = draft_->n_passes();
    stats_.draft_seconds = draft_->seconds();
  }
  stats_.seconds += since(t0);
  return done;
}

std::vector<RequestOutput> LLM::generate(std::vector<Request> requests, const Progress& progress) {
  JINX_CHECK(!has_unfinished(), "generate() needs an idle engine");
  for (size_t i = 0; i < requests.size(); ++i) check_request(requests[i], i);
  std::vector<RequestOutput> outs(requests.size());
  std::unordered_map<SeqId, size_t> index;
  try {
    for (size_t i = 0; i < requests.size(); ++i) index[add_request(std::move(requests[i]))] = i;
  } catch (...) {  // leave the engine empty for the next call
    for (const auto& [id, i] : index) sched_->abort(id);
    while (has_unfinished()) step();
    throw;
  }
  size_t n_done = 0;
  const int64_t generated0 = stats_.generated_tokens;
  while (has_unfinished()) {
    for (auto& [id, out] : step()) {
      outs[index.at(id)] = std::move(out);
      ++n_done;
    }
    if (progress) progress(n_done, outs.size(), stats_.generated_tokens - generated0);
  }
  return outs;
}

}  // namespace jinx
