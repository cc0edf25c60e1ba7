// Model::load with --quantize q8_0 / q4_0 / q4_k / int4 on the tiny Hugging Face fixtures.
//
// Two references, both independent of Jinx:
//  - tight: transformers fp32 on the same checkpoint after its layer projections went through
//    the format's reference quantizer and back (gguf-py for Q8_0/Q4_0, llama.cpp's own ggml code
//    for Q4_K, mlx.core.quantize for int4) and an untied lm_head through gguf-py's Q8_0,
//    tests/fixtures/quant/<model>-<q>.ref.json from tools/make_quant_fixtures.py. With exact
//    activations Jinx computes exactly this, so the bound is the fp32 one (1e-4) and greedy tokens
//    must be equal: a wrong block, a tensor quantized that should not be (or the reverse) shows up
//    here.
// Jinx as it runs by default (int8 activations) is then compared with the same reference (the
// cost of int8 activations) and with transformers fp32 on the original checkpoint
// (tests/fixtures/models/<model>.ref.json: the cost of quantizing), within the bounds stated per
// case, greedy tokens equal up to a near-tie.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "backend/cpu/kernels.h"
#include "model/model.h"

namespace jinx {
namespace {

namespace fs = std::filesystem;
const std::string kFixtures = std::string(JINX_FIXTURES);
const std::string kModels = kFixtures + "/models/";

nlohmann::json load_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) ADD_FAILURE() << "missing fixture " << path;
  return nlohmann::json::parse(in);
}

int64_t argmax(const float* x, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; ++i)
    if (x[i] > x[best]) best = i;
  return best;
}

// Bounds: max |logit - ref| / max(1, max |ref|), with the default int8 activations.
struct Case {
  const char* model;  // under fixtures/models
  WeightQuant quant;
  double int8_tol;  // against transformers on the gguf-py-quantized weights
  double fp32_tol;  // against transformers on the original weights (the cost of quantizing)
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << c.model << "-" << weight_quant_name(c.quant);
}

class QuantizedModel : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const Case& c = GetParam();
    if (!fs::exists(kModels + c.model)) GTEST_SKIP() << "fixture missing: " << c.model;
  }
  void TearDown() override { cpu::set_exact_activations(false); }
  std::string quant_ref_path() const {
    const Case& c = GetParam();
    return kFixtures + "/quant/" + c.model + "-" + weight_quant_name(c.quant) + ".ref.json";
  }
};

// Largest |ours - ref| over the input rows, relative to max(1, max |ref|); counts top-1
// disagreements that are not near-ties of the reference.
double compare_logits(const Model& model, const nlohmann::json& ref, const char* what) {
  auto ids = ref["input_ids"].get<std::vector<int32_t>>();
  const int64_t V = model.config().vocab_size;
  ThreadPool pool(2);
  KvCache cache = model.new_cache(64);
  std::vector<float> logits(ids.size() * V);
  model.forward(ids, cache, logits.data(), true, pool);
  double max_err = 0, max_ref = 1;
  int agree = 0;
  for (size_t t = 0; t < ids.size(); ++t) {
    auto row = ref["logits"][t].get<std::vector<float>>();
    EXPECT_EQ(static_cast<int64_t>(row.size()), V);
    double row_err = 0;
    for (int64_t i = 0; i < V; ++i) {
      row_err = std::max(row_err, std::fabs(double(logits[t * V + i]) - row[i]));
      max_ref = std::max(max_ref, std::fabs(double(row[i])));
    }
    max_err = std::max(max_err, row_err);
    const int64_t ours = argmax(&logits[t * V], V), theirs = argmax(row.data(), V);
    if (ours == theirs)
      ++agree;
    else
      EXPECT_LT(row[theirs] - row[ours], 2 * row_err) << what << ": position " << t;
  }
  std::printf("%s: max |diff| %.3g, relative %.3g, top-1 agree %d/%zu\n", what, max_err,
              max_err / max_ref, agree, ids.size());
  return max_err / max_ref;
}

// Greedy continuation of the reference's prompt; returns the first position where it differs
// (expected.size() when none) and the gap there between our pick and the reference's token.
size_t greedy_diff(const Model& model, const nlohmann::json& ref, double* gap) {
  auto prompt = ref["greedy_prompt"].get<std::vector<int32_t>>();
  auto expected = ref["greedy_tokens"].get<std::vector<int32_t>>();
  const int64_t V = model.config().vocab_size;
  ThreadPool pool(2);
  KvCache cache = model.new_cache(static_cast<int64_t>(prompt.size() + expected.size()));
  std::vector<float> logits(V);
  model.forward(prompt, cache, logits.data(), false, pool);
  for (size_t i = 0; i < expected.size(); ++i) {
    const int32_t next = static_cast<int32_t>(argmax(logits.data(), V));
    if (next != expected[i]) {
      *gap = logits[next] - logits[expected[i]];
      return i;
    }
    model.forward(std::span<const int32_t>(&next, 1), cache, logits.data(), false, pool);
  }
  return expected.size();
}

TEST_P(QuantizedModel, MatchesTransformersOnGgufPyQuantizedWeights) {
  const Case& c = GetParam();
  cpu::set_exact_activations(true);
  auto model = Model::load(kModels + c.model, LoadOptions{c.quant, 2});
  auto ref = load_json(quant_ref_path());
  EXPECT_LE(compare_logits(*model, ref, "exact vs gguf-py-quantized transformers"), 1e-4);
  double gap = 0;
  const size_t at = greedy_diff(*model, ref, &gap);
  EXPECT_EQ(at, ref["greedy_tokens"].size()) << "first difference at generated token " << at;
}

// Greedy tokens equal to the reference's, or parting only at a near-tie: our two candidates
// close, and the reference's top two close.
void expect_greedy_up_to_near_tie(const Model& model, const nlohmann::json& ref) {
  double gap = 0;
  const size_t at = greedy_diff(model, ref, &gap);
  if (at == ref["greedy_tokens"].size()) return;
  const double margin = ref["greedy_top2_margins"][at].get<double>();
  std::printf("first difference at token %zu: our gap %.4f, reference top-2 margin %.4f\n", at, gap,
              margin);
  constexpr double kNearTie = 0.5;  // logits
  EXPECT_LT(gap, kNearTie) << "at generated token " << at;
  EXPECT_LT(margin, kNearTie) << "at generated token " << at;
}

// As Jinx runs by default (activations rounded to int8 blocks): near the same reference.
TEST_P(QuantizedModel, Int8ActivationsStayNearTheQuantizedReference) {
  const Case& c = GetParam();
  auto model = Model::load(kModels + c.model, LoadOptions{c.quant, 2});
  auto ref = load_json(quant_ref_path());
  EXPECT_LE(compare_logits(*model, ref, "int8 activations vs gguf-py-quantized transformers"),
            c.int8_tol);
  expect_greedy_up_to_near_tie(*model, ref);
}

// The quality cost of --quantize: against transformers fp32 on the original checkpoint.
TEST_P(QuantizedModel, QualityCostAgainstTheFp32Reference) {
  const Case& c = GetParam();
  auto model = Model::load(kModels + c.model, LoadOptions{c.quant, 2});
  auto ref = load_json(kModels + c.model + ".ref.json");
  EXPECT_LE(compare_logits(*model, ref, "int8 activations vs fp32 transformers"), c.fp32_tol);
  if (c.quant == WeightQuant::kQ8_0) expect_greedy_up_to_near_tie(*model, ref);
}

TEST_P(QuantizedModel, QuantizesProjectionsAndTheHeadOnly) {
  const Case& c = GetParam();
  auto plain = Model::load(kModels + c.model);
  auto model = Model::load(kModels + c.model, LoadOptions{c.quant, 2});
  const bool int4 = c.quant == WeightQuant::kInt4;
  const DType want = c.quant == WeightQuant::kQ8_0   ? DType::Q8_0
                     : c.quant == WeightQuant::kQ4_0 ? DType::Q4_0
                     : c.quant == WeightQuant::kQ4_K ? DType::Q4_K
                                                     : DType::U32;
  for (const LayerWeights& L : model->weights().layers)
    for (const Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down}) {
      EXPECT_EQ(l->w.dtype, want);
      if (int4) {
        EXPECT_EQ(l->w.mlx.bits, 4);
        EXPECT_EQ(l->w.mlx.group_size, 64);
        EXPECT_EQ(l->w.row_bytes, static_cast<size_t>(l->w.cols / 2));
      } else {
        EXPECT_FALSE(l->w.is_mlx());
        EXPECT_EQ(l->w.row_bytes, *bytes_for(want, l->w.cols));
      }
    }
  // int4 keeps the scales in the checkpoint's type (mlx_lm.convert -q does the same).
  if (int4) {
    EXPECT_EQ(model->weights().layers[0].q.w.mlx.scale_dtype, plain->weights().layers[0].q.w.dtype);
  }
  const ModelWeights& w = model->weights();
  EXPECT_EQ(w.embed.dtype, plain->weights().embed.dtype);
  EXPECT_EQ(w.embed.row_bytes, plain->weights().embed.row_bytes);
  // The head is Q8_0 either way: a tied one as a copy, the embedding itself left as it was.
  EXPECT_EQ(w.lm_head.dtype, DType::Q8_0);
  EXPECT_NE(w.lm_head.data, w.embed.data);
  if (model->config().tie_word_embeddings) {
    EXPECT_NE(model->quantize_summary().find("a Q8_0 copy of the embedding"), std::string::npos);
  }
  EXPECT_NE(model->quantize_summary().find(int4 ? std::string("to MLX int4")
                                                : std::string("to ") + std::string(name(want))),
            std::string::npos)
      << model->quantize_summary();
}

// --quantize on mixture-of-experts checkpoints: every expert (and Qwen2-MoE's shared expert)
// quantized, the routers and the shared expert's gate kept as they are; Q8_0 stays near
// transformers fp32 on the original weights.
TEST(QuantizedMoeModel, ExpertsQuantizedRoutersKept) {
  for (const char* name : {"tiny-qwen3-moe", "tiny-qwen2-moe"}) {
    SCOPED_TRACE(name);
    auto plain = Model::load(kModels + name);
    auto model = Model::load(kModels + name, LoadOptions{WeightQuant::kQ8_0, 2});
    int n_moe = 0;
    for (size_t i = 0; i < model->weights().layers.size(); ++i) {
      const LayerWeights& L = model->weights().layers[i];
      const LayerWeights& P = plain->weights().layers[i];
      if (L.experts.empty()) {
        for (const Linear* l : {&L.gate, &L.up, &L.down}) EXPECT_EQ(l->w.dtype, DType::Q8_0);
        continue;
      }
      ++n_moe;
      EXPECT_EQ(L.router.w.dtype, P.router.w.dtype);
      EXPECT_EQ(L.router.w.row_bytes, P.router.w.row_bytes);
      for (const Mlp& m : L.experts)
        for (const Linear* l : {&m.gate, &m.up, &m.down}) EXPECT_EQ(l->w.dtype, DType::Q8_0);
      if (P.shared.gate.w.rows > 0) {
        for (const Linear* l : {&L.shared.gate, &L.shared.up, &L.shared.down})
          EXPECT_EQ(l->w.dtype, DType::Q8_0);
        EXPECT_EQ(L.shared_gate.w.dtype, P.shared_gate.w.dtype);
      }
    }
    EXPECT_EQ(n_moe, 2);
    auto ref = load_json(kModels + name + ".ref.json");
    // Measured 0.023 (Qwen3-MoE) and 0.019 (Qwen2-MoE), as dense Q8_0 (0.021-0.026); the
    // bound leaves room for the rounding tipping a close router call to another expert.
    EXPECT_LE(compare_logits(*model, ref, "Q8_0 experts vs fp32 transformers"), 6e-2);
    expect_greedy_up_to_near_tie(*model, ref);
  }
}

// Bounds measured on this machine and rounded up (measured: int8 vs quantized reference
// 0.016-0.021 for every format; against fp32, Q8_0 0.021-0.026, Q4_0 0.23-0.41, Q4_K 0.18-0.26,
// int4 0.22-0.34). 4-bit weights of these random-weight models (N(0, 0.05) weights, 256 wide)
// move logits by a quarter of their range, so greedy runs are compared with the fp32 reference
// for Q8_0 only; against the quantized reference every format must agree up to near-ties.
INSTANTIATE_TEST_SUITE_P(
    Fixtures, QuantizedModel,
    ::testing::Values(Case{"tiny-llama", WeightQuant::kQ8_0, 3e-2, 4e-2},
                      Case{"tiny-llama", WeightQuant::kQ4_0, 3e-2, 0.5},
                      Case{"tiny-qwen2", WeightQuant::kQ8_0, 3e-2, 4e-2},
                      Case{"tiny-qwen2", WeightQuant::kQ4_0, 3e-2, 0.5},
                      Case{"tiny-qwen3", WeightQuant::kQ8_0, 3e-2, 4e-2},
                      Case{"tiny-qwen3", WeightQuant::kQ4_0, 3e-2, 0.5},
                      Case{"tiny-llama-linear", WeightQuant::kQ8_0, 3e-2, 4e-2},
                      Case{"tiny-llama-linear", WeightQuant::kQ4_0, 3e-2, 0.5},
                      Case{"tiny-llama", WeightQuant::kQ4_K, 3e-2, 0.35},
                      Case{"tiny-qwen2", WeightQuant::kQ4_K, 3e-2, 0.35},
                      Case{"tiny-qwen3", WeightQuant::kQ4_K, 3e-2, 0.35},
                      Case{"tiny-llama-linear", WeightQuant::kQ4_K, 3e-2, 0.35},
                      Case{"tiny-llama", WeightQuant::kInt4, 3e-2, 0.45},
                      Case{"tiny-qwen2", WeightQuant::kInt4, 3e-2, 0.45},
                      Case{"tiny-qwen3", WeightQuant::kInt4, 3e-2, 0.45},
                      Case{"tiny-llama-linear", WeightQuant::kInt4, 3e-2, 0.45}),
    [](const auto& info) {
      std::string s = std::string(info.param.model) + "_" + weight_quant_name(info.param.quant);
      for (char& ch : s)
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return s;
    });

// Weights that are already quantized stay as they are, and the summary says so.
TEST(QuantizeOnLoad, LeavesQuantizedCheckpointsAlone) {
  for (const char* m : {"tiny-qwen2-mlx4", "tiny-llama-q8_0.gguf"}) {
    if (!fs::exists(kModels + m)) GTEST_SKIP() << "fixture missing: " << m;
    auto plain = Model::load(kModels + m);
    auto model = Model::load(kModels + m, LoadOptions{WeightQuant::kQ4_0, 2});
    const auto& a = plain->weights().layers[0];
    const auto& b = model->weights().layers[0];
    EXPECT_EQ(b.q.w.dtype, a.q.w.dtype) << m;
    EXPECT_EQ(b.q.w.is_mlx(), a.q.w.is_mlx()) << m;
    EXPECT_EQ(b.down.w.row_bytes, a.down.w.row_bytes) << m;
    EXPECT_NE(model->quantize_summary().find("nothing to quantize"), std::string::npos)
        << m << ": " << model->quantize_summary();
  }
}

TEST(QuantizeOnLoad, NamesRoundTrip) {
  for (WeightQuant q : {WeightQuant::kNone, WeightQuant::kQ8_0, WeightQuant::kQ4_0,
                        WeightQuant::kQ4_K, WeightQuant::kInt4})
    EXPECT_EQ(weight_quant_from_name(weight_quant_name(q)), q);
  EXPECT_FALSE(weight_quant_from_name("q4_1").has_value());
  EXPECT_FALSE(weight_quant_from_name("Q4_K").has_value());
  EXPECT_FALSE(weight_quant_from_name("Q8_0").has_value());
}

}  // namespace
}  // namespace jinx
