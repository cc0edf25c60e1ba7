// AsyncEngine: requests submitted from other threads stream the same tokens the offline engine
// gives; cancelling frees the request's KV blocks; a full queue refuses; a token constraint
// masks what the sampler may pick.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "engine/async_engine.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

// Collects one request's updates.
struct Sink {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int32_t> tokens;
  int n_updates = 0;
  bool done = false;
  std::string reason;
  StreamFn fn() {
    return [this](const StreamUpdate& u) {
      std::lock_guard<std::mutex> lk(mu);
      tokens.insert(tokens.end(), u.token_ids.begin(), u.token_ids.end());
      ++n_updates;
      if (u.finished) {
        done = true;
        reason = u.finish_reason;
      }
      cv.notify_all();
    };
  }
  bool wait(std::chrono::seconds t = std::chrono::seconds(60)) {
    std::unique_lock<std::mutex> lk(mu);
    return cv.wait_for(lk, t, [&] { return done; });
  }
  size_t n_tokens() {
    std::lock_guard<std::mutex> lk(mu);
    return tokens.size();
  }
};

std::vector<int32_t> prompt_of(int i) {
  std::vector<int32_t> p;
  for (int k = 0; k < 10 + 3 * i; ++k) p.push_back(3 + (k * 37 + i * 11) % 400);
  return p;
}

SamplingParams greedy(int n) {
  SamplingParams sp;
  sp.temperature = 0;
  sp.max_tokens = n;
  sp.ignore_eos = true;
  return sp;
}

TEST(AsyncEngine, StreamsWhatTheOfflineEngineGives) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  EngineOptions o;
  o.threads = 2;
  o.kv_cache_tokens = 2048;
  std::vector<Request> reqs;
  for (int i = 0; i < 8; ++i) reqs.push_back({prompt_of(i), greedy(10)});
  LLM offline(model, nullptr, o);
  auto expected = offline.generate(reqs);

  AsyncEngine eng(std::make_unique<LLM>(model, nullptr, o), {});
  std::vector<std::unique_ptr<Sink>> sinks;
  std::vector<std::thread> clients;
  for (int i = 0; i < 8; ++i) sinks.push_back(std::make_unique<Sink>());
  for (int i = 0; i < 8; ++i)
    clients.emplace_back([&, i] {
      Request r{prompt_of(i), greedy(10)};
      r.on_update = sinks[i]->fn();
      eng.submit(std::move(r));
    });
  for (auto& t : clients) t.join();
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(sinks[i]->wait()) << i;
    EXPECT_EQ(sinks[i]->tokens, expected[i].token_ids) << i;
    EXPECT_EQ(sinks[i]->reason, "length");
    EXPECT_GE(sinks[i]->n_updates, 2);  // streamed, not one final report
  }
  EngineMetrics m = eng.metrics();  // published after the step whose callbacks ran
  for (int i = 0; i < 2000 && (m.requests_finished < 8 || m.kv_blocks_used != 0); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    m = eng.metrics();
  }
  EXPECT_EQ(m.requests_finished, 8);
  EXPECT_EQ(m.generation_tokens, 80);
  EXPECT_EQ(m.ttft.count, 8);
  EXPECT_EQ(m.kv_blocks_used, 0);
}

TEST(AsyncEngine, CancelFreesBlocks) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-llama");
  EngineOptions o;
  o.threads = 1;
  o.kv_cache_tokens = 1024;
  AsyncEngine eng(std::make_unique<LLM>(model, nullptr, o), {});
  Sink s;
  Request r{prompt_of(3), greedy(100000)};
  r.params.max_tokens = 900;
  r.on_update = s.fn();
  const uint64_t h = eng.submit(std::move(r));
  while (s.n_tokens() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_GT(eng.metrics().kv_blocks_used, 0);
  eng.cancel(h);
  ASSERT_TRUE(s.wait());
  EXPECT_EQ(s.reason, "abort");
  EXPECT_LT(s.n_tokens(), 900u);
  for (int i = 0; i < 1000 && eng.metrics().kv_blocks_used != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(eng.metrics().kv_blocks_used, 0);
  eng.cancel(h);  // again: harmless
  for (int i = 0; i < 1000 && eng.metrics().requests_finished == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(eng.metrics().finished_by_reason["abort"], 1);
}

TEST(AsyncEngine, FullQueueRefusesAndBadRequestThrows) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-llama");
  EngineOptions o;
  o.threads = 1;
  o.max_num_seqs = 1;
  o.max_num_batched_tokens = 16;
  o.kv_cache_tokens = 1024;
  AsyncEngine eng(std::make_unique<LLM>(model, nullptr, o), {.max_queue = 2});
  std::vector<std::unique_ptr<Sink>> sinks;
  int refused = 0;
  std::vector<uint64_t> handles;
  for (int i = 0; i < 10; ++i) {
    sinks.push_back(std::make_unique<Sink>());
    Request r{prompt_of(i), greedy(400)};
    r.on_update = sinks.back()->fn();
    try {
      handles.push_back(eng.submit(std::move(r)));
    } catch (const QueueFull&) {
      ++refused;
      sinks.pop_back();
    }
  }
  EXPECT_GE(refused, 5);  // one runs, two wait; the engine thread may have taken one more
  Request bad{{1, 2, 99999}, greedy(3)};
  EXPECT_THROW(eng.submit(std::move(bad)), Error);
  for (uint64_t h : handles) eng.cancel(h);
  for (auto& s : sinks) ASSERT_TRUE(s->wait());
}

// A burst larger than run slots + queue: the requests free run slots will take at the next step
// are not "waiting", so max_num_seqs + max_queue are admitted (before the fix, requests not yet
// picked up by the engine thread all counted as waiting and only max_queue + 1 got through).
TEST(AsyncEngine, BurstFillsRunSlotsThenQueue) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-llama");
  EngineOptions o;
  o.threads = 1;
  o.max_num_seqs = 8;
  o.kv_cache_tokens = 8192;
  AsyncEngine eng(std::make_unique<LLM>(model, nullptr, o),
                  {.max_queue = 4, .max_running = o.max_num_seqs});
  // The first request's first update holds the engine thread inside a step until the burst is
  // in, so no request can start or finish meanwhile: the count does not depend on timing.
  std::mutex mu;
  std::condition_variable cv;
  bool held = false, release = false;
  Sink first;
  Request r0{prompt_of(0), greedy(200)};
  r0.on_update = [&, fn = first.fn()](const StreamUpdate& u) {
    {
      std::unique_lock<std::mutex> lk(mu);
      if (!held) {
        held = true;
        cv.notify_all();
        cv.wait(lk, [&] { return release; });
      }
    }
    fn(u);
  };
  std::vector<uint64_t> handles{eng.submit(std::move(r0))};
  {
    std::unique_lock<std::mutex> lk(mu);
    ASSERT_TRUE(cv.wait_for(lk, std::chrono::seconds(60), [&] { return held; }));
  }
  std::vector<std::unique_ptr<Sink>> sinks;
  int refused = 0;
  for (int i = 1; i < 32; ++i) {
    auto s = std::make_unique<Sink>();
    Request r{prompt_of(i), greedy(200)};
    r.on_update = s->fn();
    try {
      handles.push_back(eng.submit(std::move(r)));
      sinks.push_back(std::move(s));
    } catch (const QueueFull&) {
      ++refused;
    }
  }
  EXPECT_EQ(handles.size(), 12u);  // 8 run slots + 4 waiting
  EXPECT_EQ(refused, 20);
  EXPECT_EQ(eng.metrics().waiting + eng.metrics().running, 12);
  {
    std::lock_guard<std::mutex> lk(mu);
    release = true;
  }
  cv.notify_all();
  // Once the engine ran a step: 8 run, 4 wait, and the queue is full.
  EngineMetrics m = eng.metrics();
  for (int i = 0; i < 5000 && m.running != 8; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    m = eng.metrics();
  }
  EXPECT_EQ(m.running, 8);
  if (m.requests_finished == 0) {
    EXPECT_EQ(m.waiting, 4);
  }
  for (uint64_t h : handles) eng.cancel(h);
  ASSERT_TRUE(first.wait());
  for (auto& s : sinks) ASSERT_TRUE(s->wait());
}

// Allows only even token ids, and finishes after 5 tokens.
struct EvenOnly : TokenConstraint {
  int n = 0;
  void mask_logits(float* logits, int32_t v) override {
    for (int32_t t = 1; t < v; t += 2) logits[t] = -std::numeric_limits<float>::infinity();
  }
  bool accept(int32_t t) override {
    if (t % 2) return false;
    ++n;
    return true;
  }
  bool complete() const override { return n >= 5; }
  bool finished() const override { return n >= 5; }
};

TEST(AsyncEngine, ConstraintMasksAndFinishes) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  EngineOptions o;
  o.threads = 1;
  LLM llm(model, nullptr, o);
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = 7;
  sp.max_tokens = 50;
  sp.ignore_eos = true;
  Request r{prompt_of(1), sp};
  auto c = std::make_shared<EvenOnly>();
  r.constraint = c;
  auto out = llm.generate({r});
  ASSERT_EQ(out[0].token_ids.size(), 5u);
  for (int32_t t : out[0].token_ids) EXPECT_EQ(t % 2, 0);
  EXPECT_EQ(out[0].finish_reason, "stop");
}

}  // namespace
}  // namespace jinx

namespace jinx {
namespace {

// Embedding jobs run on the engine thread between generation steps, in slices, and give what
// Model::embed gives directly; generation running at the same time is unaffected.
TEST(AsyncEngine, EmbedsBetweenStepsAsTheModelDoes) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen3");
  EngineOptions o;
  o.threads = 2;
  o.kv_cache_tokens = 4096;
  std::vector<std::vector<int32_t>> seqs;
  for (int i = 0; i < 40; ++i) seqs.push_back(prompt_of(i % 13 * 5));  // 10..190 tokens
  const int64_t H = model->config().hidden_size;
  std::vector<float> want(seqs.size() * H);
  ThreadPool pool(2);
  model->embed(seqs, Pooling::kLast, true, want.data(), pool);

  LLM offline(model, nullptr, o);
  const auto expected = offline.generate(std::vector<Request>{{prompt_of(1), greedy(24)}});
  AsyncEngine eng(std::make_unique<LLM>(model, nullptr, o), {});
  Sink s;
  Request r{prompt_of(1), greedy(24)};
  r.on_update = s.fn();
  eng.submit(std::move(r));
  auto f1 = eng.embed(seqs, Pooling::kLast, true);  // > kEmbedSliceTokens: several slices
  auto f2 = eng.embed({seqs[3]}, Pooling::kLast, true);
  EXPECT_EQ(f1.get(), want);
  EXPECT_EQ(f2.get(), std::vector<float>(want.begin() + 3 * H, want.begin() + 4 * H));
  ASSERT_TRUE(s.wait());
  EXPECT_EQ(s.tokens, expected[0].token_ids);

  EXPECT_THROW(eng.embed({{}}, Pooling::kMean, true), Error);
  EXPECT_THROW(eng.embed({{1, 2, 512}}, Pooling::kMean, true), Error);  // vocabulary is 512
  EXPECT_THROW(eng.embed({std::vector<int32_t>(5000, 7)}, Pooling::kMean, true), Error);
}

}  // namespace
}  // namespace jinx
