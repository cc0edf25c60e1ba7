// LoRA adapters chosen per request: requests naming different adapters (or the base model)
// batched together give what each gives on a model loaded with only that adapter (which
// tests/model/lora_test.cpp checks against transformers + peft), and the prefix cache never
// hands one adapter's K/V to another.
#include <gtest/gtest.h>

#include <vector>

#include "core/check.h"
#include "engine/llm.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";
// Two adapters of tiny-llama's shapes: its own (every projection) and tiny-qwen2's (q and v
// only; the same shapes, so it loads onto tiny-llama as a different adapter).
const std::string kAdapter1 = kModels + "tiny-llama-lora";
const std::string kAdapter2 = kModels + "tiny-qwen2-lora";

std::shared_ptr<const Model> load(std::string lora, std::vector<std::string> loras) {
  LoadOptions o;
  o.threads = 2;
  o.lora = std::move(lora);
  o.loras = std::move(loras);
  return Model::load(kModels + "tiny-llama", o);
}

EngineOptions engine_options() {
  EngineOptions o;
  o.threads = 2;
  o.max_num_seqs = 8;
  o.max_num_batched_tokens = 64;
  o.kv_cache_tokens = 4096;
  return o;
}

std::vector<int32_t> prompt(int r) {
  std::vector<int32_t> p;
  for (int i = 0; i < 9 + r; ++i) p.push_back((31 * i + 17 * r + 3) % 500);
  return p;
}

Request request(int r, int32_t adapter) {
  Request q;
  q.prompt = prompt(r);
  q.params.temperature = 0;
  q.params.max_tokens = 16;
  q.params.ignore_eos = true;
  q.params.logprobs = 1;
  q.adapter = adapter;
  return q;
}

TEST(LoraPerRequest, BatchedAdaptersEqualEachAlone) {
  const std::vector<int32_t> adapters = {0, 1, 2, 1, 0, 2, 2};
  LLM mixed(load("", {kAdapter1, kAdapter2}), nullptr, engine_options());
  EXPECT_EQ(mixed.model().n_adapters(), 2);
  std::vector<Request> reqs;
  for (size_t i = 0; i < adapters.size(); ++i) reqs.push_back(request(static_cast<int>(i), adapters[i]));
  const std::vector<RequestOutput> got = mixed.generate(std::move(reqs));
  // Each adapter alone: the base model, and models loaded with one adapter for every token.
  LLM base(load("", {}), nullptr, engine_options());
  LLM one(load(kAdapter1, {}), nullptr, engine_options());
  LLM two(load(kAdapter2, {}), nullptr, engine_options());
  LLM* alone[] = {&base, &one, &two};
  for (size_t i = 0; i < adapters.size(); ++i) {
    std::vector<Request> r;
    r.push_back(request(static_cast<int>(i), -1));
    const RequestOutput want = alone[adapters[i]]->generate(std::move(r)).at(0);
    EXPECT_EQ(got[i].token_ids, want.token_ids) << "request " << i << ", adapter " << adapters[i];
    ASSERT_EQ(got[i].logprobs.size(), want.logprobs.size());
    for (size_t t = 0; t < want.logprobs.size(); ++t)
      EXPECT_EQ(got[i].logprobs[t].logprob, want.logprobs[t].logprob) << i << " " << t;
  }
  // The adapters do change the text (else this test could not fail).
  EXPECT_NE(got[1].token_ids, got[4].token_ids);
}

TEST(LoraPerRequest, PrefixCacheIsPerAdapter) {
  LLM llm(load("", {kAdapter1, kAdapter2}), nullptr, engine_options());
  auto run = [&](int32_t adapter) {
    std::vector<Request> r;
    Request q = request(0, adapter);
    q.prompt.resize(40, 7);  // two full blocks and more
    r.push_back(std::move(q));
    return llm.generate(std::move(r)).at(0);
  };
  EXPECT_EQ(run(1).n_cached_prompt, 0);
  EXPECT_GT(run(1).n_cached_prompt, 0);   // the same adapter: cached
  EXPECT_EQ(run(2).n_cached_prompt, 0);   // another adapter: computed again
  EXPECT_EQ(run(0).n_cached_prompt, 0);   // the base model too
  EXPECT_GT(run(2).n_cached_prompt, 0);
}

TEST(LoraPerRequest, RefusesAnAdapterNotLoaded) {
  LLM llm(load("", {kAdapter1}), nullptr, engine_options());
  std::vector<Request> r;
  r.push_back(request(0, 2));
  EXPECT_THROW(llm.generate(std::move(r)), Error);
  LLM plain(load("", {}), nullptr, engine_options());
  std::vector<Request> r2;
  r2.push_back(request(0, 1));
  EXPECT_THROW(plain.generate(std::move(r2)), Error);
  EXPECT_THROW(load(kAdapter1, {kAdapter2}), Error);  // one for all, or per request
}

}  // namespace
}  // namespace jinx
