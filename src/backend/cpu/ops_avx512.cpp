// AVX-512 element ops (ops.cpp dispatches here when the active level is AVX-512).
#include <cmath>

#include "backend/cpu/avx512_math.h"
#include "backend/cpu/simd.h"

namespace jinx::cpu::detail {

// a[i] = silu(a[i]) * b[i] = a / (1 + exp(-a)) * b. The tail goes through a masked vector.
JINX_AVX512 void silu_mul_avx512(float* a, const float* b, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 x = _mm512_maskz_loadu_ps(m, a + i);
    const __m512 e = exp16(_mm512_sub_ps(_mm512_setzero_ps(), x));
    const __m512 y =
        _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(m, b + i));
    _mm512_mask_storeu_ps(a + i, m, y);
  }
}

// a[i] = gelu_tanh(a[i]) * b[i]. 0.5 x (1 + tanh(z)) = x / (1 + exp(-2z)), z = sqrt(2/pi) (x +
// 0.044715 x^3): silu's form with another argument.
JINX_AVX512 void gelu_tanh_mul_avx512(float* a, const float* b, int64_t n) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 c2 = _mm512_set1_ps(-2.0f * 0.7978845608028654f), k = _mm512_set1_ps(0.044715f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - i)) - 1);
    const __m512 x = _mm512_maskz_loadu_ps(m, a + i);
    const __m512 z = _mm512_fmadd_ps(_mm512_mul_ps(k, x), _mm512_mul_ps(x, x), x);
    const __m512 e = exp16(_mm512_mul_ps(c2, z));
    const __m512 y =
        _mm512_mul_ps(_mm512_div_ps(x, _mm512_add_ps(one, e)), _mm512_maskz_loadu_ps(m, b + i));
    _mm512_mask_storeu_ps(a + i, m, y);
  }
}

}  // namespace jinx::cpu::detail
