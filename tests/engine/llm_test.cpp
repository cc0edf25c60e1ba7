// The engine end to end on tiny models: many requests batched together give exactly the greedy
// tokens of each request run alone through the plain single-sequence path, whatever the
// chunking, prefix caching or preemption.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "core/check.h"
#include "engine/llm.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

std::vector<int32_t> greedy_alone(const Model& m, const std::vector<int32_t>& prompt, int n,
                                  ThreadPool& pool) {
  KvCache cache = m.new_cache(static_cast<int64_t>(prompt.size()) + n);
  std::vector<float> logits(m.config().vocab_size);
  m.forward(prompt, cache, logits.data(), false, pool);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    int32_t t =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(t);
    if (i + 1 < n) m.forward(std::span<const int32_t>(&t, 1), cache, logits.data(), false, pool);
  }
  return out;
}

// 16 prompts of 5-40 tokens; half share a 20-token system-prompt-like prefix.
std::vector<std::vector<int32_t>> make_prompts() {
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> tok(3, 500), len(5, 40);
  std::vector<int32_t> prefix(20);
  for (auto& t : prefix) t = tok(rng);
  std::vector<std::vector<int32_t>> ps;
  for (int i = 0; i < 16; ++i) {
    std::vector<int32_t> p = i % 2 ? prefix : std::vector<int32_t>{};
    for (int n = len(rng); n > 0; --n) p.push_back(tok(rng));
    ps.push_back(p);
  }
  return ps;
}

struct Config {
  const char* name;
  int32_t max_seqs, budget;
  int64_t kv_tokens;
  bool prefix;
  bool priorities = false;  // --scheduling-policy priority, request i of priority i % 3
};

TEST(LLM, BatchedGreedyEqualsAlone) {
  constexpr int kNew = 12;
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  auto prompts = make_prompts();
  ThreadPool pool(2);
  std::vector<std::vector<int32_t>> expected;
  for (const auto& p : prompts) expected.push_back(greedy_alone(*model, p, kNew, pool));
  const Config configs[] = {
      {"chunk 1", 1, 1, 4096, true},
      {"chunk 7", 4, 7, 4096, true},
      {"chunk 64", 16, 64, 4096, true},
      {"chunk 64 no prefix cache", 16, 64, 4096, false},
      {"preemption (pool of 96 tokens)", 16, 64, 96, true},
      {"priorities, chunk 7", 4, 7, 4096, true, true},
      {"priorities, pool of 96 tokens", 16, 64, 96, true, true},
  };
  for (const Config& c : configs) {
    EngineOptions o;
    o.threads = 2;
    o.max_num_seqs = c.max_seqs;
    o.max_num_batched_tokens = c.budget;
    o.kv_cache_tokens = c.kv_tokens;
    o.prefix_caching = c.prefix;
    if (c.priorities) o.scheduling_policy = SchedulingPolicy::kPriority;
    LLM llm(model, nullptr, o);
    std::vector<Request> reqs;
    for (const auto& p : prompts) {
      SamplingParams sp;
      sp.temperature = 0;
      sp.max_tokens = kNew;
      sp.ignore_eos = true;
      reqs.push_back({p, sp});
      if (c.priorities) reqs.back().priority = static_cast<int32_t>(reqs.size() % 3);
    }
    auto outs = llm.generate(reqs);
    for (size_t i = 0; i < prompts.size(); ++i) {
      EXPECT_EQ(outs[i].token_ids, expected[i]) << c.name << ", request " << i;
      EXPECT_EQ(outs[i].finish_reason, "length");
    }
    const EngineStats& st = llm.stats();
    std::printf(
        "%-32s steps %lld, computed %lld tokens, prefix hits %lld, preemptions %lld\n", c.name,
        static_cast<long long>(st.steps), static_cast<long long>(st.computed_tokens),
        static_cast<long long>(st.prefix_hit_tokens), static_cast<long long>(st.preemptions));
    if (c.kv_tokens < 200) {
      EXPECT_GT(st.preemptions, 0) << "the small pool must force preemption";
    }
  }
}

// A system prompt shared by requests is computed once: the second request's prefix comes from
// the cache, so fewer tokens go through the model than with caching off.
TEST(LLM, SharedPrefixComputedOnce) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-llama");
  std::vector<int32_t> system(48);
  for (int i = 0; i < 48; ++i) system[i] = 10 + i;
  auto with = [&](std::vector<int32_t> tail) {
    auto p = system;
    p.insert(p.end(), tail.begin(), tail.end());
    return p;
  };
  int64_t computed[2];
  for (int on = 0; on < 2; ++on) {
    EngineOptions o;
    o.prefix_caching = on == 1;
    o.max_num_seqs = 1;  // one after the other: the second can reuse the first's blocks
    o.max_num_batched_tokens = 256;
    LLM llm(model, nullptr, o);
    SamplingParams sp;
    sp.temperature = 0;
    sp.max_tokens = 2;
    auto outs = llm.generate({{with({300, 301}), sp}, {with({400, 401, 402}), sp}});
    computed[on] = llm.stats().computed_tokens;
    if (on) {
      EXPECT_EQ(outs[1].n_cached_prompt, 48);
    }
  }
  // Without caching: 50 + 53 prompt tokens + 1 decode each. With it, the 48 shared are reused.
  EXPECT_EQ(computed[0] - computed[1], 48);
}

void expect_seeded_sampling_independent_of_batch(std::shared_ptr<const Model> model) {
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.top_p = 0.9f;
  sp.max_tokens = 10;
  sp.seed = 7;
  sp.ignore_eos = true;
  std::vector<int32_t> prompt = {5, 6, 7, 8, 9};
  EngineOptions o;
  LLM llm(model, nullptr, o);
  auto alone = llm.generate({{prompt, sp}});
  std::vector<Request> crowd;
  for (int i = 0; i < 6; ++i) {
    SamplingParams other = sp;
    other.seed = 100 + i;
    crowd.push_back({{11, static_cast<int32_t>(12 + i), 13}, other});
  }
  crowd.insert(crowd.begin() + 3, Request{prompt, sp});
  auto together = llm.generate(crowd);
  EXPECT_EQ(together[3].token_ids, alone[0].token_ids);
}

TEST(LLM, SeededSamplingIndependentOfBatch) {
  // The MoE model too: a token's experts and their sum do not depend on the batch.
  for (const char* name : {"tiny-qwen3", "tiny-qwen3-moe"}) {
    SCOPED_TRACE(name);
    expect_seeded_sampling_independent_of_batch(Model::load(kModels + name));
  }
}

// A bad request is refused with a clear error before anything runs, and the engine (and its
// prefix cache) keeps working; a later call reuses blocks cached by an earlier one.
TEST(LLM, BadRequestLeavesEngineUsable) {
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-llama");
  EngineOptions o;
  o.kv_cache_tokens = 256;
  LLM llm(model, nullptr, o);
  SamplingParams sp;
  sp.temperature = 0;
  sp.max_tokens = 3;
  std::vector<int32_t> ok(40, 7), too_long(300, 7), bad_id = {1, 2, 99999};
  EXPECT_THROW(llm.generate({{ok, sp}, {too_long, sp}}), Error);
  EXPECT_THROW(llm.generate({{bad_id, sp}}), Error);
  SamplingParams hot = sp;
  hot.temperature = 7;
  EXPECT_THROW(llm.generate({{ok, hot}}), Error);
  Request ranked{ok, sp};
  ranked.priority = 1;  // needs SchedulingPolicy::kPriority
  EXPECT_THROW(llm.generate({ranked}), Error);
  auto first = llm.generate({{ok, sp}});
  ASSERT_EQ(first[0].token_ids.size(), 3u);
  auto again = llm.generate({{ok, sp}});
  EXPECT_EQ(again[0].token_ids, first[0].token_ids);
  EXPECT_EQ(again[0].n_cached_prompt, 32);  // two full blocks of 16 from the first call
}

// Batch invariance end to end, on the integer (8-bit activation) kernels: a seeded sampled
// request draws the same tokens, with bit-identical logprobs, alone, batched with 7 others (a
// GEMM instead of a GEMV for every matmul), in chunks of 7 prompt tokens, and after a prefix-cache
// hit that leaves 2 prompt tokens to compute. (The server's n > 1 choices of one request, or a
// repeated seeded request, meet all of these.)
TEST(LLM, QuantizedSeededSamplingBitIdenticalInAnyBatch) {
  struct Case {
    const char* model;
    WeightQuant quantize;
  };
  const Case cases[] = {{"tiny-llama-q4_0.gguf", WeightQuant::kNone},
                        {"tiny-llama-q4_k_m.gguf", WeightQuant::kNone},
                        {"tiny-qwen2-mlx4", WeightQuant::kNone},
                        {"tiny-qwen2", WeightQuant::kQ8_0}};
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> tok(3, 500);
  std::vector<int32_t> prompt(34);  // two 16-token blocks cached, then 2 tokens
  for (auto& t : prompt) t = tok(rng);
  std::vector<std::vector<int32_t>> others(7);
  for (size_t i = 0; i < others.size(); ++i) others[i].resize(9 + 5 * i);
  for (auto& o : others)
    for (auto& t : o) t = tok(rng);
  SamplingParams sp;
  sp.temperature = 1.0f;
  sp.seed = 11;
  sp.max_tokens = 10;
  sp.ignore_eos = true;
  sp.logprobs = 0;
  for (const Case& c : cases) {
    LoadOptions lo;
    lo.quantize = c.quantize;
    std::shared_ptr<const Model> model = Model::load(kModels + c.model, lo);
    auto run = [&](EngineOptions o, bool with_others, int repeat) {
      o.threads = 2;
      LLM llm(model, nullptr, o);
      RequestOutput out;
      for (int i = 0; i < repeat; ++i) {
        std::vector<Request> reqs{{prompt, sp}};
        if (with_others)
          for (const auto& p : others) reqs.push_back({p, sp});
        out = llm.generate(reqs)[0];
      }
      return out;
    };
    EngineOptions plain;
    plain.prefix_caching = false;
    const RequestOutput alone = run(plain, false, 1);
    ASSERT_EQ(alone.token_ids.size(), 10u) << c.model;
    EngineOptions chunked = plain;
    chunked.max_num_batched_tokens = 7;
    const RequestOutput hit = run(EngineOptions{}, false, 2);
    EXPECT_EQ(hit.n_cached_prompt, 32) << c.model;
    const std::pair<const char*, RequestOutput> variants[] = {
        {"batched with 7", run(plain, true, 1)},
        {"chunks of 7, batched", run(chunked, true, 1)},
        {"prefix-cache hit", hit}};
    for (const auto& [name, out] : variants) {
      EXPECT_EQ(out.token_ids, alone.token_ids) << c.model << ": " << name;
      ASSERT_EQ(out.logprobs.size(), alone.logprobs.size()) << c.model << ": " << name;
      for (size_t i = 0; i < out.logprobs.size(); ++i)
        EXPECT_EQ(std::memcmp(&out.logprobs[i].logprob, &alone.logprobs[i].logprob, 4), 0)
            << c.model << ": " << name << ", token " << i << ": " << out.logprobs[i].logprob
            << " vs " << alone.logprobs[i].logprob;
    }
  }
}

}  // namespace
}  // namespace jinx
