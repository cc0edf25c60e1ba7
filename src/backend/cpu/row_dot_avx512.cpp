// AVX-512 row-dot kernels: weights dequantized in registers, fp32 FMA accumulation.
// Rows may sit at any address: unaligned vector loads, block fields read as bytes.
#include <immintrin.h>

#include <cstddef>

// GCC 12's AVX-512 headers build some results from _mm512_undefined_*(), which -Wall reports
// as uninitialized at every inlined use; the values are fully overwritten.
#if !defined(__clang__)  // clang has no -Wmaybe-uninitialized
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "backend/cpu/simd.h"
#include "backend/cpu/unaligned.h"
#include "core/half.h"
#include "core/quant_blocks.h"

#define JINX_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma,f16c")))

namespace jinx::cpu::detail {
namespace {

JINX_AVX512 inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

// The f16 scale at byte `offset` of a block, by the F16C instruction (the portable scalar path
// branches on subnormals).
JINX_AVX512 inline __m512 broadcast_f16(const uint8_t* block, size_t offset) {
  return _mm512_set1_ps(_cvtsh_ss(load_u16(block + offset)));
}

// 16 weights as fp32 from each storage type, at byte address p.
JINX_AVX512 inline __m512 load16_f32(const uint8_t* p) {
  return _mm512_loadu_ps(reinterpret_cast<const float*>(p));
}
JINX_AVX512 inline __m512 load16_u16(const uint8_t* p, bool bf16) {
  __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  if (bf16) return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return _mm512_cvtph_ps(h);
}

// Dense types: F32, F16, BF16. Tail (cols % 16) done with a masked load.
template <int NX, typename T>
JINX_AVX512 void dot_dense(const void* row, const float* const* xs, int64_t cols, float* out,
                           bool bf16) {
  const uint8_t* w = static_cast<const uint8_t*>(row);
  constexpr int64_t kSize = sizeof(T);
  __m512 acc[NX];
  for (int j = 0; j < NX; ++j) acc[j] = _mm512_setzero_ps();
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    __m512 wv;
    if constexpr (kSize == 4) wv = load16_f32(w + kSize * c);
    else wv = load16_u16(w + kSize * c, bf16);
    for (int j = 0; j < NX; ++j) acc[j] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(xs[j] + c), acc[j]);
  }
  if (c < cols) {
    __mmask16 m = static_cast<__mmask16>((1u << (cols - c)) - 1);
    __m512 wv;
    if constexpr (kSize == 4) {
      wv = _mm512_maskz_loadu_ps(m, w + kSize * c);
    } else {
      __m256i h = _mm256_maskz_loadu_epi16(m, w + kSize * c);
      wv = bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                : _mm512_cvtph_ps(h);
    }
    for (int j = 0; j < NX; ++j)
      acc[j] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, xs[j] + c), acc[j]);
  }
  for (int j = 0; j < NX; ++j) out[j] = hsum(acc[j]);
}

// Q8_0: 32 int8 with one f16 scale. Two 16-lane halves per block.
template <int NX>
JINX_AVX512 void dot_q8_0(const void* row, const float* const* xs, int64_t cols, float* out) {
  __m512 acc[NX];
  for (int j = 0; j < NX; ++j) acc[j] = _mm512_setzero_ps();
  const int64_t nb = cols / kQK8_0;
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = block_at<BlockQ8_0>(row, i);
    const uint8_t* qs = b + offsetof(BlockQ8_0, qs);
    const __m512 d = broadcast_f16(b, offsetof(BlockQ8_0, d));
    __m128i q0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    __m128i q1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs + 16));
    __m512 w0 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q0)));
    __m512 w1 = _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q1)));
    const int64_t c = i * kQK8_0;
    for (int j = 0; j < NX; ++j) {
      acc[j] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xs[j] + c), acc[j]);
      acc[j] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xs[j] + c + 16), acc[j]);
    }
  }
  for (int j = 0; j < NX; ++j) out[j] = hsum(acc[j]);
}

// Q4_0 / Q4_1: element k in the low nibble of qs[k], element k+16 in the high nibble.
// Q4_0: x = d * (q - 8); Q4_1: x = d * q + m. The offset term is folded in as sum(x) * m.
template <int NX, bool kHasMin>
JINX_AVX512 void dot_q4(const void* row, const float* const* xs, int64_t cols, float* out) {
  using Block = std::conditional_t<kHasMin, BlockQ4_1, BlockQ4_0>;
  __m512 acc[NX];
  for (int j = 0; j < NX; ++j) acc[j] = _mm512_setzero_ps();
  const int64_t nb = cols / 32;
  const __m128i low = _mm_set1_epi8(0x0f);
  for (int64_t i = 0; i < nb; ++i) {
    const uint8_t* b = block_at<Block>(row, i);
    __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + offsetof(Block, qs)));
    __m128i lo = _mm_and_si128(q, low);
    __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), low);
    __m512 f0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(lo));
    __m512 f1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(hi));
    const __m512 d = broadcast_f16(b, offsetof(Block, d));
    __m512 w0, w1;
    if constexpr (kHasMin) {
      const __m512 m = broadcast_f16(b, offsetof(BlockQ4_1, m));
      w0 = _mm512_fmadd_ps(d, f0, m);
      w1 = _mm512_fmadd_ps(d, f1, m);
    } else {
      const __m512 eight = _mm512_set1_ps(8.0f);
      w0 = _mm512_mul_ps(d, _mm512_sub_ps(f0, eight));
      w1 = _mm512_mul_ps(d, _mm512_sub_ps(f1, eight));
    }
    const int64_t c = i * 32;
    for (int j = 0; j < NX; ++j) {
      acc[j] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xs[j] + c), acc[j]);
      acc[j] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xs[j] + c + 16), acc[j]);
    }
  }
  for (int j = 0; j < NX; ++j) out[j] = hsum(acc[j]);
}

// NR fp32 rows (ld floats apart) x NT tokens (simd.h: 3 x 8, 24 accumulators): out[i * NT + j]
// = dot(rows[i], xs[j]). Each sum runs exactly as dot_dense<NX, float> runs it (16 lanes,
// columns in order, the same masked tail and reduction), so a token gets the same bits from
// either kernel; the tile loads each weight vector once for NT tokens and each activation once
// for NR rows.
JINX_AVX512 void tile_f32(const float* rows, int64_t ld, const float* const* xs, int64_t cols,
                              float* out) {
  constexpr int NT = kTileTokens, NR = kTileRows;
  __m512 acc[NR][NT];
  for (auto& r : acc)
    for (auto& a : r) a = _mm512_setzero_ps();
  const float* w[NR];
  for (int i = 0; i < NR; ++i) w[i] = rows + i * ld;
  int64_t c = 0;
  for (; c + 16 <= cols; c += 16) {
    __m512 wv[NR];
    for (int i = 0; i < NR; ++i) wv[i] = _mm512_loadu_ps(w[i] + c);
    for (int j = 0; j < NT; ++j) {
      __m512 x = _mm512_loadu_ps(xs[j] + c);
      // Keeps x in a register: GCC would otherwise fold its load into each of the NR FMAs,
      // NR loads per activation vector instead of one, and the loop becomes load-bound.
      asm("" : "+v"(x));
      for (int i = 0; i < NR; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], x, acc[i][j]);
    }
  }
  if (c < cols) {
    const __mmask16 m = static_cast<__mmask16>((1u << (cols - c)) - 1);
    __m512 wv[NR];
    for (int i = 0; i < NR; ++i) wv[i] = _mm512_maskz_loadu_ps(m, w[i] + c);
    for (int j = 0; j < NT; ++j) {
      const __m512 x = _mm512_maskz_loadu_ps(m, xs[j] + c);
      for (int i = 0; i < NR; ++i) acc[i][j] = _mm512_fmadd_ps(wv[i], x, acc[i][j]);
    }
  }
  for (int i = 0; i < NR; ++i)
    for (int j = 0; j < NT; ++j) out[i * NT + j] = hsum(acc[i][j]);
}

template <template <int> class K>
void dispatch_nx(const void* row, const float* const* xs, int nx, int64_t cols, float* out) {
  switch (nx) {
    case 1: K<1>::run(row, xs, cols, out); break;
    case 2: K<2>::run(row, xs, cols, out); break;
    case 3: K<3>::run(row, xs, cols, out); break;
    default: K<4>::run(row, xs, cols, out); break;
  }
}

template <int NX> struct F32K { static void run(const void* r, const float* const* x, int64_t c, float* o) { dot_dense<NX, float>(r, x, c, o, false); } };
template <int NX> struct F16K { static void run(const void* r, const float* const* x, int64_t c, float* o) { dot_dense<NX, uint16_t>(r, x, c, o, false); } };
template <int NX> struct BF16K { static void run(const void* r, const float* const* x, int64_t c, float* o) { dot_dense<NX, uint16_t>(r, x, c, o, true); } };
template <int NX> struct Q80K { static void run(const void* r, const float* const* x, int64_t c, float* o) { dot_q8_0<NX>(r, x, c, o); } };
template <int NX> struct Q40K { static void run(const void* r, const float* const* x, int64_t c, float* o) { dot_q4<NX, false>(r, x, c, o); } };
template <int NX> struct Q41K { static void run(const void* r, const float* const* x, int64_t c, float* o) { dot_q4<NX, true>(r, x, c, o); } };

}  // namespace

TileFn tile_f32_avx512() {
  return tile_f32;
}

RowDotFn row_dot_avx512(DType t) {
  switch (t) {
    case DType::F32: return dispatch_nx<F32K>;
    case DType::F16: return dispatch_nx<F16K>;
    case DType::BF16: return dispatch_nx<BF16K>;
    case DType::Q8_0: return dispatch_nx<Q80K>;
    case DType::Q4_0: return dispatch_nx<Q40K>;
    case DType::Q4_1: return dispatch_nx<Q41K>;
    default: return nullptr;
  }
}

}  // namespace jinx::cpu::detail
