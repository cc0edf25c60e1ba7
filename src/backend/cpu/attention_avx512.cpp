// AVX-512 attention tile step, for head_dim a multiple of 16. K/V rows are converted from
// F16/BF16 in registers as they are loaded; every loaded K or V vector is used for up to four
// query rows (register blocking), so the group's query heads share one pass over the cache.
#include <immintrin.h>

// GCC 12's AVX-512 headers build some results from _mm512_undefined_*(), which -Wall reports
// as uninitialized at every inlined use; the values are fully overwritten.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "backend/cpu/attention_tile.h"
#include "backend/cpu/avx512_math.h"
#include "core/half.h"


namespace jinx::cpu::detail {
namespace {

struct F32 {};
struct F16 {};
struct Bf16 {};
struct I8 {};   // int8 codes + a row scale
struct Fp8 {};  // fp8 e4m3 codes + a row scale

template <typename T>
constexpr bool kScaled = std::is_same_v<T, I8> || std::is_same_v<T, Fp8>;

// 16 elements d..d+15 of a cache row, as fp32 (quantized rows: the codes' values, without the
// row scale, which the caller applies to whole scores and probabilities).
template <typename T>
JINX_AVX512_INLINE __m512 load16(const void* row, int64_t d) {
  if constexpr (std::is_same_v<T, F32>) {
    return _mm512_loadu_ps(static_cast<const float*>(row) + d);
  } else if constexpr (kScaled<T>) {
    const __m128i c =
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(static_cast<const uint8_t*>(row) + d));
    if constexpr (std::is_same_v<T, I8>) return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(c));
    // e4m3 -> fp32: sign to bit 31, the 7 magnitude bits to bits 26..20, times 2^120 (exact,
    // subnormals included; the cache holds no NaN codes).
    const __m512i x = _mm512_cvtepu8_epi32(c);
    const __m512i bits =
        _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x80)), 24),
                        _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x7f)), 20));
    return _mm512_mul_ps(_mm512_castsi512_ps(bits), _mm512_set1_ps(0x1p120f));
  } else {
    __m256i h =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const uint16_t*>(row) + d));
    if constexpr (std::is_same_v<T, F16>) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
}

JINX_AVX512 inline __mmask16 first_lanes(int64_t n) {
  if (n >= 16) return 0xffff;
  if (n <= 0) return 0;
  return static_cast<__mmask16>((1u << n) - 1);
}

// Sums of 16 vectors at once: lane i of the result is the sum of the lanes of v[i]. A
// transpose-and-add tree (15 shuffles' worth of adds per level) instead of 16 separate
// horizontal reductions.
JINX_AVX512_INLINE __m512 reduce16(const __m512* v) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {  // pairs: lanes interleaved in 64-bit halves of each 128 bits
    __m512 lo = _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]);
    __m512 hi = _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]);
    a[i] = _mm512_add_ps(lo, hi);  // per 128-bit lane: [v0a, v1a, v0b, v1b]
  }
  for (int i = 0; i < 4; ++i) {
    __m512 lo = _mm512_castpd_ps(
        _mm512_unpacklo_pd(_mm512_castps_pd(a[2 * i]), _mm512_castps_pd(a[2 * i + 1])));
    __m512 hi = _mm512_castpd_ps(
        _mm512_unpackhi_pd(_mm512_castps_pd(a[2 * i]), _mm512_castps_pd(a[2 * i + 1])));
    b[i] = _mm512_add_ps(lo, hi);  // per 128-bit lane: [v0, v1, v2, v3] partial sums
  }
  for (int i = 0; i < 2; ++i) {  // 128-bit lanes: [x0 x1 x2 x3] of b[2i], b[2i+1]
    __m512 lo = _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88);  // lanes 0,2 | 0,2
    __m512 hi = _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xdd);  // lanes 1,3 | 1,3
    c[i] = _mm512_add_ps(lo, hi);
  }
  __m512 lo = _mm512_shuffle_f32x4(c[0], c[1], 0x88);
  __m512 hi = _mm512_shuffle_f32x4(c[0], c[1], 0xdd);
  return _mm512_add_ps(lo, hi);
}

// The sum of v's lanes in exactly reduce16's order, ((c0 + c1) + (c2 + c3)) over 128-bit chunks
// of ((l0 + l2) + (l1 + l3)): a score must not depend on how many rows and keys shared its block
// (batch invariance), so every dot product is reduced the same way.
JINX_AVX512_INLINE float reduce1(__m512 v) {
  v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = _mm512_add_ps(v, _mm512_permute_ps(v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  return _mm512_cvtss_f32(v);
}

// Register blocking: a block of NR query rows takes NK cache rows at a time (NR x NK <= 16
// accumulators), so each loaded and converted K vector serves NR rows.
constexpr int kMaxRowBlock = 8;
constexpr int keys_per_step(int nr) {
  return nr <= 2 ? 8 : nr <= 4 ? 4 : 2;
}
constexpr int vecs_per_step(int nr) {
  return nr <= 4 ? 4 : 2;
}

// s[i][kk] = dot(q row i, k row kk) for NR query rows and NK cache rows.
template <typename T, int NR, int NK>
JINX_AVX512_INLINE void dots(const float* q, int64_t d_n, const void* const* k, float* s) {
  static_assert(NR * NK <= 16);
  __m512 acc[16];  // [NR][NK], zero padded to 16 for reduce16
  for (int i = 0; i < 16; ++i) acc[i] = _mm512_setzero_ps();
  for (int64_t d = 0; d < d_n; d += 16) {
    __m512 kv[NK];
    for (int kk = 0; kk < NK; ++kk) kv[kk] = load16<T>(k[kk], d);
    for (int i = 0; i < NR; ++i) {
      const __m512 qv = _mm512_loadu_ps(q + i * d_n + d);
      for (int kk = 0; kk < NK; ++kk)
        acc[i * NK + kk] = _mm512_fmadd_ps(qv, kv[kk], acc[i * NK + kk]);
    }
  }
  if constexpr (NR * NK >= 4) {
    alignas(64) float sums[16];
    _mm512_store_ps(sums, reduce16(acc));
    for (int i = 0; i < NR; ++i)
      for (int kk = 0; kk < NK; ++kk) s[i * kAttnTileKv + kk] = sums[i * NK + kk];
  } else {
    for (int i = 0; i < NR; ++i)
      for (int kk = 0; kk < NK; ++kk)
        s[i * kAttnTileKv + kk] = reduce1(acc[i * NK + kk]);
  }
}

template <typename T, int NR>
JINX_AVX512 void scores_rows(const AttnTile& t, int64_t r, int64_t nv) {
  constexpr int kKeys = keys_per_step(NR);
  const float* q = t.q + r * t.head_dim;
  float* s = t.s + r * kAttnTileKv;
  int64_t j = 0;
  for (; j + kKeys <= nv; j += kKeys) dots<T, NR, kKeys>(q, t.head_dim, t.k + j, s + j);
  for (; j < nv; ++j) dots<T, NR, 1>(q, t.head_dim, t.k + j, s + j);
}

// Turns row r's scores into probabilities exp(s - m_new) (zero past n_visible, up to n_kv
// rounded to 16) and updates m, l and the scale of o.
JINX_AVX512 void softmax_row(const AttnTile& t, int64_t r) {
  const int64_t nv = t.n_visible[r], n_chunks = (t.n_kv + 15) / 16;
  float* s = t.s + r * kAttnTileKv;
  if (nv == 0) {
    for (int64_t c = 0; c < n_chunks; ++c) _mm512_storeu_ps(s + 16 * c, _mm512_setzero_ps());
    return;
  }
  __m512 vmax = _mm512_set1_ps(-INFINITY);
  for (int64_t c = 0; c * 16 < nv; ++c)
    vmax = _mm512_mask_max_ps(vmax, first_lanes(nv - 16 * c), vmax, _mm512_loadu_ps(s + 16 * c));
  const float m_old = t.m[r];
  const float m_new = std::max(m_old, _mm512_reduce_max_ps(vmax));
  const __m512 vm = _mm512_set1_ps(m_new);
  __m512 vsum = _mm512_setzero_ps();
  for (int64_t c = 0; c < n_chunks; ++c) {
    const __mmask16 mask = first_lanes(nv - 16 * c);
    __m512 p = _mm512_maskz_mov_ps(
        mask, exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, s + 16 * c), vm)));
    _mm512_storeu_ps(s + 16 * c, p);
    vsum = _mm512_add_ps(vsum, p);
  }
  const float c = std::exp(m_old - m_new);  // 0 on the first tile (m = -inf)
  t.l[r] = t.l[r] * c + _mm512_reduce_add_ps(vsum);
  t.m[r] = m_new;
  if (c != 1.0f) {
    float* o = t.o + r * t.head_dim;
    const __m512 vc = _mm512_set1_ps(c);
    for (int64_t d = 0; d < t.head_dim; d += 16)
      _mm512_storeu_ps(o + d, _mm512_mul_ps(_mm512_loadu_ps(o + d), vc));
  }
}

// o[i][d0 .. d0 + 16 NV) += sum_j p[i][j] * v[j][d0 ..] for NR rows.
template <typename T, int NR, int NV>
JINX_AVX512 void pv_block(const AttnTile& t, int64_t r, int64_t d0, int64_t nv) {
  const int64_t d_n = t.head_dim;
  float* o = t.o + r * d_n + d0;
  const float* p = t.s + r * kAttnTileKv;
  __m512 acc[NR][NV];
  for (int i = 0; i < NR; ++i)
    for (int x = 0; x < NV; ++x) acc[i][x] = _mm512_loadu_ps(o + i * d_n + 16 * x);
  for (int64_t j = 0; j < nv; ++j) {
    __m512 vv[NV];
    for (int x = 0; x < NV; ++x) vv[x] = load16<T>(t.v[j], d0 + 16 * x);
    for (int i = 0; i < NR; ++i) {
      const __m512 pj = _mm512_set1_ps(p[i * kAttnTileKv + j]);
      for (int x = 0; x < NV; ++x) acc[i][x] = _mm512_fmadd_ps(pj, vv[x], acc[i][x]);
    }
  }
  for (int i = 0; i < NR; ++i)
    for (int x = 0; x < NV; ++x) _mm512_storeu_ps(o + i * d_n + 16 * x, acc[i][x]);
}

template <typename T, int NR>
JINX_AVX512 void pv_rows(const AttnTile& t, int64_t r, int64_t nv) {
  int64_t d = 0;
  constexpr int kVecs = vecs_per_step(NR);
  for (; d + 16 * kVecs <= t.head_dim; d += 16 * kVecs) pv_block<T, NR, kVecs>(t, r, d, nv);
  for (; d < t.head_dim; d += 16) pv_block<T, NR, 1>(t, r, d, nv);
}

// Runs the score pass (kScores) or the p * v pass over blocks of rows that see any position:
// one block when the rows fit (a decode step's group of query heads), else blocks of eight; nv
// is the most positions a row of the block sees (probabilities past a row's own n_visible are
// zero).
template <typename T, bool kScores>
JINX_AVX512 void row_blocks(const AttnTile& t) {
  const int64_t block = t.n_rows <= kMaxRowBlock ? t.n_rows : 8;
  for (int64_t r = 0; r < t.n_rows; r += block) {
    const int64_t nr = std::min<int64_t>(block, t.n_rows - r);
    int64_t nv = 0;
    for (int64_t i = 0; i < nr; ++i) nv = std::max(nv, t.n_visible[r + i]);
    if (nv == 0) continue;
    switch (nr) {
#define JINX_ROWS(n)                                                 \
  case n:                                                            \
    kScores ? scores_rows<T, n>(t, r, nv) : pv_rows<T, n>(t, r, nv); \
    break;
      JINX_ROWS(8)
      JINX_ROWS(7) JINX_ROWS(6) JINX_ROWS(5) JINX_ROWS(4) JINX_ROWS(3) JINX_ROWS(2) JINX_ROWS(1)
#undef JINX_ROWS
    }
  }
}

// Quantized rows: multiplies column j of every row's scores (or probabilities) by the scale
// stored after the codes of rows[j].
JINX_AVX512 void scale_columns(const AttnTile& t, const void* const* rows) {
  alignas(64) float sc[kAttnTileKv] = {};
  for (int64_t j = 0; j < t.n_kv; ++j)
    std::memcpy(&sc[j], static_cast<const uint8_t*>(rows[j]) + t.head_dim, sizeof(float));
  const int64_t n_chunks = (t.n_kv + 15) / 16;
  for (int64_t r = 0; r < t.n_rows; ++r) {
    if (t.n_visible[r] == 0) continue;
    float* s = t.s + r * kAttnTileKv;
    for (int64_t c = 0; c < n_chunks; ++c)
      _mm512_storeu_ps(s + 16 * c,
                       _mm512_mul_ps(_mm512_loadu_ps(s + 16 * c), _mm512_load_ps(sc + 16 * c)));
  }
}

template <typename T>
JINX_AVX512 void attend(const AttnTile& t) {
  row_blocks<T, true>(t);
  if constexpr (kScaled<T>) scale_columns(t, t.k);  // scores = k_scale * (q . codes)
  for (int64_t r = 0; r < t.n_rows; ++r) softmax_row(t, r);
  // o += p * v_scale * codes: the softmax sum l has already taken the unscaled p.
  if constexpr (kScaled<T>) scale_columns(t, t.v);
  row_blocks<T, false>(t);
}

void attend_any(const AttnTile& t) {
  switch (t.dtype) {
    case DType::F16:
      attend<F16>(t);
      break;
    case DType::BF16:
      attend<Bf16>(t);
      break;
    case DType::I8:
      attend<I8>(t);
      break;
    case DType::F8_E4M3:
      attend<Fp8>(t);
      break;
    default:
      attend<F32>(t);
      break;
  }
}

}  // namespace

AttendTileFn attend_tile_avx512(int64_t head_dim) {
  return head_dim % 16 == 0 ? attend_any : nullptr;
}

JINX_AVX512 void f32_to_f16_row_avx512(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = first_lanes(n - i);
    __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_mask_storeu_epi16(y + i, m, h);
  }
}

}  // namespace jinx::cpu::detail
