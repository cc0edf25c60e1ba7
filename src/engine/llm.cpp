#include "engine/llm.h"

#include <algorithm>
#include <chrono>
#include <limits>
#include <unordered_map>

#include "core/check.h"
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
  size_t sent_text = 0;    // out.text bytes already reported through on_update
  size_t sent_tokens = 0;  // out.token_ids already reported
  Clock::time_point t0;

  // What the step must return for this row. Greedy with nothing that needs the logits on the
  // host: their argmax (the Sampler's greedy rule, ties to the lowest id). Plain temperature
  // sampling on an executor that samples: a token drawn there with this sequence's next
  // uniform (*u). Else the logits.
  sampling::Pick pick(bool device_samples, double* u) {
    const SamplingParams& p = params;
    if (constraint || p.logprobs >= 0 || !p.logit_bias.empty() || p.repetition_penalty != 1.0f ||
        p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f)
      return sampling::kPickLogits;
    if (p.temperature < kGreedyTemperature) return sampling::kPickArgmax;
    if (!device_samples) return sampling::kPickLogits;
    *u = sampler.draw_uniform();
    return sampling::kPickSample;
  }
  Live(Request& r, const Tokenizer* tok)
      : params(r.params),
        sampler(r.params, r.prompt),
        stops(r.params.stop),
        constraint(std::move(r.constraint)),
        on_update(std::move(r.on_update)),
        t0(Clock::now()) {
    out.n_prompt = static_cast<int64_t>(r.prompt.size());
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

LLM::LLM(const std::string& model_path, const EngineOptions& options) {
  std::shared_ptr<Model> m =
      Model::load(model_path, LoadOptions{options.quantize, options.threads});
  model_ = m;
  if (m->store().gguf()) {
    tok_ = Tokenizer::from_gguf(*m->store().gguf());
  } else {
    tok_ = Tokenizer::from_hf_dir(model_path);
  }
  init(options);
}

LLM::LLM(std::shared_ptr<const Model> model, std::shared_ptr<const Tokenizer> tok,
         const EngineOptions& options)
    : model_(std::move(model)), tok_(std::move(tok)) {
  init(options);
}

LLM::~LLM() = default;

void LLM::init(const EngineOptions& o) {
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
  exec_ = make_executor(model_, eo);
  if (o.wrap_executor) exec_ = o.wrap_executor(std::move(exec_));
  n_blocks = static_cast<int32_t>(exec_->n_kv_blocks());
  kv_config_.block_size = o.block_size;
  kv_config_.n_blocks = n_blocks;
  kv_config_.enable_prefix_caching = o.prefix_caching;
  kv::validate(kv_config_);
  sched_config_.max_num_seqs = o.max_num_seqs;
  sched_config_.max_num_batched_tokens = std::max(o.max_num_batched_tokens, o.max_num_seqs);
  const int64_t pool_tokens = int64_t{n_blocks} * o.block_size;
  int64_t max_len = o.max_model_len > 0 ? o.max_model_len : c.max_position_embeddings;
  sched_config_.max_model_len = static_cast<int32_t>(std::min(max_len, pool_tokens));
  sched_ = std::make_unique<Scheduler>(sched_config_, kv_config_);
  batch_ = std::make_unique<Batch>();
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

// The sampled token of every sampling row, with the finish decision for its request.
void LLM::sample_step(const Batch& batch, float* logits, std::vector<Live*>& live,
                      std::vector<SampledToken>* sampled) {
  const int64_t V = model_->config().vocab_size;
  sampled->clear();
  for (size_t k = 0; k < batch.sample_rows.size(); ++k) {
    Live& L = *live[k];
    float* row = logits + k * V;  // the sampler modifies its row in place
    SampleResult sr{picked_[k], std::numeric_limits<float>::quiet_NaN(), {}};
    if (pick_[k] == sampling::kPickLogits) {
      if (L.constraint) L.constraint->mask_logits(row, static_cast<int32_t>(V));
      sr = L.sampler.sample(row, static_cast<int32_t>(V));
    } else if (sr.token < 0) {  // as the host sampler would have refused these logits
      fail("sampler: the logits hold a NaN or no finite maximum (row drawn on the device)");
    }
    JINX_CHECK(sr.token >= 0 && sr.token < V, "engine: sampled token ", sr.token,
               " outside the vocabulary");
    const int32_t token = sr.token;
    L.sampler.accept(token);
    L.out.token_ids.push_back(token);
    if (L.params.logprobs >= 0) L.out.logprobs.push_back(std::move(sr));
    const double t = since(L.t0);
    if (L.out.token_times.empty()) L.out.ttft_s = t;
    L.out.token_times.push_back(t);
    FinishReason reason = FinishReason::kNone;
    const auto& stop_ids = L.params.stop_token_ids;
    const auto& eos = model_->config().eos_token_ids;
    bool is_eos = std::find(eos.begin(), eos.end(), token) != eos.end();
    if (tok_) {
      const auto tok_eos = tok_->eos_ids();
      is_eos = is_eos || std::find(tok_eos.begin(), tok_eos.end(), token) != tok_eos.end();
    }
    // A constrained request ends when its value is whole (or, should the mask ever let one
    // through, at a token its automaton rejects: stopping beats emitting invalid output).
    const bool constraint_done =
        L.constraint && !is_eos && (!L.constraint->accept(token) || L.constraint->finished());
    if (std::find(stop_ids.begin(), stop_ids.end(), token) != stop_ids.end() ||
        (is_eos && !L.params.ignore_eos)) {
      reason = FinishReason::kStop;
    } else if (L.push_text(token) || constraint_done) {
      reason = FinishReason::kStop;
    } else if (static_cast<int64_t>(L.out.token_ids.size()) >= L.params.max_tokens) {
      reason = FinishReason::kLength;
    }
    sampled->push_back({batch.seq_ids[batch.sample_seqs[k]], token, reason});
  }
}

SeqId LLM::add_request(Request r) {
  check_request(r, 0);
  auto l = std::make_unique<Live>(r, tok_.get());
  SeqId id = sched_->add(std::move(r.prompt));
  live_[id] = std::move(l);
  return id;
}

bool LLM::abort_request(SeqId id) {
  return sched_->abort(id);
}

bool LLM::has_unfinished() const {
  return sched_->has_unfinished();
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

void LLM::retire(SeqId id, FinishReason reason,
                 std::vector<std::pair<SeqId, RequestOutput>>* done) {
  auto it = live_.find(id);
  JINX_CHECK(it != live_.end(), "engine: finished sequence ", id, " is not live");
  it->second->finish(reason);
  done->emplace_back(id, std::move(it->second->out));
  live_.erase(it);
}

std::vector<std::pair<SeqId, RequestOutput>> LLM::step() {
  const int64_t V = model_->config().vocab_size;
  Scheduler& sched = *sched_;
  const auto t0 = Clock::now();
  std::vector<std::pair<SeqId, RequestOutput>> done;
  ScheduledStep step = sched.schedule();
  for (const auto& f : step.finished) retire(f.id, f.reason, &done);
  if (!step.empty()) {
    Batch& batch = *batch_;
    build_batch(step, sched, &batch);
    ForwardBatch fb;
    fb.tokens = batch.token_ids;
    fb.positions = batch.positions;
    fb.slot_mapping = batch.slot_mapping;
    fb.attn = {batch.n_seqs, batch.query_start.data(), batch.context_len.data(),
               batch.block_tables.data(), batch.max_blocks};
    fb.out_rows = batch.sample_rows;
    std::vector<Live*> rows;
    for (int32_t s : batch.sample_seqs) rows.push_back(live_.at(batch.seq_ids[s]).get());
    // Plain greedy rows need only the argmax, and plain sampled rows only their token, both of
    // which a GPU computes where the logits are.
    const bool device_samples = exec_->samples_on_device();
    pick_.assign(rows.size(), sampling::kPickLogits);
    row_sampling_.assign(rows.size(), sampling::RowSampling{});
    for (size_t k = 0; k < rows.size(); ++k) {
      sampling::RowSampling& rs = row_sampling_[k];
      pick_[k] = rows[k]->pick(device_samples, &rs.u);
      const SamplingParams& p = rows[k]->params;
      rs.temperature = p.temperature;
      rs.top_k = p.top_k;
      rs.top_p = p.top_p;
      rs.min_p = p.min_p;
    }
    fb.pick = pick_;
    fb.sampling = row_sampling_;
    picked_.assign(rows.size(), -1);
    logits_.resize(batch.sample_rows.size() * V);
    const auto tf = Clock::now();
    exec_->forward_batch(fb, logits_.data(), picked_.data());
    stats_.forward_seconds += since(tf);
    std::vector<SampledToken> sampled;
    sample_step(batch, logits_.data(), rows, &sampled);
    stats_.generated_tokens += static_cast<int64_t>(sampled.size());
    for (const SampledToken& t : sampled) {  // first token: the admission is settled
      Live& L = *live_.at(t.seq);
      if (L.out.token_ids.size() == 1)
        L.out.n_cached_prompt = sched.sequence(t.seq).n_cached_prompt;
    }
    StepResult res = sched.on_step_done(sampled);
    for (const auto& f : res.finished) retire(f.id, f.reason, &done);
    for (const SampledToken& t : sampled)
      if (auto it = live_.find(t.seq); it != live_.end()) it->second->report(false);
#ifndef NDEBUG
    sched.check_invariants();  // every block free, cached, or held by exactly its holders
#endif
  }
  const SchedulerStats& st = sched.stats();
  stats_.steps = st.n_steps;
  stats_.computed_tokens = st.n_computed_tokens;
  stats_.prefix_hit_tokens = st.n_prefix_hit_tokens;
  stats_.preemptions = st.n_preemptions;
  stats_.seconds += since(t0);
  return done;
}

std::vector<RequestOutput> LLM::generate(std::vector<Request> requests, const Progress& progress) {
  JINX_CHECK(!sched_->has_unfinished(), "generate() needs an idle engine");
  for (size_t i = 0; i < requests.size(); ++i) check_request(requests[i], i);
  std::vector<RequestOutput> outs(requests.size());
  std::unordered_map<SeqId, size_t> index;
  try {
    for (size_t i = 0; i < requests.size(); ++i) index[add_request(std::move(requests[i]))] = i;
  } catch (...) {  // leave the engine empty for the next call
    for (const auto& [id, i] : index) sched_->abort(id);
    while (sched_->has_unfinished()) step();
    throw;
  }
  size_t n_done = 0;
  const int64_t generated0 = stats_.generated_tokens;
  while (sched_->has_unfinished()) {
    for (auto& [id, out] : step()) {
      outs[index.at(id)] = std::move(out);
      ++n_done;
    }
    if (progress) progress(n_done, outs.size(), stats_.generated_tokens - generated0);
  }
  return outs;
}

}  // namespace jinx
