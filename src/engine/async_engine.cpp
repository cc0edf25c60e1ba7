#include "engine/async_engine.h"

#include <algorithm>

#include "core/log.h"

namespace jinx {

Histogram::Histogram(std::vector<double> b) : bounds(std::move(b)), counts(bounds.size() + 1) {}

void Histogram::observe(double v) {
  const size_t i = static_cast<size_t>(
      std::lower_bound(bounds.begin(), bounds.end(), v) - bounds.begin());  // v <= bounds[i]
  ++counts[i];
  sum += v;
  ++count;
}

AsyncEngine::AsyncEngine(std::unique_ptr<LLM> llm, const AsyncOptions& options)
    : llm_(std::move(llm)), opt_(options) {
  JINX_CHECK(llm_ != nullptr, "AsyncEngine needs an engine");
  JINX_CHECK(opt_.max_queue >= 0, "max_queue must be >= 0, got ", opt_.max_queue);
  JINX_CHECK(opt_.max_running >= 0, "max_running must be >= 0, got ", opt_.max_running);
  metrics_.ttft = Histogram({0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60});
  metrics_.tpot = Histogram({0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5});
  metrics_.e2e = Histogram({0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300});
  metrics_.kv_blocks_total = llm_->kv_blocks();
  thread_ = std::thread([this] { loop(); });
}

AsyncEngine::~AsyncEngine() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

uint64_t AsyncEngine::submit(Request r) {
  // Reads immutable limits, the adapter count (atomic) and the retired adapters (under their
  // lock): safe off the engine thread.
  llm_->check_request(r, 0);
  std::lock_guard<std::mutex> lk(mu_);
  if (metrics_.failed) fail("the engine stopped after an internal error: ", metrics_.failure);
  const int64_t waiting = waiting_for_slot_locked();
  if (waiting >= opt_.max_queue)
    throw QueueFull(str("the server is busy: ", waiting, " requests are already waiting"));
  const uint64_t h = next_handle_++;
  metrics_.prompt_tokens += static_cast<int64_t>(r.prompt.size());
  incoming_.emplace_back(h, std::move(r));
  cv_.notify_all();
  return h;
}

std::future<int32_t> AsyncEngine::run_between_steps(std::function<int32_t(LLM&)> fn) {
  Task t{std::move(fn), {}};
  std::future<int32_t> f = t.done.get_future();
  std::lock_guard<std::mutex> lk(mu_);
  if (metrics_.failed) fail("the engine stopped after an internal error: ", metrics_.failure);
  if (stop_) fail("the server is stopping");
  tasks_.push_back(std::move(t));
  cv_.notify_all();
  return f;
}

std::future<std::vector<float>> AsyncEngine::embed(std::vector<std::vector<int32_t>> seqs,
                                                   Pooling pooling, bool normalize) {
  llm_->check_embed(seqs);  // immutable limits only: safe off the engine thread
  auto job = std::make_unique<EmbedJob>();
  job->seqs = std::move(seqs);
  job->pooling = pooling;
  job->normalize = normalize;
  job->out.resize(job->seqs.size() * llm_->model().config().hidden_size);
  std::future<std::vector<float>> f = job->done.get_future();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (metrics_.failed) fail("the engine stopped after an internal error: ", metrics_.failure);
    if (stop_) fail("the server is stopping");
    if (embeds_pending_ >= opt_.max_queue)
      throw QueueFull(str("the server is busy: ", embeds_pending_,
                          " embedding requests are already waiting"));
    ++embeds_pending_;
    embeds_.push_back(std::move(job));
  }
  cv_.notify_all();
  return f;
}

bool AsyncEngine::run_embed_slice(EmbedJob& job) {
  const size_t first = job.next;
  int64_t tokens = 0;
  while (job.next < job.seqs.size() &&
         (job.next == first ||
          tokens + static_cast<int64_t>(job.seqs[job.next].size()) <= kEmbedSliceTokens))
    tokens += static_cast<int64_t>(job.seqs[job.next++].size());
  const int64_t H = llm_->model().config().hidden_size;
  try {
    llm_->embed(std::span(job.seqs).subspan(first, job.next - first), job.pooling, job.normalize,
                job.out.data() + first * H);
  } catch (...) {
    job.done.set_exception(std::current_exception());
    return true;
  }
  if (job.next < job.seqs.size()) return false;
  job.done.set_value(std::move(job.out));
  return true;
}

void AsyncEngine::cancel(uint64_t handle) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    cancels_.push_back(handle);
  }
  cv_.notify_all();
}

// Requests not running yet (queued in the engine, taken by its thread, or not yet handed to
// it) less the run slots free at the last published step: those would start at the next step.
// metrics_ lags the engine by at most one step; a request that finished since still counts as
// running, so this errs towards refusing, never towards an unbounded queue.
int64_t AsyncEngine::waiting_for_slot_locked() const {
  const int64_t unstarted = metrics_.waiting + in_transit_ + static_cast<int64_t>(incoming_.size());
  const int64_t free_slots = std::max<int64_t>(0, int64_t{opt_.max_running} - metrics_.running);
  return std::max<int64_t>(0, unstarted - free_slots);
}

EngineMetrics AsyncEngine::metrics() const {
  std::lock_guard<std::mutex> lk(mu_);
  EngineMetrics m = metrics_;
  m.waiting += static_cast<int32_t>(in_transit_ + static_cast<int64_t>(incoming_.size()));
  return m;
}

void AsyncEngine::publish_locked() {
  const EngineStats& st = llm_->stats();
  metrics_.running = llm_->n_running();
  metrics_.waiting = llm_->n_waiting();
  in_transit_ = 0;
  metrics_.kv_blocks_used = llm_->kv_blocks_used();
  metrics_.prefix_hit_tokens = st.prefix_hit_tokens;
  metrics_.generation_tokens = st.generated_tokens;
  metrics_.preemptions = st.preemptions;
  metrics_.spec_draft_tokens = st.draft_tokens;
  metrics_.spec_accepted_tokens = st.accepted_tokens;
}

void AsyncEngine::record_finished(const RequestOutput& out) {
  std::lock_guard<std::mutex> lk(mu_);
  ++metrics_.requests_finished;
  ++metrics_.finished_by_reason[out.finish_reason];
  if (!out.token_ids.empty()) {
    metrics_.ttft.observe(out.ttft_s);
    metrics_.e2e.observe(out.total_s);
    if (out.token_ids.size() > 1)
      metrics_.tpot.observe((out.total_s - out.ttft_s) /
                            static_cast<double>(out.token_ids.size() - 1));
  }
}

namespace {

void end_unstarted(const StreamFn& fn, const char* reason) {
  if (!fn) return;
  StreamUpdate u;
  u.finished = true;
  u.finish_reason = reason;
  fn(u);
}

}  // namespace

void AsyncEngine::loop() {
  std::unordered_map<uint64_t, StreamFn> fns;  // live requests' callbacks, for a failure
  auto finish_done = [&](std::vector<std::pair<SeqId, RequestOutput>> done) {
    for (auto& [id, out] : done) {
      record_finished(out);
      const uint64_t h = handle_of_.at(id);
      handle_of_.erase(id);
      seq_of_.erase(h);
      fns.erase(h);
    }
  };
  std::deque<std::unique_ptr<EmbedJob>> jobs;  // embedding jobs taken from embeds_
  auto end_jobs = [&](const char* why) {
    for (auto& j : jobs) j->done.set_exception(std::make_exception_ptr(Error(why)));
    jobs.clear();
    std::lock_guard<std::mutex> lk(mu_);
    for (auto& j : embeds_) j->done.set_exception(std::make_exception_ptr(Error(why)));
    embeds_.clear();
    embeds_pending_ = 0;
  };
  bool stopping = false;
  while (!stopping) {
    std::vector<std::pair<uint64_t, Request>> in;
    std::vector<uint64_t> cancels;
    std::vector<Task> tasks;
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] {
        return stop_ || !incoming_.empty() || !cancels_.empty() || !embeds_.empty() ||
               !tasks_.empty() || !jobs.empty() || llm_->has_unfinished();
      });
      stopping = stop_;
      tasks.swap(tasks_);
      in.swap(incoming_);
      cancels.swap(cancels_);
      in_transit_ += static_cast<int64_t>(in.size());
      for (auto& j : embeds_) jobs.push_back(std::move(j));
      embeds_.clear();
    }
    if (stopping) {
      end_jobs("the server is stopping");
    } else if (!jobs.empty() && run_embed_slice(*jobs.front())) {
      jobs.pop_front();
      std::lock_guard<std::mutex> lk(mu_);
      --embeds_pending_;
    }
    for (Task& t : tasks) {  // before the requests submitted after them
      if (stopping) {
        t.done.set_exception(std::make_exception_ptr(Error("the server is stopping")));
        continue;
      }
      try {
        t.done.set_value(t.fn(*llm_));
      } catch (...) {
        t.done.set_exception(std::current_exception());
      }
    }
    for (auto& [h, r] : in) {
      StreamFn fn = r.on_update;
      if (stopping) {
        end_unstarted(fn, "abort");
        continue;
      }
      try {
        const SeqId id = llm_->add_request(std::move(r));
        seq_of_[h] = id;
        handle_of_[id] = h;
        fns[h] = fn;
      } catch (const std::exception& e) {  // validated at submit; should not happen
        log_warn("engine: request dropped: ", e.what());
        end_unstarted(fn, "abort");
      }
    }
    for (uint64_t h : cancels)
      if (auto it = seq_of_.find(h); it != seq_of_.end()) llm_->abort_request(it->second);
    if (stopping)
      for (const auto& [h, id] : seq_of_) llm_->abort_request(id);
    if (!in.empty()) {  // they are in the engine's waiting queue now: count them there
      std::lock_guard<std::mutex> lk(mu_);
      publish_locked();
    }
    try {
      // On stop, the aborts resolve in schedule() without a forward pass.
      do {
        if (llm_->has_unfinished()) finish_done(llm_->step());
      } while (stopping && llm_->has_unfinished());
    } catch (const std::exception& e) {
      log_warn("engine: internal error, stopping: ", e.what());
      end_jobs("the engine stopped after an internal error");
      std::lock_guard<std::mutex> lk(mu_);
      metrics_.failed = true;
      metrics_.failure = e.what();
      for (auto& [h, fn] : fns) end_unstarted(fn, "abort");
      for (auto& [h, r] : incoming_) end_unstarted(r.on_update, "abort");
      incoming_.clear();
      for (Task& t : tasks_)
        t.done.set_exception(std::make_exception_ptr(Error("the engine stopped")));
      tasks_.clear();
      return;
    }
    std::lock_guard<std::mutex> lk(mu_);
    publish_locked();
  }
}

}  // namespace jinx
