// End to end on the GPU: the tiny-model fixtures' logits against their independent references
// (transformers / MLX / llama.cpp), through the CUDA executor with sequences in one flat batch
// fed in mixed chunks; and the engine's batched greedy outputs against the CPU's.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "engine/llm.h"
#include "../support/batch_step.h"
#include "../support/device_sampling_check.h"
#include "backend/cuda/ops.h"
#include "model/executor.h"
#include "../support/cuda_test_util.h"

namespace jinx {
namespace {

namespace fs = std::filesystem;
const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

using test::Seq;

std::vector<float> step(Executor& ex, int64_t vocab, int64_t bs, std::vector<Seq>& seqs,
                        const std::vector<int32_t>& ids, const std::vector<int>& take) {
  test::StepBatch b = test::make_step(seqs, ids, take, bs);
  std::vector<float> logits(b.rows.size() * vocab);
  ex.forward_batch(b.fb, logits.data());
  return logits;
}

struct Case {
  const char* model;
  const char* ref;
  double tol;  // max |logit - ref| / max(1, max |ref|)
  // A 4-bit source format whose weights must stay 4-bit on the GPU: the executor's describe()
  // says "Q4A from <it>", and unless `mixed` (stacks with other formats go to BF16) never
  // "BF16 from <it>". Null: no check.
  const char* q4a_source = nullptr;
  bool mixed = false;
};

// gtest prints a parameter in the test's listing; without this it is a byte dump.
void PrintTo(const Case& c, std::ostream* os) { *os << c.model << " (tol " << c.tol << ")"; }

class CudaTinyModel : public ::testing::TestWithParam<Case> {};

// Weights go to the GPU as BF16 (Q8_0 / Q4_0 as they are, Q4_K and MLX 4-bit as Q4A with every
// value kept), activations stay fp32: the error budget is bf16 rounding of weights (and of the
// KV cache when bf16).
TEST_P(CudaTinyModel, MixedBatchLogitsMatchReference) {
  SKIP_WITHOUT_GPU();
  const Case& c = GetParam();
  std::ifstream in(kModels + c.ref + ".ref.json");
  ASSERT_TRUE(in) << c.ref;
  auto ref = nlohmann::json::parse(in);
  auto ids = ref["input_ids"].get<std::vector<int32_t>>();
  ASSERT_GE(ids.size(), 12u);
  std::shared_ptr<const Model> model = Model::load(kModels + c.model);
  const int64_t V = model->config().vocab_size;
  for (DType dt : {DType::F32, DType::BF16}) {
    ExecutorOptions o;
    o.device = "cuda";
    o.block_size = 4;
    o.kv_dtype = dt;
    o.n_blocks = 16;
    o.max_batched_tokens = 64;
    o.max_seqs = 8;
    auto ex = make_executor(model, o);
    if (c.q4a_source) {
      const std::string d = ex->describe(), src = c.q4a_source;
      EXPECT_NE(d.find("Q4A from " + src), std::string::npos) << d;
      if (!c.mixed) {
        EXPECT_EQ(d.find("BF16 from " + src), std::string::npos) << d;
      }
    }
    std::vector<Seq> seqs = {{{3, 0, 9}, 0}, {{1, 7, 12}, 0}, {{15, 2, 5}, 0}};
    std::vector<std::vector<int>> plan = {{12, 5, 1}, {0, 7, 1}, {0, 0, 3}, {0, 0, 7}};
    std::vector<int> seen(3, 0);
    double max_err = 0, max_ref = 1;
    for (const auto& take : plan) {
      auto logits = step(*ex, V, 4, seqs, ids, take);
      size_t row = 0;
      for (int s = 0; s < 3; ++s)
        for (int i = 0; i < take[s]; ++i, ++row) {
          auto r = ref["logits"][seen[s] + i].get<std::vector<float>>();
          for (int64_t j = 0; j < V; ++j) {
            max_err = std::max(max_err, std::fabs(double(logits[row * V + j]) - r[j]));
            max_ref = std::max(max_ref, std::fabs(double(r[j])));
          }
        }
      for (int s = 0; s < 3; ++s) seen[s] += take[s];
    }
    const double rel = max_err / max_ref;
    std::printf("%s KV %s on %s: max |logit diff| / max |ref| = %.3g\n", c.model,
                std::string(name(dt)).c_str(), ex->describe().c_str(), rel);
    EXPECT_LE(rel, c.tol) << c.model << " KV " << name(dt);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Fixtures, CudaTinyModel,
    ::testing::Values(Case{"tiny-llama", "tiny-llama", 3e-2}, Case{"tiny-qwen2", "tiny-qwen2", 3e-2},
                      Case{"tiny-qwen3", "tiny-qwen3", 3e-2},
                      Case{"tiny-llama-f32.gguf", "tiny-llama-f32", 3e-2},
                      // Q8_0 / Q4_0 run in their own format (exact weights, fp32 activations);
                      // the reference is llama.cpp, which rounds activations to 8 bits.
                      Case{"tiny-llama-q8_0.gguf", "tiny-llama-q8_0", 3e-2},
                      Case{"tiny-llama-q4_0.gguf", "tiny-llama-q4_0", 3e-2},
                      // Q4_K and MLX 4-bit run as Q4A (exact weights).
                      Case{"tiny-llama-q4_k.gguf", "tiny-llama-q4_k", 5e-2, "Q4_K"},
                      // Q4_K matrices as Q4A; Q6_K (output) and the stacks holding a Q6_K part
                      // (blk.1 q|k|v and down) as BF16.
                      Case{"tiny-llama-q4_k_m.gguf", "tiny-llama-q4_k_m", 5e-2, "Q4_K", true},
                      Case{"tiny-qwen2-mlx4", "tiny-qwen2-mlx4", 3e-2, "MLX4"}),
    [](const auto& info) {
      std::string s = info.param.model;
      for (char& ch : s)
        if (!isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return s;
    });

// Weights the GPU holds exactly (Q4A for Q4_K and MLX 4-bit, Q4_0 as a control), fp32 KV and
// steps of at most kGemvMaxTokens rows (every product on the fp32 GEMV): the logits must match
// fp32 math on the dequantized weights (transformers; MLX itself for the MLX model) to about the
// CPU's bound. BF16-rounded weights would miss it (2^-9 relative per weight).
TEST(CudaTinyModelExact, Q4AWeightsMatchFp32Reference) {
  SKIP_WITHOUT_GPU();
  struct Exact {
    const char* model;
    const char* ref;
    const char* key;
  };
  for (const Exact& c : {Exact{"tiny-llama-q4_k.gguf", "tiny-llama-q4_k", "logits_transformers"},
                         Exact{"tiny-llama-q4_0.gguf", "tiny-llama-q4_0", "logits_transformers"},
                         Exact{"tiny-qwen2-mlx4", "tiny-qwen2-mlx4", "logits"}}) {
    std::ifstream in(kModels + c.ref + ".ref.json");
    ASSERT_TRUE(in) << c.ref;
    auto ref = nlohmann::json::parse(in);
    auto ids = ref["input_ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(ids.size(), 12u);
    std::shared_ptr<const Model> model = Model::load(kModels + c.model);
    const int64_t V = model->config().vocab_size;
    ExecutorOptions o;
    o.device = "cuda";
    o.block_size = 4;
    o.kv_dtype = DType::F32;
    o.n_blocks = 8;
    o.max_batched_tokens = 16;
    o.max_seqs = 4;
    auto ex = make_executor(model, o);
    std::vector<Seq> seqs = {{{5, 1, 3}, 0}};
    double max_err = 0, max_ref = 1;
    int seen = 0;
    for (int take : {8, 3, 1}) {
      ASSERT_LE(take, cuda::kGemvMaxTokens);
      auto logits = step(*ex, V, 4, seqs, ids, {take});
      for (int i = 0; i < take; ++i) {
        auto r = ref[c.key][seen + i].get<std::vector<float>>();
        for (int64_t j = 0; j < V; ++j) {
          max_err = std::max(max_err, std::fabs(double(logits[i * V + j]) - r[j]));
          max_ref = std::max(max_ref, std::fabs(double(r[j])));
        }
      }
      seen += take;
    }
    const double rel = max_err / max_ref;
    std::printf("%s, fp32 KV, GEMV only, on %s: max |logit diff| / max |ref| = %.3g\n", c.model,
                ex->describe().c_str(), rel);
    EXPECT_LE(rel, 5e-4) << c.model;
  }
}

// Decode steps replayed from CUDA graphs (padded to 1, 2, 4, ... sequences; 17 pads to 32 and
// runs the output head through cuBLAS inside the graph) give the logits of eager launches.
TEST(CudaGraphs, DecodeStepsMatchEagerLaunches) {
  SKIP_WITHOUT_GPU();
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  const int64_t V = model->config().vocab_size, bs = 8;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> tok(3, static_cast<int>(V) - 1), len(5, 30);
  for (int n_seqs : {1, 3, 17}) {
    ExecutorOptions o;
    o.device = "cuda";
    o.block_size = bs;
    o.kv_dtype = DType::BF16;
    o.n_blocks = 8 * n_seqs + 4;
    o.max_batched_tokens = 1024;
    o.max_seqs = 64;
    auto graphed = make_executor(model, o);
    o.cuda_graphs = false;
    auto eager = make_executor(model, o);
    std::vector<Seq> se;
    std::vector<std::vector<int32_t>> ids(n_seqs);
    std::vector<int> take;
    for (int s = 0; s < n_seqs; ++s) {
      std::vector<int32_t> blocks;
      for (int b = 0; b < 8; ++b) blocks.push_back(s * 8 + b);
      se.push_back({blocks, 0});
      for (int n = len(rng); n > 0; --n) ids[s].push_back(tok(rng));
      take.push_back(static_cast<int>(ids[s].size()));
    }
    // A prefill step (eager on both), then decode steps fed with the eager run's greedy tokens.
    double worst = 0;
    for (int it = 0; it < 7; ++it) {
      std::vector<int32_t> tokens, positions, qstart{0}, ctx, tables, rows;
      std::vector<int64_t> slots;
      for (int s = 0; s < n_seqs; ++s) {
        const int n_new = it == 0 ? take[s] : 1;
        for (int i = 0; i < n_new; ++i) {
          const int32_t pos = se[s].n_cached + i;
          tokens.push_back(ids[s][pos]);
          positions.push_back(pos);
          slots.push_back(int64_t{se[s].blocks[pos / bs]} * bs + pos % bs);
          if (it > 0 || i == n_new - 1) rows.push_back(static_cast<int32_t>(tokens.size() - 1));
        }
        se[s].n_cached += n_new;
        qstart.push_back(static_cast<int32_t>(tokens.size()));
        ctx.push_back(se[s].n_cached);
        tables.insert(tables.end(), se[s].blocks.begin(), se[s].blocks.end());
      }
      ForwardBatch fb;
      fb.tokens = tokens;
      fb.positions = positions;
      fb.slot_mapping = slots;
      fb.attn = {n_seqs, qstart.data(), ctx.data(), tables.data(), 8};
      fb.out_rows = rows;
      std::vector<float> le(rows.size() * V), lg(rows.size() * V);
      eager->forward_batch(fb, le.data());
      graphed->forward_batch(fb, lg.data());
      double m = 1, e = 0;
      for (size_t i = 0; i < le.size(); ++i) {
        m = std::max(m, std::fabs(double(le[i])));
        e = std::max(e, std::fabs(double(le[i]) - lg[i]));
      }
      if (it > 0) worst = std::max(worst, e / m);
      for (int s = 0; s < n_seqs; ++s) {  // next token: the eager run's greedy choice
        const float* r = &le[static_cast<size_t>(s) * V];
        ids[s].push_back(static_cast<int32_t>(std::max_element(r, r + V) - r));
      }
    }
    // Up to 8 rows both run the fp32 GEMV, and differ only by the order of the attention sums
    // (the graph splits every row's KV range, eager launches split by the batch). 17 rows pad
    // to 32 and go through cuBLAS on bf16 activations, where such a difference can flip a
    // bf16 rounding (2^-9 relative): the matmul test's bound for that path.
    const double tol = n_seqs <= cuda::kGemvMaxTokens ? 1e-4 : 2e-2;
    std::printf("%d sequences: graph vs eager decode logits, max rel diff %.3g (bound %.0e)\n",
                n_seqs, worst, tol);
    EXPECT_LE(worst, tol) << n_seqs << " sequences";
  }
}

// The engine on the GPU: 16 requests batched (chunked prefill, prefix cache) give the greedy
// tokens of the CPU engine (the GPU returns only the argmax of plain greedy rows). They may part ways only at a near-tie of the CPU's own logits
// (bf16 weights on the GPU): the test then checks the tie instead.
// With a quantized KV cache both engines store int8/fp8 rows, but of K rotated by slightly
// different sin/cos, so a code can differ by one step: more partings allowed, still near-ties.
// n_spec > 0: the GPU engine also checks prompt-lookup guesses (several sample rows per
// sequence, steps with chunks of guesses instead of graph-replayed decodes).
void batched_greedy_matches_cpu(DType kv_dtype, int min_exact, double max_gap, int32_t n_spec = 0) {
  constexpr int kNew = 12;
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> tok(3, 500), len(5, 40);
  std::vector<int32_t> prefix(20);
  for (auto& t : prefix) t = tok(rng);
  std::vector<Request> reqs;
  for (int i = 0; i < 16; ++i) {
    std::vector<int32_t> p = i % 2 ? prefix : std::vector<int32_t>{};
    for (int n = len(rng); n > 0; --n) p.push_back(tok(rng));
    SamplingParams sp;
    sp.temperature = 0;
    sp.max_tokens = kNew;
    sp.ignore_eos = true;
    // Every fourth request wants logprobs: its logits come back to the host, the others'
    // argmax only (a mixed step exercises both copies).
    if (i % 4 == 3) sp.logprobs = 0;
    Request r;
    r.prompt = p;
    r.params = sp;
    reqs.push_back(std::move(r));
  }
  EngineOptions o;
  o.threads = 2;
  o.max_num_seqs = 8;
  o.max_num_batched_tokens = 48;
  o.kv_cache_tokens = 4096;
  o.kv_dtype = kv_dtype;
  LLM cpu(model, nullptr, o);
  auto want = cpu.generate(reqs);
  o.device = "cuda";
  o.num_speculative_tokens = n_spec;
  o.prompt_lookup_min = 1;
  LLM gpu(model, nullptr, o);
  auto got = gpu.generate(reqs);
  if (n_spec > 0) {
    std::printf("GPU with guesses: %lld of %lld kept\n",
                static_cast<long long>(gpu.stats().accepted_tokens),
                static_cast<long long>(gpu.stats().draft_tokens));
    EXPECT_GT(gpu.stats().draft_tokens, 0);
  }
  ThreadPool pool(2);
  int exact = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& a = got[i].token_ids;
    const auto& b = want[i].token_ids;
    ASSERT_EQ(a.size(), b.size());
    size_t k = 0;
    while (k < a.size() && a[k] == b[k]) ++k;
    if (k == a.size()) {
      ++exact;
      continue;
    }
    // The CPU's logits where they part: the two candidates must be nearly tied.
    std::vector<int32_t> ctx = reqs[i].prompt;
    ctx.insert(ctx.end(), b.begin(), b.begin() + static_cast<std::ptrdiff_t>(k));
    KvCache cache = model->new_cache(static_cast<int64_t>(ctx.size()));
    std::vector<float> logits(model->config().vocab_size);
    model->forward(ctx, cache, logits.data(), false, pool);
    const double gap = std::fabs(double(logits[a[k]]) - logits[b[k]]);
    std::printf("request %zu parts at token %zu: gpu %d, cpu %d, cpu logit gap %.4f\n", i, k,
                a[k], b[k], gap);
    EXPECT_LT(gap, max_gap) << "request " << i << " token " << k;
  }
  std::printf("KV %s: %d of %zu requests identical to the CPU\n", name(kv_dtype).data(), exact,
              reqs.size());
  EXPECT_GE(exact, min_exact);
}

TEST(CudaEngine, BatchedGreedyMatchesCpu) {
  SKIP_WITHOUT_GPU();
  batched_greedy_matches_cpu(DType::F32, 12, 0.05);
}

// Speculative decoding on the GPU (written without a GPU at hand: this is its first check).
TEST(CudaEngine, SpeculativeGreedyMatchesCpu) {
  SKIP_WITHOUT_GPU();
  batched_greedy_matches_cpu(DType::F32, 12, 0.05, /*n_spec=*/4);
}

TEST(CudaEngine, BatchedGreedyMatchesCpuWithQuantizedKv) {
  SKIP_WITHOUT_GPU();
  batched_greedy_matches_cpu(DType::I8, 10, 0.25);
  batched_greedy_matches_cpu(DType::F8_E4M3, 10, 0.25);
}

// Temperature sampling drawn on the GPU (only ids come back): a seeded request gives the same
// tokens alone and batched next to rows the host samples, and on a second engine
// (tests/support/device_sampling_check.h; the engine tests run the same check on the CPU).
TEST(CudaEngine, SeededSamplingOnTheDeviceRepeats) {
  SKIP_WITHOUT_GPU();
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  EngineOptions o;
  o.threads = 2;
  o.max_num_seqs = 8;
  o.kv_cache_tokens = 4096;
  o.device = "cuda";
  test_support::check_seeded_device_sampling(model, o, nullptr);
}

// Overlap scheduling (on by default on a GPU): the same requests with it off give the same
// tokens, exactly (with no stops the steps hold the same rows either way), and the decode
// rows of overlapped steps really read their input tokens on the device.
TEST(CudaEngine, OverlapSchedulingGivesTheSameTokens) {
  SKIP_WITHOUT_GPU();
  std::shared_ptr<const Model> model = Model::load(kModels + "tiny-qwen2");
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> tok(3, 500), len(3, 40), n_new(1, 24);
  std::vector<Request> reqs;
  for (int i = 0; i < 12; ++i) {
    Request r;
    for (int n = len(rng); n > 0; --n) r.prompt.push_back(tok(rng));
    r.params.temperature = i % 3 == 2 ? 0.8f : 0.0f;  // some drawn on the device
    r.params.seed = static_cast<uint64_t>(i);
    r.params.max_tokens = n_new(rng);
    r.params.ignore_eos = true;
    reqs.push_back(r);
  }
  EngineOptions o;
  o.threads = 2;
  o.max_num_seqs = 8;
  o.max_num_batched_tokens = 48;
  o.kv_cache_tokens = 4096;
  o.device = "cuda";
  o.overlap = OverlapMode::kOn;  // (kAuto picks it on a GPU unless JINX_OVERLAP=0)
  LLM on(model, nullptr, o);
  EXPECT_TRUE(on.overlaps());
  o.overlap = OverlapMode::kOff;
  LLM off(model, nullptr, o);
  EXPECT_FALSE(off.overlaps());
  const auto a = on.generate(reqs);
  const auto b = off.generate(reqs);
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(a[i].token_ids, b[i].token_ids) << "request " << i;
    EXPECT_EQ(a[i].finish_reason, b[i].finish_reason) << "request " << i;
  }
  EXPECT_EQ(on.kv_blocks_used(), 0);
  // Eager launches (no graphs) too.
  o.overlap = OverlapMode::kOn;
  o.cuda_graphs = false;
  LLM eager(model, nullptr, o);
  const auto c = eager.generate(reqs);
  for (size_t i = 0; i < reqs.size(); ++i)
    EXPECT_EQ(c[i].token_ids, b[i].token_ids) << "eager, request " << i;
}

}  // namespace
}  // namespace jinx
