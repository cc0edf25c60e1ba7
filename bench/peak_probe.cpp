// Arithmetic peak probe: how many fp32 FMA, int8 dot-product (VNNI vpdpbusd, AVX2
// vpmaddubsw) and BF16 dot-product (vdpbf16ps) operations per second this machine sustains,
// on 1 thread and on N threads. Each loop runs 12 independent accumulator chains, enough to
// cover the instruction latency. An operation is a multiply or an add (one FMA lane = 2).
//
//   build/bin/jinx_peak_probe [threads]     (default 2)
#include <immintrin.h>

// GCC 12 AVX-512 headers: see row_dot_avx512.cpp.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace {

constexpr int kChains = 12;
constexpr long kIters = 20'000'000;

volatile float g_sink_f;
volatile int g_sink_i;

__attribute__((target("avx512f"))) void fma512(long n) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
  for (long k = 0; k < n; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  g_sink_f = _mm512_reduce_add_ps(s);
}

__attribute__((target("avx2,fma"))) void fma256(long n) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
  for (long k = 0; k < n; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  float out[8];
  _mm256_storeu_ps(out, s);
  g_sink_f = out[0];
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void vnni512(long n) {
  __m512i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_epi32(i);
  const __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(-2);
  for (long k = 0; k < n; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbusd_epi32(acc[i], a, b);
  __m512i s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_epi32(s, acc[i]);
  g_sink_i = _mm512_reduce_add_epi32(s);
}

// The AVX2 int8 dot product: vpmaddubsw + vpmaddwd + vpaddd per 32 byte pairs.
__attribute__((target("avx2"))) void maddubs256(long n) {
  __m256i acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_epi32(i);
  const __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(-2), one = _mm256_set1_epi16(1);
  for (long k = 0; k < n; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i)
      acc[i] = _mm256_add_epi32(acc[i], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), one));
  __m256i s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_epi32(s, acc[i]);
  g_sink_i = _mm256_extract_epi32(s, 0);
}

__attribute__((target("avx512f,avx512bf16"))) void bf16dot512(long n) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3a83);
  for (long k = 0; k < n; ++k)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  g_sink_f = _mm512_reduce_add_ps(s);
}

struct Probe {
  const char* name;
  const char* unit;
  const char* feature;  // __builtin_cpu_supports name
  void (*fn)(long);
  double ops_per_instr;  // multiplies + adds per instruction
};

double run(const Probe& p, int threads) {
  const long n = kIters / 4;
  p.fn(n / 10);  // warm up clocks
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) ts.emplace_back([&] { p.fn(n); });
  for (auto& t : ts) t.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(n) * kChains * p.ops_per_instr * threads / s * 1e-9;
}

bool supported(const char* f) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2")) return false;
  const std::string s = f;
  if (s == "avx2") return true;
  if (s == "avx512f") return __builtin_cpu_supports("avx512f");
  if (s == "avx512vnni") return __builtin_cpu_supports("avx512vnni");
  if (s == "avx512bf16") return __builtin_cpu_supports("avx512bf16");
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const Probe probes[] = {
      {"fp32 FMA (zmm, vfmadd231ps)", "GFLOP/s", "avx512f", fma512, 32},
      {"fp32 FMA (ymm)", "GFLOP/s", "avx2", fma256, 16},
      {"int8 dot (zmm, vpdpbusd)", "GOP/s", "avx512vnni", vnni512, 128},
      {"int8 dot (ymm, vpmaddubsw+vpmaddwd+vpaddd)", "GOP/s", "avx2", maddubs256, 64},
      {"bf16 dot (zmm, vdpbf16ps)", "GFLOP/s", "avx512bf16", bf16dot512, 64},
  };
  std::printf("%-44s %12s %12s\n", "", "1 thread", (std::to_string(threads) + " threads").c_str());
  for (const Probe& p : probes) {
    if (!supported(p.feature)) {
      std::printf("%-44s %12s\n", p.name, "n/a");
      continue;
    }
    const double one = run(p, 1), many = run(p, threads);
    std::printf("%-44s %8.0f %s %8.0f %s\n", p.name, one, p.unit, many, p.unit);
  }
}
