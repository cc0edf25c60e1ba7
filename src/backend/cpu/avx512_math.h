// Internal: AVX-512 vector math shared by the kernels compiled for AVX-512 (attention, element
// ops). Include only from translation units whose functions carry the AVX-512 target.
#pragma once

#include <immintrin.h>

#define JINX_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))
// Helpers inlined into the loops that call them, so that their arrays stay in registers.
#define JINX_AVX512_INLINE [[gnu::always_inline]] JINX_AVX512 inline

namespace jinx::cpu::detail {

// exp(x), x clamped to [-88, 88]: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then a
// degree-6 Taylor polynomial (relative error ~1.2e-7) and 2^n by scalef.
JINX_AVX512_INLINE __m512 exp16(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-88.0f));
  x = _mm512_min_ps(x, _mm512_set1_ps(88.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

}  // namespace jinx::cpu::detail
