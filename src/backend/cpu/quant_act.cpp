// Activation rounding to int8 blocks (see quant_act.h). Scalar, AVX2 and AVX-512 forms compute
// the same float operations in the same order (max, one divide, one reciprocal, one multiply,
// round to nearest even), so they agree bit for bit.
#include "backend/cpu/quant_act.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "core/check.h"

#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace jinx::cpu {
namespace {

constexpr int kLanesPerBlock = kActBlock / 4;

inline void block_scale(float amax, float* d, float* id) {
  *d = amax / 127.0f;
  *id = *d != 0.0f ? 1.0f / *d : 0.0f;
}

// x [32] -> q [32], dl [8], sl [8]
void block_scalar(const float* x, int8_t* q, float* dl, float* sl) {
  float amax = 0.0f;
  for (int i = 0; i < kActBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
  float d, id;
  block_scale(amax, &d, &id);
  for (int i = 0; i < kActBlock; ++i) {
    const long v = std::lrintf(x[i] * id);
    q[i] = static_cast<int8_t>(std::clamp<long>(v, -128, 127));
  }
  for (int l = 0; l < kLanesPerBlock; ++l) {
    const int s = q[4 * l] + q[4 * l + 1] + q[4 * l + 2] + q[4 * l + 3];
    dl[l] = d;
    sl[l] = d * static_cast<float>(s);
  }
}

#define JINX_AVX2 __attribute__((target("avx2,fma,f16c")))
#define JINX_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

// Lane sums of 32 int8 and the two per-lane arrays.
JINX_AVX2 inline void store_lanes(__m256i qv, float d, float* dl, float* sl) {
  const __m256i s16 = _mm256_maddubs_epi16(_mm256_set1_epi8(1), qv);
  const __m256i s32 = _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
  const __m256 dv = _mm256_set1_ps(d);
  _mm256_storeu_ps(dl, dv);
  _mm256_storeu_ps(sl, _mm256_mul_ps(dv, _mm256_cvtepi32_ps(s32)));
}

JINX_AVX2 void block_avx2(const float* x, int8_t* q, float* dl, float* sl) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 v[4];
  __m256 mx = _mm256_setzero_ps();
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, v[i]));
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float d, id;
  block_scale(_mm_cvtss_f32(m4), &d, &id);
  const __m256 idv = _mm256_set1_ps(id);
  __m256i i32[4];
  for (int i = 0; i < 4; ++i) i32[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], idv));
  // packs work per 128-bit half; the permute puts the 8-value groups back in order.
  const __m256i i16a = _mm256_packs_epi32(i32[0], i32[1]);
  const __m256i i16b = _mm256_packs_epi32(i32[2], i32[3]);
  __m256i i8 = _mm256_packs_epi16(i16a, i16b);
  i8 = _mm256_permutevar8x32_epi32(i8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), i8);
  store_lanes(i8, d, dl, sl);
}

JINX_AVX512 void block_avx512(const float* x, int8_t* q, float* dl, float* sl) {
  const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
  const __m512 mx = _mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1));
  float d, id;
  block_scale(_mm512_reduce_max_ps(mx), &d, &id);
  const __m512 idv = _mm512_set1_ps(id);
  const __m128i q0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, idv)));
  const __m128i q1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, idv)));
  const __m256i qv = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), qv);
  store_lanes(qv, d, dl, sl);
}

}  // namespace

void quantize_act_row(const float* x, int64_t cols, int8_t* q, float* dl, float* sl) {
  JINX_CHECK(cols > 0 && cols % kActBlock == 0, "quantize_act_row: cols ", cols,
             " is not a multiple of ", kActBlock);
  auto block = block_scalar;
  if (active_isa() == Isa::kAvx512)
    block = block_avx512;
  else if (active_isa() == Isa::kAvx2)
    block = block_avx2;
  const int64_t nb = cols / kActBlock;
  for (int64_t b = 0; b < nb; ++b)
    block(x + b * kActBlock, q + b * kActBlock, dl + b * kLanesPerBlock, sl + b * kLanesPerBlock);
  if (nb % 2) {  // pad the last pair
    std::memset(q + nb * kActBlock, 0, kActBlock);
    std::fill_n(dl + nb * kLanesPerBlock, kLanesPerBlock, 0.0f);
    std::fill_n(sl + nb * kLanesPerBlock, kLanesPerBlock, 0.0f);
  }
}

QuantActs QuantActBuffer::quantize(const float* x, int64_t n_tokens, int64_t cols,
                                   ThreadPool* pool) {
  JINX_CHECK(n_tokens >= 0 && cols > 0 && cols % kActBlock == 0, "quantize activations: bad shape ",
             n_tokens, " x ", cols);
  QuantActs a;
  a.n_tokens = n_tokens;
  a.cols = cols;
  a.n_pairs = (cols + kActPair - 1) / kActPair;
  const size_t nq = static_cast<size_t>(n_tokens * a.n_pairs * kActPair);
  const size_t nl = static_cast<size_t>(n_tokens * a.n_pairs * kLanesPerPair);
  if (q_.size() < nq) q_.resize(nq);
  if (dl_.size() < nl) {
    dl_.resize(nl);
    sl_.resize(nl);
  }
  const size_t nb = static_cast<size_t>(n_tokens * a.n_pairs * 2);
  if (db_.size() < nb) {
    db_.resize(nb);
    sb_.resize(nb);
    sh_.resize(2 * nb);
  }
  a.q = q_.data();
  a.dl = dl_.data();
  a.sl = sl_.data();
  a.db = db_.data();
  a.sb = sb_.data();
  a.sh = sh_.data();
  constexpr int64_t kLanesPerBlock = kActBlock / 4;
  auto rows = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      float* dl = dl_.data() + t * a.n_pairs * kLanesPerPair;
      float* sl = sl_.data() + t * a.n_pairs * kLanesPerPair;
      quantize_act_row(x + t * cols, cols, q_.data() + t * a.n_pairs * kActPair, dl, sl);
      for (int64_t b = 0; b < 2 * a.n_pairs; ++b) {
        float half[2] = {0.0f, 0.0f};
        for (int64_t j = 0; j < kLanesPerBlock; ++j)
          half[2 * j / kLanesPerBlock] += sl[b * kLanesPerBlock + j];
        db_[t * a.n_pairs * 2 + b] = dl[b * kLanesPerBlock];
        sb_[t * a.n_pairs * 2 + b] = half[0] + half[1];
        sh_[t * a.n_pairs * 4 + 2 * b] = half[0];
        sh_[t * a.n_pairs * 4 + 2 * b + 1] = half[1];
      }
    }
  };
  if (pool && n_tokens > 1)
    pool->parallel_for(n_tokens, 1, [&](int64_t b, int64_t e) { rows(b, e); });
  else
    rows(0, n_tokens);
  return a;
}

}  // namespace jinx::cpu
