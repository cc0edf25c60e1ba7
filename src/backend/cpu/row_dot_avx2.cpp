// AVX2 row-dot kernels for the dense types; quantized types take the dequantize-then-F32 path
// at this level. Rows may sit at any address: unaligned vector loads, memcpy scalar loads.
#include <immintrin.h>

#include <cmath>

#include "backend/cpu/simd.h"
#include "backend/cpu/unaligned.h"
#include "core/half.h"

#define JINX_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace jinx::cpu::detail {
namespace {

JINX_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

enum class Kind { kF32, kF16, kBF16 };

template <Kind K>
JINX_AVX2 inline __m256 load8(const void* row, int64_t c) {
  const uint8_t* p = static_cast<const uint8_t*>(row);
  if constexpr (K == Kind::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(p + 4 * c));
  } else {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * c));
    if constexpr (K == Kind::kF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

template <Kind K>
inline float scalar_at(const void* row, int64_t c) {
  if constexpr (K == Kind::kF32) return f32_at(row, c);
  else if constexpr (K == Kind::kF16) return f16_to_f32(u16_at(row, c));
  else return bf16_to_f32(u16_at(row, c));
}

template <Kind K, int NX>
JINX_AVX2 void dot(const void* row, const float* const* xs, int64_t cols, float* out) {
  __m256 acc[NX];
  for (int j = 0; j < NX; ++j) acc[j] = _mm256_setzero_ps();
  int64_t c = 0;
  for (; c + 8 <= cols; c += 8) {
    __m256 w = load8<K>(row, c);
    for (int j = 0; j < NX; ++j) acc[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xs[j] + c), acc[j]);
  }
  for (int j = 0; j < NX; ++j) {
    float s = hsum8(acc[j]);
    // An explicit FMA: `s += a * b` is contracted or not at the compiler's choice, which can
    // differ between the F16 and F32 instantiations (-march=native) and would make a token's
    // row depend on the batch (n <= 4 reads F16 rows here, more dequantizes them for F32).
    for (int64_t t = c; t < cols; ++t) s = std::fma(scalar_at<K>(row, t), xs[j][t], s);
    out[j] = s;
  }
}

template <Kind K>
void dispatch(const void* row, const float* const* xs, int nx, int64_t cols, float* out) {
  switch (nx) {
    case 1: dot<K, 1>(row, xs, cols, out); break;
    case 2: dot<K, 2>(row, xs, cols, out); break;
    case 3: dot<K, 3>(row, xs, cols, out); break;
    default: dot<K, 4>(row, xs, cols, out); break;
  }
}

// The scalar reference: plain loops, double accumulation is not used so that it rounds like
// the SIMD forms up to summation order.
void dot_scalar_f32(const void* row, const float* const* xs, int nx, int64_t cols, float* out) {
  for (int j = 0; j < nx; ++j) {
    float s = 0.0f;
    for (int64_t c = 0; c < cols; ++c) s += f32_at(row, c) * xs[j][c];
    out[j] = s;
  }
}

}  // namespace

RowDotFn row_dot_avx2(DType t) {
  switch (t) {
    case DType::F32: return dispatch<Kind::kF32>;
    case DType::F16: return dispatch<Kind::kF16>;
    case DType::BF16: return dispatch<Kind::kBF16>;
    default: return nullptr;
  }
}

RowDotFn row_dot_scalar(DType t) { return t == DType::F32 ? dot_scalar_f32 : nullptr; }

}  // namespace jinx::cpu::detail
