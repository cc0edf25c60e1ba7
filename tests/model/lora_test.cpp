// LoRA adapters (PEFT format) against transformers + peft with the adapter applied unmerged
// (tools/fixtures_lora.py): on the Hugging Face base, on the same weights as a GGUF file, and
// on weights quantized at load; and the adapters Jinx must refuse.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "model/model.h"

namespace jinx {
namespace {

namespace fs = std::filesystem;
const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

struct Case {
  const char* base;
  const char* adapter;
  WeightQuant quantize;
  double tol;  // max |logit - ref| / max(1, max |ref|)
  const char* ref = nullptr;  // <ref>.ref.json (transformers + peft); null: the adapter's name
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << c.base << " + " << c.adapter;
}

class Lora : public ::testing::TestWithParam<Case> {};

int64_t argmax(const float* x, int64_t n) {
  return std::max_element(x, x + n) - x;
}

std::unique_ptr<Model> load(const Case& c) {
  LoadOptions o;
  o.quantize = c.quantize;
  o.threads = 2;
  o.lora = kModels + c.adapter;
  return Model::load(kModels + c.base, o);
}

// Every position's logits of `ids` (one prefill).
std::vector<float> all_logits(const Model& model, const std::vector<int32_t>& ids) {
  ThreadPool pool(2);
  KvCache cache = model.new_cache(64);
  std::vector<float> logits(ids.size() * model.config().vocab_size);
  model.forward(ids, cache, logits.data(), true, pool);
  return logits;
}

TEST_P(Lora, LogitsAndGreedyTokensMatchPeft) {
  const Case& c = GetParam();
  std::ifstream in(kModels + (c.ref ? c.ref : c.adapter) + ".ref.json");
  const auto ref = nlohmann::json::parse(in);
  cpu::set_exact_activations(c.tol <= 1e-4);
  auto model = load(c);
  EXPECT_NE(model->lora_summary().find("rank"), std::string::npos);
  const int64_t V = model->config().vocab_size;
  ThreadPool pool(2);
  const auto ids = ref["input_ids"].get<std::vector<int32_t>>();
  const std::vector<float> logits = all_logits(*model, ids);
  double max_err = 0, max_ref = 1;
  for (size_t t = 0; t < ids.size(); ++t) {
    const auto row = ref["logits"][t].get<std::vector<float>>();
    for (int64_t i = 0; i < V; ++i) {
      max_err = std::max(max_err, std::fabs(double(logits[t * V + i]) - row[i]));
      max_ref = std::max(max_ref, std::fabs(double(row[i])));
    }
    if (c.tol <= 1e-4) EXPECT_EQ(argmax(&logits[t * V], V), argmax(row.data(), V)) << t;
  }
  std::printf("%s + %s: max |diff| %.3g, relative %.3g\n", c.base, c.adapter, max_err,
              max_err / max_ref);
  EXPECT_LE(max_err / max_ref, c.tol);
  if (c.tol > 1e-4) return;  // quantized weights: the logits bound is the check
  // Greedy, prefill then one token at a time (the decode path of every projection).
  const auto prompt = ref["greedy_prompt"].get<std::vector<int32_t>>();
  const auto expected = ref["greedy_tokens"].get<std::vector<int32_t>>();
  KvCache c2 = model->new_cache(static_cast<int64_t>(prompt.size() + expected.size()));
  std::vector<float> last(V);
  model->forward(prompt, c2, last.data(), false, pool);
  std::vector<int32_t> got;
  for (size_t i = 0; i < expected.size(); ++i) {
    const int32_t next = static_cast<int32_t>(argmax(last.data(), V));
    got.push_back(next);
    model->forward(std::span<const int32_t>(&next, 1), c2, last.data(), false, pool);
  }
  EXPECT_EQ(got, expected);
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, Lora,
    ::testing::Values(Case{"tiny-llama", "tiny-llama-lora", WeightQuant::kNone, 1e-4},
                      Case{"tiny-qwen2", "tiny-qwen2-lora", WeightQuant::kNone, 1e-4},
                      // The same weights as a GGUF file (tools/fixtures_gguf.py).
                      Case{"tiny-llama-f32.gguf", "tiny-llama-lora", WeightQuant::kNone, 1e-4},
                      // Base weights quantized at load, the adapter kept in fp32.
                      Case{"tiny-llama", "tiny-llama-lora", WeightQuant::kQ8_0, 3e-2},
                      // The same adapter as llama.cpp's adapter GGUF (tools/fixtures_lora_gguf.py),
                      // on the GGUF base and on the Hugging Face base (its q/k rows moved back).
                      Case{"tiny-llama-f32.gguf", "tiny-llama-lora.gguf", WeightQuant::kNone, 1e-4,
                           "tiny-llama-lora"},
                      Case{"tiny-llama", "tiny-llama-lora.gguf", WeightQuant::kNone, 1e-4,
                           "tiny-llama-lora"}));

// llama.cpp (llama-cpp-python, --lora) on the same base GGUF and adapter GGUF.
TEST(LoraGguf, MatchesLlamaCpp) {
  std::ifstream in(kModels + "tiny-llama-lora-gguf.llamacpp.json");
  const auto ref = nlohmann::json::parse(in);
  cpu::set_exact_activations(true);
  LoadOptions o;
  o.threads = 2;
  o.lora = kModels + "tiny-llama-lora.gguf";
  auto model = Model::load(kModels + "tiny-llama-f32.gguf", o);
  EXPECT_NE(model->lora_summary().find("(GGUF)"), std::string::npos) << model->lora_summary();
  const int64_t V = model->config().vocab_size;
  const auto ids = ref["input_ids"].get<std::vector<int32_t>>();
  const std::vector<float> logits = all_logits(*model, ids);
  double max_err = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    const auto row = ref["logits"][t].get<std::vector<float>>();
    for (int64_t i = 0; i < V; ++i)
      max_err = std::max(max_err, std::fabs(double(logits[t * V + i]) - row[i]));
    EXPECT_EQ(argmax(&logits[t * V], V), argmax(row.data(), V)) << t;
  }
  std::printf("tiny-llama-f32.gguf + tiny-llama-lora.gguf vs llama.cpp: max |diff| %.3g\n", max_err);
  EXPECT_LT(max_err, 1e-3);
}

TEST(LoraGguf, RefusesOtherFiles) {
  auto refused = [](const std::string& adapter, const std::string& words) {
    LoadOptions o;
    o.lora = adapter;
    try {
      Model::load(kModels + "tiny-llama-f32.gguf", o);
      ADD_FAILURE() << adapter << " was taken";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(words), std::string::npos) << e.what();
    }
  };
  refused(kModels + "tiny-llama-q8_0.gguf", "not a LoRA adapter");  // a model, not an adapter
  // An adapter made for another architecture.
  LoadOptions o;
  o.lora = kModels + "tiny-llama-lora.gguf";
  try {
    Model::load(kModels + "tiny-qwen2", o);
    ADD_FAILURE() << "a llama adapter on a qwen2 model was taken";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("\"llama\" models"), std::string::npos) << e.what();
  }
}

// A copy of tiny-llama-lora in a temporary directory, its config edited by `edit` and its
// tensors replaced by `tensors` (name -> shape, F32 zeros) when given.
class BadAdapter : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("jinx_lora_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    fs::copy(kModels + "tiny-llama-lora", dir_, fs::copy_options::recursive);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void edit_config(const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json j;
    std::ifstream(dir_ / "adapter_config.json") >> j;
    edit(j);
    std::ofstream(dir_ / "adapter_config.json") << j.dump();
  }
  // Rewrites the safetensors file with F32 zero tensors of these shapes.
  void write_tensors(const std::vector<std::pair<std::string, std::vector<int64_t>>>& ts) {
    nlohmann::json header = nlohmann::json::object();
    size_t off = 0;
    for (const auto& [name, shape] : ts) {
      size_t n = 4;
      for (int64_t d : shape) n *= static_cast<size_t>(d);
      header[name] = {{"dtype", "F32"}, {"shape", shape}, {"data_offsets", {off, off + n}}};
      off += n;
    }
    const std::string h = header.dump();
    std::ofstream out(dir_ / "adapter_model.safetensors", std::ios::binary);
    const uint64_t len = h.size();
    out.write(reinterpret_cast<const char*>(&len), 8);
    out << h << std::string(off, '\0');
  }
  void expect_refused(const std::string& what) {
    LoadOptions o;
    o.lora = dir_.string();
    try {
      Model::load(kModels + "tiny-llama", o);
      ADD_FAILURE() << "loaded; expected an error with: " << what;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  }
  fs::path dir_;
};

TEST_F(BadAdapter, ConfigsItCannotRun) {
  edit_config([](auto& j) { j["use_dora"] = true; });
  expect_refused("'use_dora' is not supported");
  edit_config([](auto& j) { j["use_dora"] = false; j["use_rslora"] = "yes"; });
  expect_refused("'use_rslora' must be true or false");
  edit_config([](auto& j) { j["use_rslora"] = false; j["r"] = 0; });
  expect_refused("'r' must be an integer");
  edit_config([](auto& j) { j["r"] = 4; j["target_modules"] = {"q_proj", "lm_head"}; });
  expect_refused("target module 'lm_head' is not supported");
  edit_config([](auto& j) { j["target_modules"] = ".*proj"; });
  expect_refused("'target_modules' must be a list");
  edit_config([](auto& j) { j["target_modules"] = {"q_proj"}; });  // tensors for all seven
  expect_refused("is not among the config's target_modules");
  std::ofstream(dir_ / "adapter_config.json") << "{\"r\": 4,";
  expect_refused("not valid JSON");
  fs::remove(dir_ / "adapter_config.json");
  expect_refused("no such file");
}

TEST_F(BadAdapter, TensorsThatDoNotFit) {
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj.";
  write_tensors({{q + "lora_A.weight", {4, 256}}, {q + "lora_B.weight", {256, 5}}});
  expect_refused("expected [256, 4]");
  write_tensors({{q + "lora_A.weight", {4, 256}}});
  expect_refused("has no lora_B");
  write_tensors({{q + "lora_A.weight", {4, 256}}, {q + "lora_B.weight", {256, 4}},
                 {"base_model.model.lm_head.lora_A.weight", {4, 256}}});
  expect_refused("is not a LoRA update of a layer projection");
  write_tensors({{"base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight", {4, 256}}});
  expect_refused("is not a LoRA update");  // layer 9 of a 2-layer model
}

}  // namespace
}  // namespace jinx
