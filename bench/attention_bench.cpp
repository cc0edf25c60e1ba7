// Paged attention throughput (Google Benchmark).
//
//   build/bin/jinx_attention_bench [--benchmark_filter=Decode]
//
// Decode: one sequence, one query row, context 128..4096; KV_GB/s counts the K and V bytes the
// step must read (2 x context x n_kv_heads x head_dim x element size). "cold" rotates the
// sequence's block table over a 512 MB pool, so the KV comes from DRAM as it does in a real
// model (each layer has its own cache); "hot" reuses one block table (cache resident).
// Prefill: one chunk of 512 queries (fresh prompt, and after 1536 cached tokens); GFLOP/s counts
// 4 x head_dim flops per (query head, visible position). Shapes: Qwen2.5-0.5B (14 query heads,
// 2 kv heads, head_dim 64) and a Llama-8B-like layer (32, 8, 128). Threads: every hardware
// thread (JINX_THREADS overrides). ISA: the detected one unless the isa argument lowers it.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "backend/cpu/attention.h"
#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "core/half.h"

namespace {

using jinx::DType;
using jinx::cpu::AttnBatch;
using jinx::cpu::PagedKv;

constexpr int64_t kBlockSize = 16;
constexpr size_t kPoolBytes = size_t{512} << 20;  // K and V together

struct Shape {
  int64_t n_heads, n_kv, head_dim;
};
constexpr Shape kShapes[] = {{14, 2, 64}, {32, 8, 128}};

jinx::ThreadPool& pool() {
  static jinx::ThreadPool p(std::getenv("JINX_THREADS") ? std::atoi(std::getenv("JINX_THREADS"))
                                                        : 0);
  return p;
}

// A pool of blocks holding finite values in [0.5, 1) (no NaN or subnormal slow paths); int8 /
// fp8 rows hold codes of such values and a scale.
struct KvPool {
  std::vector<uint8_t> k, v;  // raw storage, viewed as the dtype's rows
  PagedKv kv;
  KvPool(DType t, const Shape& s) {
    const size_t row_bytes = jinx::cpu::kv_row_bytes(t, s.head_dim);
    const size_t block_bytes = kBlockSize * s.n_kv * row_bytes;
    const int64_t n_blocks = kPoolBytes / 2 / block_bytes;
    k.resize(n_blocks * block_bytes);
    for (size_t r = 0; r < k.size() / row_bytes; ++r) {
      uint8_t* row = k.data() + r * row_bytes;
      for (int64_t e = 0; e < s.head_dim; ++e) {
        const size_t i = r * s.head_dim + e;
        const float f = 0.5f + 0.5f * static_cast<float>(i % 1021) / 1021.0f;
        if (t == DType::F32) {
          std::memcpy(row + 4 * e, &f, 4);
        } else if (t == DType::F16 || t == DType::BF16) {
          const uint16_t h = t == DType::F16 ? jinx::f32_to_f16(f) : jinx::f32_to_bf16(f);
          std::memcpy(row + 2 * e, &h, 2);
        } else {
          row[e] = t == DType::I8 ? static_cast<uint8_t>(64 + i % 63) : jinx::f32_to_fp8_e4m3(f);
        }
      }
      if (t == DType::I8 || t == DType::F8_E4M3) {
        const float scale = t == DType::I8 ? 1.0f / 127 : 1.0f;
        std::memcpy(row + s.head_dim, &scale, 4);
      }
    }
    v = k;
    kv = PagedKv{k.data(), v.data(), t, n_blocks, kBlockSize, s.n_kv, s.head_dim};
  }
};

KvPool& kv_pool(DType t, int shape) {
  static std::map<std::pair<int, int>, std::unique_ptr<KvPool>> pools;
  auto& p = pools[{static_cast<int>(t), shape}];
  if (!p) p = std::make_unique<KvPool>(t, kShapes[shape]);
  return *p;
}

struct IsaScope {
  explicit IsaScope(int64_t isa) { jinx::cpu::set_isa(static_cast<jinx::cpu::Isa>(isa)); }
  ~IsaScope() { jinx::cpu::set_isa(jinx::cpu::detected_isa()); }
};

// args: dtype, shape, context, hot (0/1), isa
void BM_Decode(benchmark::State& state) {
  const DType t = static_cast<DType>(state.range(0));
  const Shape& s = kShapes[state.range(1)];
  const int32_t ctx = static_cast<int32_t>(state.range(2));
  const bool hot = state.range(3) != 0;
  IsaScope isa(state.range(4));
  KvPool& p = kv_pool(t, static_cast<int>(state.range(1)));
  const int64_t blocks = (ctx + kBlockSize - 1) / kBlockSize;
  const int64_t n_tables = hot ? 1 : p.kv.n_blocks / blocks;
  std::vector<int32_t> tables(n_tables * blocks);
  for (size_t i = 0; i < tables.size(); ++i) tables[i] = static_cast<int32_t>(i);
  std::shuffle(tables.begin(), tables.end(), std::mt19937(1));  // blocks scattered over the pool
  std::vector<float> q(s.n_heads * s.head_dim, 0.1f), out(q.size());
  const int32_t qstart[2] = {0, 1};
  int64_t i = 0;
  for (auto _ : state) {
    AttnBatch b{1, qstart, &ctx, tables.data() + (i++ % n_tables) * blocks, blocks};
    jinx::cpu::paged_attention(q.data(), out.data(), s.n_heads, p.kv, b, 0.0f, pool());
    benchmark::DoNotOptimize(out.data());
  }
  const double bytes = 2.0 * ctx * s.n_kv * jinx::cpu::kv_row_bytes(t, s.head_dim);
  state.counters["KV_GB/s"] =
      benchmark::Counter(bytes * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.SetLabel(jinx::str(jinx::name(t), " h", s.n_heads, "/", s.n_kv, " d", s.head_dim,
                           hot ? " hot " : " cold ", jinx::cpu::isa_name(jinx::cpu::active_isa())));
}

// args: dtype, shape, past (cached tokens before the chunk), isa
void BM_Prefill(benchmark::State& state) {
  constexpr int32_t kChunk = 512;
  const DType t = static_cast<DType>(state.range(0));
  const Shape& s = kShapes[state.range(1)];
  const int32_t past = static_cast<int32_t>(state.range(2));
  const int32_t ctx = past + kChunk;
  IsaScope isa(state.range(3));
  KvPool& p = kv_pool(t, static_cast<int>(state.range(1)));
  const int64_t blocks = (ctx + kBlockSize - 1) / kBlockSize;
  std::vector<int32_t> table(blocks);
  for (int64_t i = 0; i < blocks; ++i) table[i] = static_cast<int32_t>(i);
  std::vector<float> q(kChunk * s.n_heads * s.head_dim, 0.1f), out(q.size());
  const int32_t qstart[2] = {0, kChunk};
  const AttnBatch b{1, qstart, &ctx, table.data(), blocks};
  for (auto _ : state) {
    jinx::cpu::paged_attention(q.data(), out.data(), s.n_heads, p.kv, b, 0.0f, pool());
    benchmark::DoNotOptimize(out.data());
  }
  const double visible = double{kChunk} * past + double{kChunk} * (kChunk + 1) / 2;
  const double flops = 4.0 * s.head_dim * s.n_heads * visible;
  state.counters["GFLOP/s"] =
      benchmark::Counter(flops * state.iterations() / 1e9, benchmark::Counter::kIsRate);
  state.counters["tok/s"] =
      benchmark::Counter(kChunk * state.iterations(), benchmark::Counter::kIsRate);
  state.SetLabel(jinx::str(jinx::name(t), " h", s.n_heads, "/", s.n_kv, " d", s.head_dim, " ",
                           jinx::cpu::isa_name(jinx::cpu::active_isa())));
}

constexpr int64_t kF32 = static_cast<int64_t>(DType::F32);
constexpr int64_t kF16 = static_cast<int64_t>(DType::F16);
constexpr int64_t kBf16 = static_cast<int64_t>(DType::BF16);
constexpr int64_t kI8 = static_cast<int64_t>(DType::I8);
constexpr int64_t kFp8 = static_cast<int64_t>(DType::F8_E4M3);
constexpr int64_t kAvx512 = static_cast<int64_t>(jinx::cpu::Isa::kAvx512);
constexpr int64_t kAvx2 = static_cast<int64_t>(jinx::cpu::Isa::kAvx2);
constexpr int64_t kScalar = static_cast<int64_t>(jinx::cpu::Isa::kScalar);

void decode_args(benchmark::internal::Benchmark* b) {
  for (int64_t shape : {0, 1})
    for (int64_t t : {kF16, kBf16, kF32, kI8, kFp8})
      for (int64_t ctx : {128, 512, 1024, 2048, 4096}) b->Args({t, shape, ctx, 0, kAvx512});
  for (int64_t hot : {0, 1})
    for (int64_t isa : {kAvx512, kAvx2, kScalar}) b->Args({kF16, 0, 4096, hot, isa});
}

void prefill_args(benchmark::internal::Benchmark* b) {
  for (int64_t shape : {0, 1})
    for (int64_t t : {kF16, kBf16, kF32, kI8, kFp8})
      for (int64_t past : {0, 1536}) b->Args({t, shape, past, kAvx512});
  for (int64_t isa : {kAvx2, kScalar}) b->Args({kF16, 0, 0, isa});
}

BENCHMARK(BM_Decode)->Apply(decode_args)->UseRealTime();
BENCHMARK(BM_Prefill)->Apply(prefill_args)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
