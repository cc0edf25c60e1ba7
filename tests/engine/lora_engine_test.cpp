// LoRA adapters chosen per request: requests naming different adapters (or the base model)
// batched together give what each gives on a model loaded with only that adapter (which
// tests/model/lora_test.cpp checks against transformers + peft), and the prefix cache never
// hands one adapter's K/V to another.
#include <gtest/gtest.h>

#include <map>
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

// Runtime loading (the server's /v1/load_lora_adapter) into an engine that loaded its model
// itself: adapters loaded while a base request runs give what they give on a model loaded with
// them at start; bad paths change nothing; an unloaded adapter is refused to new requests while
// the request already running with it finishes with its weights, freed after it.
TEST(LoraRuntime, LoadAndUnloadWhileServing) {
  const std::string base = kModels + "tiny-llama-f32.gguf";
  const std::string gguf_adapter = kModels + "tiny-llama-lora.gguf";
  LoadOptions lo;
  lo.threads = 2;
  lo.loras = {gguf_adapter, kAdapter2};
  LLM ref(std::shared_ptr<const Model>(Model::load(base, lo)), nullptr, engine_options());
  auto want = [&](int r, int32_t adapter) {
    std::vector<Request> q;
    q.push_back(request(r, adapter));
    return ref.generate(std::move(q)).at(0).token_ids;
  };

  LLM llm(base, engine_options());
  std::map<SeqId, std::vector<int32_t>> out;
  auto drain = [&] {
    while (llm.has_unfinished())
      for (auto& [id, o] : llm.step()) out[id] = o.token_ids;
  };
  const SeqId before = llm.add_request(request(0, -1));  // runs across the loads
  llm.step();
  EXPECT_THROW(llm.load_adapter(kModels + "no-such-adapter"), Error);
  EXPECT_THROW(llm.load_adapter(kModels + "tiny-qwen2"), Error);  // a model, not an adapter
  EXPECT_EQ(llm.model().n_adapters(), 0);
  EXPECT_EQ(llm.load_adapter(gguf_adapter), 1);
  EXPECT_EQ(llm.load_adapter(kAdapter2), 2);
  const SeqId a = llm.add_request(request(1, 1));
  const SeqId b = llm.add_request(request(2, 2));
  const SeqId c = llm.add_request(request(3, 0));
  drain();
  EXPECT_EQ(out.at(before), want(0, 0));
  EXPECT_EQ(out.at(a), want(1, 1));
  EXPECT_EQ(out.at(b), want(2, 2));
  EXPECT_EQ(out.at(c), want(3, 0));
  EXPECT_NE(out.at(a), want(1, 0));  // the adapter changes the tokens

  // Unloaded while a request of it runs: that request keeps the adapter to its end.
  const SeqId d = llm.add_request(request(4, 1));
  llm.step();
  llm.unload_adapter(1);
  EXPECT_THROW(llm.unload_adapter(1), Error);
  EXPECT_THROW(llm.check_request(request(5, 1), 0), Error);
  const Linear& q0 = llm.model().weights().layers[0].q;
  EXPECT_GT(q0.lora.at(0).rank, 0);  // still in use
  drain();
  EXPECT_EQ(out.at(d), want(4, 1));
  EXPECT_EQ(q0.lora.at(0).rank, 0);  // freed after it
  EXPECT_GT(q0.lora.at(1).rank, 0);  // the other adapter stays

  // Loaded again: a new id (the old one's cached blocks are never matched to it).
  EXPECT_EQ(llm.load_adapter(gguf_adapter), 3);
  const SeqId e = llm.add_request(request(1, 3));
  drain();
  EXPECT_EQ(out.at(e), want(1, 1));

  // An engine given a model it did not load cannot change it.
  EXPECT_THROW(ref.load_adapter(gguf_adapter), Error);
}

}  // namespace
}  // namespace jinx
