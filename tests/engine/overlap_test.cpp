// Overlap scheduling end to end on the CPU: the engine schedules and submits step N+1 before
// step N has run (tests/support/deferred_executor.h plays the asynchronous device), and every
// request must come out exactly as from the engine without overlap: greedy tokens, seeded
// sampled tokens, stops, lengths, preemption, prefix caching, aborts in flight.
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <random>

#include "core/check.h"
#include "engine/llm.h"
#include "../support/deferred_executor.h"
#include "../support/device_sampling_check.h"
#include "../support/sampling_device.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

// 16 requests of 3-40 prompt tokens (half share a prefix), 1-20 new tokens.
std::vector<Request> make_requests() {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> tok(3, 500), len(3, 40), n_new(1, 20);
  std::vector<int32_t> prefix(24);
  for (auto& t : prefix) t = tok(rng);
  std::vector<Request> rs;
  for (int i = 0; i < 16; ++i) {
    Request r;
    if (i % 2) r.prompt = prefix;
    for (int n = len(rng); n > 0; --n) r.prompt.push_back(tok(rng));
    r.params.temperature = 0.0f;
    r.params.max_tokens = n_new(rng);
    r.params.ignore_eos = true;
    rs.push_back(r);
  }
  return rs;
}

EngineOptions base_options() {
  EngineOptions o;
  o.threads = 2;
  o.max_num_seqs = 6;
  o.max_num_batched_tokens = 48;  // prompts go in chunks, next to decodes
  o.kv_cache_tokens = 4096;
  return o;
}

EngineOptions deferred(EngineOptions o, test_support::DeferredStats* stats) {
  o.overlap = OverlapMode::kOn;  // (what kAuto picks for it: see AutoIsOnForAsyncExecutors)
  o.wrap_executor = [stats](std::unique_ptr<Executor> inner) -> std::unique_ptr<Executor> {
    return std::make_unique<test_support::DeferredDevice>(std::move(inner), stats);
  };
  return o;
}

void expect_same(const std::vector<RequestOutput>& got, const std::vector<RequestOutput>& want,
                 const char* what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].token_ids, want[i].token_ids) << what << ": request " << i;
    EXPECT_EQ(got[i].finish_reason, want[i].finish_reason) << what << ": request " << i;
  }
}

TEST(Overlap, GreedyOutputsEqualTheEngineWithout) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  std::vector<Request> reqs = make_requests();
  EngineOptions off = base_options();
  off.overlap = OverlapMode::kOff;
  const auto first = LLM(model, nullptr, off).generate(reqs);
  // Stop some requests early at a token they produce, so that they end (and free their blocks)
  // while the step after is in flight.
  for (size_t i = 0; i < reqs.size(); i += 3)
    if (first[i].token_ids.size() > 3) reqs[i].params.stop_token_ids = {first[i].token_ids[2]};
  // And a variant that samples two requests on the host (a penalty): steps with their rows are
  // waited for before the next is scheduled, and may hold rows of requests the step before
  // ended.
  std::vector<Request> mixed = reqs;
  mixed[4].params.repetition_penalty = 1.3f;
  mixed[13].params.repetition_penalty = 1.3f;
  LLM sync(model, nullptr, off);
  EXPECT_FALSE(sync.overlaps());
  const auto want = sync.generate(reqs);
  const auto want_mixed = sync.generate(mixed);
  int n_stopped = 0;
  for (const auto& o : want) n_stopped += o.finish_reason == "stop";
  EXPECT_GE(n_stopped, 3);

  struct Case {
    const char* name;
    bool defer;
    int64_t kv_tokens;
    bool prefix;
    bool host_rows = false;
  };
  const Case cases[] = {
      {"overlap on a synchronous executor", false, 4096, true},
      {"deferred device", true, 4096, true},
      {"deferred device, small pool (preemption)", true, 160, true},
      {"deferred device, no prefix cache", true, 4096, false},
      {"deferred device, some rows sampled on the host", true, 4096, true, true},
  };
  for (const Case& c : cases) {
    test_support::DeferredStats stats;
    EngineOptions o = base_options();
    o.kv_cache_tokens = c.kv_tokens;
    o.prefix_caching = c.prefix;
    if (c.defer) {
      o = deferred(o, &stats);
    } else {
      o.overlap = OverlapMode::kOn;
    }
    LLM llm(model, nullptr, o);
    ASSERT_TRUE(llm.overlaps()) << c.name;
    const std::vector<Request>& rs = c.host_rows ? mixed : reqs;
    const auto& w = c.host_rows ? want_mixed : want;
    expect_same(llm.generate(rs), w, c.name);
    EXPECT_EQ(llm.kv_blocks_used(), 0) << c.name;
    EXPECT_FALSE(llm.has_unfinished()) << c.name;
    if (c.kv_tokens < 1000) EXPECT_GT(llm.stats().preemptions, 0) << c.name;
    if (c.defer) {  // it really overlapped
      EXPECT_EQ(stats.max_in_flight, 2) << c.name;
      EXPECT_GT(stats.placeholders, c.host_rows ? 10 : 50) << c.name;
    }
    // And again on the same engine (prefix cache warm).
    expect_same(llm.generate(rs), w, c.name);
  }
}

// Plain seeded sampling drawn on the "device" repeats alone and batched next to rows the host
// samples (which make their steps wait), with the steps overlapped.
TEST(Overlap, SeededDeviceSamplingRepeats) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  test_support::DeferredStats stats;
  int sampled = 0;
  EngineOptions o = base_options();
  o.max_num_seqs = 8;
  const int64_t vocab = model->config().vocab_size;
  o.overlap = OverlapMode::kOn;
  o.wrap_executor = [&](std::unique_ptr<Executor> inner) -> std::unique_ptr<Executor> {
    auto dev = std::make_unique<test_support::SamplingDevice>(std::move(inner), vocab, &sampled,
                                                              false);
    return std::make_unique<test_support::DeferredDevice>(std::move(dev), &stats);
  };
  test_support::check_seeded_device_sampling(model, o, &sampled);
  EXPECT_EQ(stats.max_in_flight, 2);
  EXPECT_GT(stats.placeholders, 0);
  // The same tokens as without overlap.
  EngineOptions off = o;
  off.overlap = OverlapMode::kOff;
  const Request r = test_support::sampled_request(11, 4);
  EXPECT_EQ(LLM(model, nullptr, o).generate({r})[0].token_ids,
            LLM(model, nullptr, off).generate({r})[0].token_ids);
}

// Aborts while steps are in flight end those requests and leave the others untouched.
TEST(Overlap, AbortInFlight) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  std::vector<Request> reqs = make_requests();
  for (Request& r : reqs) r.params.max_tokens = 12;
  EngineOptions off = base_options();
  off.overlap = OverlapMode::kOff;
  const auto want = LLM(model, nullptr, off).generate(reqs);
  test_support::DeferredStats stats;
  LLM llm(model, nullptr, deferred(base_options(), &stats));
  std::vector<SeqId> ids;
  for (const Request& r : reqs) ids.push_back(llm.add_request(r));
  std::map<SeqId, RequestOutput> outs;
  for (int step = 0; llm.has_unfinished(); ++step) {
    ASSERT_LT(step, 1000);
    if (step == 4) llm.abort_request(ids[0]);  // running
    if (step == 5) llm.abort_request(ids[15]);  // probably still waiting
    if (step == 9) llm.abort_request(ids[3]);
    for (auto& [id, out] : llm.step()) outs[id] = std::move(out);
  }
  ASSERT_EQ(outs.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    const RequestOutput& o = outs.at(ids[i]);
    if (i == 0 || i == 3 || i == 15) {
      EXPECT_EQ(o.finish_reason, "abort") << i;
      ASSERT_LE(o.token_ids.size(), want[i].token_ids.size()) << i;
      EXPECT_TRUE(std::equal(o.token_ids.begin(), o.token_ids.end(), want[i].token_ids.begin()));
    } else {
      EXPECT_EQ(o.token_ids, want[i].token_ids) << i;
      EXPECT_EQ(o.finish_reason, want[i].finish_reason) << i;
    }
  }
  EXPECT_EQ(llm.kv_blocks_used(), 0);
  EXPECT_EQ(stats.max_in_flight, 2);
}

// kAuto: on for an executor that runs steps asynchronously, off for the CPU's; JINX_OVERLAP=0
// turns the automatic choice off.
TEST(Overlap, AutoIsOnForAsyncExecutors) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  const char* env = std::getenv("JINX_OVERLAP");
  const std::string saved = env ? env : "";
  unsetenv("JINX_OVERLAP");
  test_support::DeferredStats stats;
  EngineOptions async = deferred(base_options(), &stats);
  async.overlap = OverlapMode::kAuto;
  EXPECT_TRUE(LLM(model, nullptr, async).overlaps());
  EXPECT_FALSE(LLM(model, nullptr, base_options()).overlaps());
  setenv("JINX_OVERLAP", "0", 1);
  EXPECT_FALSE(LLM(model, nullptr, async).overlaps());
  async.overlap = OverlapMode::kOn;
  EXPECT_TRUE(LLM(model, nullptr, async).overlaps());
  if (env) {
    setenv("JINX_OVERLAP", saved.c_str(), 1);
  } else {
    unsetenv("JINX_OVERLAP");
  }
}

}  // namespace
}  // namespace jinx
