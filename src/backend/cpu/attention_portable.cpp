// The portable attention tile step: plain loops over fp32 rows, one query row at a time. It is
// the scalar level, and, compiled again for AVX2+FMA+F16C (the compiler vectorizes the loops and
// F16C converts the K/V rows), the AVX2 level.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "backend/cpu/attention_tile.h"
#include "core/half.h"

#define JINX_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace jinx::cpu::detail {
namespace {

// One query row against the visible tile positions: scores, online-softmax update, p * v.
// Inlined into each ISA's entry point so that it is compiled for that ISA.
[[gnu::always_inline]] inline void row_step(const AttnTile& t, int64_t r, const float* const* k,
                                            const float* const* v) {
  const int64_t d_n = t.head_dim, nv = t.n_visible[r];
  const float* q = t.q + r * d_n;
  float* s = t.s + r * kAttnTileKv;
  float mx = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < nv; ++j) {
    const float* kj = k[j];
    float acc = 0.0f;
#pragma omp simd reduction(+ : acc)
    for (int64_t d = 0; d < d_n; ++d) acc += q[d] * kj[d];
    s[j] = acc;
    mx = std::max(mx, acc);
  }
  const float m_new = std::max(t.m[r], mx);
  const float c = std::exp(t.m[r] - m_new);  // 0 on the first tile (m = -inf)
  float sum = 0.0f;
  for (int64_t j = 0; j < nv; ++j) {
    s[j] = std::exp(s[j] - m_new);
    sum += s[j];
  }
  t.l[r] = t.l[r] * c + sum;
  t.m[r] = m_new;
  float* o = t.o + r * d_n;
  if (c != 1.0f) {
#pragma omp simd
    for (int64_t d = 0; d < d_n; ++d) o[d] *= c;
  }
  for (int64_t j = 0; j < nv; ++j) {
    const float p = s[j];
    const float* vj = v[j];
#pragma omp simd
    for (int64_t d = 0; d < d_n; ++d) o[d] += p * vj[d];
  }
}

int64_t max_visible(const AttnTile& t) {
  int64_t n = 0;
  for (int64_t r = 0; r < t.n_rows; ++r) n = std::max(n, t.n_visible[r]);
  return n;
}

// A quantized cache row (I8 or F8_E4M3 codes, then the fp32 scale) as fp32 values.
void dequantize_row(const void* row, DType dtype, float* y, int64_t n) {
  const auto* c = static_cast<const uint8_t*>(row);
  float scale;
  std::memcpy(&scale, c + n, sizeof scale);
  if (dtype == DType::I8) {
    for (int64_t i = 0; i < n; ++i) y[i] = scale * static_cast<float>(static_cast<int8_t>(c[i]));
  } else {
    for (int64_t i = 0; i < n; ++i) y[i] = scale * fp8_e4m3_to_f32(c[i]);
  }
}

// Row pointers to fp32 copies of the first n K and V rows (the rows themselves for F32).
template <typename Convert>
[[gnu::always_inline]] inline void fp32_rows(const AttnTile& t, int64_t n, const float** k,
                                             const float** v, Convert convert) {
  const int64_t d_n = t.head_dim;
  const bool quantized = t.dtype == DType::I8 || t.dtype == DType::F8_E4M3;
  for (int64_t j = 0; j < n; ++j) {
    if (t.dtype == DType::F32) {
      k[j] = static_cast<const float*>(t.k[j]);
      v[j] = static_cast<const float*>(t.v[j]);
      continue;
    }
    float* kd = t.kv_scratch + j * d_n;
    float* vd = t.kv_scratch + (kAttnTileKv + j) * d_n;
    if (quantized) {
      dequantize_row(t.k[j], t.dtype, kd, d_n);
      dequantize_row(t.v[j], t.dtype, vd, d_n);
    } else {
      convert(static_cast<const uint16_t*>(t.k[j]), kd, d_n);
      convert(static_cast<const uint16_t*>(t.v[j]), vd, d_n);
    }
    k[j] = kd;
    v[j] = vd;
  }
}

void attend_scalar(const AttnTile& t) {
  const float* k[kAttnTileKv];
  const float* v[kAttnTileKv];
  const bool bf16 = t.dtype == DType::BF16;
  fp32_rows(t, max_visible(t), k, v, [bf16](const uint16_t* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] = bf16 ? bf16_to_f32(x[i]) : f16_to_f32(x[i]);
  });
  for (int64_t r = 0; r < t.n_rows; ++r)
    if (t.n_visible[r] > 0) row_step(t, r, k, v);
}

JINX_AVX2 void convert_avx2(const uint16_t* x, float* y, int64_t n, bool bf16) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(x + i));
    __m256 f = bf16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                    : _mm256_cvtph_ps(h);
    _mm256_storeu_ps(y + i, f);
  }
  for (; i < n; ++i) y[i] = bf16 ? bf16_to_f32(x[i]) : f16_to_f32(x[i]);
}

JINX_AVX2 void attend_avx2(const AttnTile& t) {
  const float* k[kAttnTileKv];
  const float* v[kAttnTileKv];
  const bool bf16 = t.dtype == DType::BF16;
  fp32_rows(t, max_visible(t), k, v,
            [bf16](const uint16_t* x, float* y, int64_t n) { convert_avx2(x, y, n, bf16); });
  for (int64_t r = 0; r < t.n_rows; ++r)
    if (t.n_visible[r] > 0) row_step(t, r, k, v);
}

}  // namespace

AttendTileFn attend_tile_scalar(int64_t /*head_dim*/) {
  return attend_scalar;
}
AttendTileFn attend_tile_avx2(int64_t /*head_dim*/) {
  return attend_avx2;
}

JINX_AVX2 void f32_to_f16_row_avx2(const float* x, uint16_t* y, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), h);
  }
  for (; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

}  // namespace jinx::cpu::detail
