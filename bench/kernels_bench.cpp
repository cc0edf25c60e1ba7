// Quantized matmul kernels at Qwen2-0.5B shapes (Google Benchmark). Prints, per weight format
// and shape:
//   gemv: 1 token, GB/s of weight bytes streamed ("GB=x/s"; compare with jinx_membw);
//   gemm: 128 tokens, GFLOP/s ("GFLOP=x/s": 2 * rows * cols * tokens; see jinx_peak_probe);
// in the default mode (8-bit activations, integer kernels: "int8") and the exact mode (fp32
// activations: "fp32act"). Weights are random bytes with sane scales; speed does not depend on
// the values.
//
//   build/bin/jinx_kernels_bench [--benchmark_filter=gemv] [--threads=N]
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/half.h"
#include "core/quant_blocks.h"

namespace {

using jinx::DType;
using jinx::WeightMatrix;

struct Format {
  const char* name;
  DType dtype;  // U32: MLX
  int mlx_bits;
};

const Format kFormats[] = {
    {"q8_0", DType::Q8_0, 0},    {"q4_0", DType::Q4_0, 0},    {"q4_1", DType::Q4_1, 0},
    {"q4_k", DType::Q4_K, 0},    {"q5_k", DType::Q5_K, 0},    {"q6_k", DType::Q6_K, 0},
    {"mlx4_g64", DType::U32, 4}, {"mlx8_g64", DType::U32, 8}, {"bf16", DType::BF16, 0}};

struct Shape {
  int64_t rows, cols;
};
const Shape kShapes[] = {{896, 896}, {4864, 896}, {896, 4864}, {151936, 896}};

// A matrix of random bytes whose f16 scale fields are small finite numbers.
struct Matrix {
  WeightMatrix w;
  std::vector<uint8_t> data;
  std::vector<uint16_t> scales, biases;
  size_t bytes = 0;  // everything a pass over the matrix reads
};

void fill_random(std::vector<uint8_t>& v) {
  uint64_t s = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i + 8 <= v.size(); i += 8) {
    s ^= s << 13, s ^= s >> 7, s ^= s << 17;
    std::memcpy(&v[i], &s, 8);
  }
}

std::unique_ptr<Matrix> make(const Format& f, const Shape& s) {
  auto m = std::make_unique<Matrix>();
  const uint16_t small = jinx::f32_to_f16(0.01f);
  if (f.dtype == DType::U32) {
    const int group = 64;
    const size_t rb = s.cols * f.mlx_bits / 8;
    m->data.resize(rb * s.rows);
    fill_random(m->data);
    m->scales.assign(s.rows * s.cols / group, jinx::f32_to_bf16(0.01f));
    m->biases.assign(s.rows * s.cols / group, jinx::f32_to_bf16(-0.05f));
    m->w = {DType::U32, m->data.data(),
            s.rows,     s.cols,
            rb,         {f.mlx_bits, group, DType::BF16, m->scales.data(), m->biases.data()}};
    m->bytes = m->data.size() + 4 * m->scales.size();
    return m;
  }
  const size_t rb = *jinx::bytes_for(f.dtype, s.cols);
  m->data.resize(rb * s.rows);
  fill_random(m->data);
  const auto& tr = jinx::traits(f.dtype);
  const int64_t nb = s.cols / tr.block_elems * s.rows;
  for (int64_t i = 0; i < nb; ++i) {
    uint8_t* blk = m->data.data() + i * tr.block_bytes;
    switch (f.dtype) {
      case DType::BF16:
        for (size_t k = 0; k < tr.block_bytes; k += 2) blk[k + 1] = 0x3c;  // ~0.01
        break;
      case DType::Q6_K:
        std::memcpy(blk + offsetof(jinx::BlockQ6_K, d), &small, 2);
        break;
      case DType::Q4_1:
      case DType::Q4_K:
      case DType::Q5_K:
        std::memcpy(blk + 2, &small, 2);
        [[fallthrough]];
      default:
        std::memcpy(blk, &small, 2);
    }
  }
  m->w = {f.dtype, m->data.data(), s.rows, s.cols, rb, {}};
  m->bytes = m->data.size();
  return m;
}

jinx::ThreadPool& pool() {
  static jinx::ThreadPool p(2);
  return p;
}

void run(benchmark::State& st, const Format& f, const Shape& s, int64_t n_tokens, bool exact) {
  static std::unique_ptr<Matrix> cached;
  static std::string cached_key;
  const std::string key =
      std::string(f.name) + std::to_string(s.rows) + "x" + std::to_string(s.cols);
  if (cached_key != key) cached = make(f, s), cached_key = key;
  const Matrix& m = *cached;
  std::vector<float> x(n_tokens * s.cols), y(n_tokens * s.rows);
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  for (auto& v : x) v = nd(rng);
  jinx::cpu::set_exact_activations(exact);
  for (auto _ : st) {
    jinx::cpu::matmul(m.w, x.data(), n_tokens, y.data(), s.rows, pool());
    benchmark::DoNotOptimize(y.data());
  }
  jinx::cpu::set_exact_activations(false);
  if (n_tokens == 1) {
    st.counters["GB"] = benchmark::Counter(static_cast<double>(m.bytes) * 1e-9,
                                           benchmark::Counter::kIsIterationInvariantRate);
  } else {
    st.counters["GFLOP"] = benchmark::Counter(2.0 * s.rows * s.cols * n_tokens * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
  }
}

// A MoE layer's experts at decode: 8 of 64 SwiGLU experts (512 wide, 1024 in; the shape of
// tools/make_random_gguf.py --shape moe) picked at random each iteration, gate and up in one
// grouped matmul, down in another (as model/moe.cpp runs them). GB/s of expert bytes read;
// "dense" runs the same bytes as three plain matrices for comparison.
void run_moe(benchmark::State& st, const Format& f, bool dense) {
  constexpr int64_t kExperts = 64, kUsed = 8, kFf = 512, kHidden = 1024;
  static std::unique_ptr<Matrix> gate, up, down;
  static std::string key;
  if (key != f.name) {
    gate = make(f, {kExperts * kFf, kHidden});
    up = make(f, {kExperts * kFf, kHidden});
    down = make(f, {kExperts * kHidden, kFf});
    key = f.name;
  }
  auto slice = [](const Matrix& m, int64_t e, int64_t rows) {
    WeightMatrix w = m.w;
    w.rows = rows;
    w.data = static_cast<const uint8_t*>(m.w.data) + e * rows * m.w.row_bytes;
    return w;
  };
  std::vector<float> x(kHidden, 0.5f), g(kUsed * kFf), u(kUsed * kFf), y(kUsed * kHidden);
  std::mt19937 rng(7);
  std::vector<int> order(kExperts);
  for (int i = 0; i < kExperts; ++i) order[i] = i;
  size_t bytes = 0;
  for (auto _ : st) {
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<WeightMatrix> w;
    for (int j = 0; j < kUsed; ++j) {
      const int64_t e = dense ? j : order[j];
      w.push_back(slice(*gate, e, kFf));
      w.push_back(slice(*up, e, kFf));
      w.push_back(slice(*down, e, kHidden));
    }
    std::vector<jinx::cpu::GroupedPart> a, b;
    for (int j = 0; j < kUsed; ++j) {
      a.push_back({&w[3 * j], x.data(), 1, &g[j * kFf], kFf});
      a.push_back({&w[3 * j + 1], x.data(), 1, &u[j * kFf], kFf});
      b.push_back({&w[3 * j + 2], &g[j * kFf], 1, &y[j * kHidden], kHidden});
    }
    jinx::cpu::matmul_grouped(a, pool());
    jinx::cpu::matmul_grouped(b, pool());
    benchmark::DoNotOptimize(y.data());
    bytes = 0;
    for (const WeightMatrix& m : w) bytes += m.row_bytes * m.rows;
  }
  st.counters["GB"] = benchmark::Counter(static_cast<double>(bytes) * 1e-9,
                                         benchmark::Counter::kIsIterationInvariantRate);
}

}  // namespace

int main(int argc, char** argv) {
  for (const Format& f : kFormats) {
    if (f.dtype == DType::BF16 || f.dtype == DType::U32) continue;
    for (bool dense : {false, true})
      benchmark::RegisterBenchmark(
          (std::string("moe_gemv/") + f.name + (dense ? "/same-8-experts" : "/8-of-64")).c_str(),
          [&f, dense](benchmark::State& st) { run_moe(st, f, dense); })
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond)
          ->MinTime(0.3);
  }
  for (const Format& f : kFormats)
    for (const Shape& s : kShapes) {
      if (f.dtype == DType::BF16 && s.rows > 10000) continue;  // 272 MB: skip
      // k-quant rows hold whole 256-value super-blocks: 896 columns do not fit (llama.cpp
      // stores such Qwen2 tensors in other types).
      if (f.dtype != DType::U32 && !jinx::bytes_for(f.dtype, s.cols)) continue;
      const bool dense = f.dtype == DType::BF16;
      for (int64_t n : {int64_t{1}, int64_t{128}}) {
        if (n > 1 && s.rows > 10000) continue;  // lm head: decode only
        for (bool exact : {false, true}) {
          if (dense && !exact) continue;  // dense weights always use fp32 activations
          const std::string name = std::string(n == 1 ? "gemv/" : "gemm128/") + f.name + "/" +
                                   std::to_string(s.rows) + "x" + std::to_string(s.cols) +
                                   (exact ? "/fp32act" : "/int8");
          benchmark::RegisterBenchmark(
              name.c_str(), [&f, s, n, exact](benchmark::State& st) { run(st, f, s, n, exact); })
              ->UseRealTime()
              ->Unit(benchmark::kMicrosecond)
              ->MinTime(0.3);
        }
      }
    }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
}
