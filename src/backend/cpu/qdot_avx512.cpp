// AVX-512 VNNI integer-dot kernels. A decoder turns a unit of a weight row (one pair of 32-value
// blocks, or a 256-value k-quant super-block = 4 pairs) into unsigned bytes u, 64 per vector,
// with w = dw * u + ow per block (per 16 values for Q6_K); the scales of 16 rows are gathered
// from the block headers with rows in lanes. vpdpbusd multiplies u by the int8 activations.
// Both paths sum each 32-value block in int32 first and then do the same float work per row
// and block, in block order:
//   acc = fma(float(sum(u * q)), dw * dx, acc); acc = fma(ow, dx * sum(q), acc)
// so a token's outputs are bit-identical whatever else shares the call (batch invariance).
// GEMV (up to four tokens) runs straight off the stored rows, 16 rows in lanes; GEMM decodes 16
// rows at a time into a row-interleaved panel (below).
// Weight rows may sit at any address: blocks are read as bytes (backend/cpu/unaligned.h).
#include <immintrin.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <type_traits>
#include <vector>

#if !defined(__clang__)  // clang has no -Wmaybe-uninitialized
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include "backend/cpu/simd.h"
#include "backend/cpu/unaligned.h"
#include "core/check.h"
#include "core/quant_blocks.h"

#define JINX_VNNI \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))
#define JINX_VNNI_INLINE [[gnu::always_inline]] JINX_VNNI inline

namespace jinx::cpu::detail {
namespace {

const uint8_t* row_ptr(const WeightMatrix& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_bytes;
}

// The f16 at byte `offset` of a block.
JINX_VNNI inline float h2f(const uint8_t* block, size_t offset) {
  return _cvtsh_ss(load_u16(block + offset));
}

JINX_VNNI inline __m512i load_u8x32_pair(const uint8_t* a, const uint8_t* b) {
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// 16 consecutive rows (a GEMV group or a GEMM panel), for gathering per-block scales: byte
// offsets of the rows from the first (int32 gather indices), lanes past the matrix masked off.
struct GroupRows {
  const uint8_t* base;  // row g
  __m512i off;          // lane i: i * row_bytes
  __mmask16 mask;
  int64_t g;
};

// Rows [g, g + nr) of w, nr <= 16.
JINX_VNNI inline GroupRows group_rows(const WeightMatrix& w, int64_t g, int nr) {
  return {static_cast<const uint8_t*>(w.data) + static_cast<size_t>(g) * w.row_bytes,
          _mm512_mullo_epi32(
              _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
              _mm512_set1_epi32(static_cast<int32_t>(w.row_bytes))),
          nr >= 16 ? __mmask16(0xffff) : __mmask16((1u << nr) - 1), g};
}

// The decoders of rows [g, g + nr), made once per 16 rows (MLX's finds its first scale group).
template <class Dec>
struct RowDecoders {
  alignas(Dec) unsigned char mem[16 * sizeof(Dec)];
  RowDecoders(const WeightMatrix& w, int64_t g, int nr) {
    for (int i = 0; i < nr; ++i) new (mem + i * sizeof(Dec)) Dec(w, g + i);
  }
  const Dec& operator[](int i) const { return reinterpret_cast<const Dec*>(mem)[i]; }
};

// 32-bit words at byte `at` of each row of the group (0 in masked lanes).
JINX_VNNI inline __m512i gather_rows(const GroupRows& gr, size_t at) {
  return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), gr.mask,
                                     _mm512_add_epi32(gr.off, _mm512_set1_epi32(
                                                                  static_cast<int32_t>(at))),
                                     gr.base, 1);
}

// The f16 in the low / high half of each 32-bit lane.
JINX_VNNI inline __m512 f16_lo(__m512i v) { return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v)); }
JINX_VNNI inline __m512 f16_hi(__m512i v) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(v, 16)));
}

// 32 bytes of two 32-value blocks in Q4_0's nibble layout (block b: value i in the low nibble of
// byte 16b + i, value i + 16 in its high nibble) -> 64 values in order, one per byte.
JINX_VNNI_INLINE __m512i nibbles_pair(__m256i y) {
  // 128-bit blocks [b0, b0, b1, b1], the second copy of each shifted to its high nibbles.
  const __m512i z =
      _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(y));
  const __m512i sh = _mm512_setr_epi64(0, 0, 0x0004000400040004, 0x0004000400040004, 0, 0,
                                       0x0004000400040004, 0x0004000400040004);
  return _mm512_and_si512(_mm512_srlv_epi16(z, sh), _mm512_set1_epi8(0x0f));
}

// One such block (16 bytes) -> its 32 values.
JINX_VNNI_INLINE __m256i nibbles_half(__m128i q) {
  const __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
  return _mm256_and_si256(y, _mm256_set1_epi8(0x0f));
}

// Pair k of a k-quant super-block (chunks 2k and 2k + 1, value l of each at byte l of its
// half): adds v where bit 2k (first half) / 2k + 1 (second half) of bits[l] is set, with `bits`
// the 32 high-bit bytes broadcast to both halves (Q5_K's fifth bit, Q3_K's third).
JINX_VNNI_INLINE __m512i add_where_bit(__m512i z, __m512i bits, int k, char v) {
  const __m512i bit = _mm512_inserti64x4(_mm512_set1_epi8(static_cast<char>(1 << (2 * k))),
                                         _mm256_set1_epi8(static_cast<char>(1 << (2 * k + 1))), 1);
  return _mm512_mask_add_epi8(z, _mm512_test_epi8_mask(bits, bit), z, _mm512_set1_epi8(v));
}

// Q8_0: signed bytes made unsigned by flipping the top bit (u = q + 128), so the offset is
// -128 * d.
struct DecQ8_0 {
  static constexpr int kPairs = 1;
  static constexpr size_t kQs = offsetof(BlockQ8_0, qs);
  const uint8_t* row;
  DecQ8_0(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  // bytes_unit / bytes_half: u of a unit (or of the odd chunk's half pair); unit_scales: dw, ow
  // of a unit's blocks for 16 rows, rows in lanes.
  JINX_VNNI __m512i bytes(int64_t p) const {
    return _mm512_xor_si512(load_u8x32_pair(block_at<BlockQ8_0>(row, 2 * p) + kQs,
                                            block_at<BlockQ8_0>(row, 2 * p + 1) + kQs),
                            _mm512_set1_epi8(static_cast<char>(0x80)));
  }
  JINX_VNNI void bytes_unit(int64_t p, __m512i* b) const { b[0] = bytes(p); }
  JINX_VNNI __m512i bytes_half(int64_t c) const {
    const __m256i q =
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block_at<BlockQ8_0>(row, c) + kQs));
    return _mm512_zextsi256_si512(_mm256_xor_si256(q, _mm256_set1_epi8(static_cast<char>(0x80))));
  }
  // dw, ow of the unit's blocks (2, or 1 for the odd chunk's half pair) for the group's rows.
  JINX_VNNI static void unit_scales(const WeightMatrix&, const GroupRows& gr, int64_t p,
                                    bool half, __m512* dw, __m512* ow) {
    for (int c = 0; c < (half ? 1 : 2); ++c) {
      dw[c] = f16_lo(gather_rows(gr, (2 * p + c) * sizeof(BlockQ8_0)));
      ow[c] = _mm512_mul_ps(dw[c], _mm512_set1_ps(-128.0f));
    }
  }
};

// Q4_0 / Q4_1: value i in the low nibble of qs[i], value i + 16 in the high nibble.
template <bool kMin>
struct DecQ4 {
  using Block = std::conditional_t<kMin, BlockQ4_1, BlockQ4_0>;
  static constexpr int kPairs = 1;
  static constexpr size_t kQs = offsetof(Block, qs);
  const uint8_t* row;
  DecQ4(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_VNNI __m512i bytes(int64_t p) const {
    const __m256i y = _mm256_inserti128_si256(
        _mm256_castsi128_si256(
            _mm_loadu_si128(reinterpret_cast<const __m128i*>(block_at<Block>(row, 2 * p) + kQs))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(block_at<Block>(row, 2 * p + 1) + kQs)),
        1);
    return nibbles_pair(y);
  }
  JINX_VNNI void bytes_unit(int64_t p, __m512i* b) const { b[0] = bytes(p); }
  JINX_VNNI __m512i bytes_half(int64_t c) const {
    return _mm512_zextsi256_si512(nibbles_half(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(block_at<Block>(row, c) + kQs))));
  }
  // A block's first 4 bytes: d, then m (Q4_1) or 2 bytes of qs (Q4_0).
  JINX_VNNI static void unit_scales(const WeightMatrix&, const GroupRows& gr, int64_t p,
                                    bool half, __m512* dw, __m512* ow) {
    for (int c = 0; c < (half ? 1 : 2); ++c) {
      const __m512i heads = gather_rows(gr, (2 * p + c) * sizeof(Block));
      dw[c] = f16_lo(heads);
      if constexpr (kMin)
        ow[c] = f16_hi(heads);
      else
        ow[c] = _mm512_mul_ps(dw[c], _mm512_set1_ps(-8.0f));
    }
  }
};

// Q5_0 / Q5_1: Q4_0's nibble layout plus bit i of qh (a little-endian uint32) as bit 4 of value
// i; Q5_0 centres the values (w = d * (u - 16)), Q5_1 adds its min (w = d * u + m).
template <bool kMin>
struct DecQ5 {
  using Block = std::conditional_t<kMin, BlockQ5_1, BlockQ5_0>;
  static constexpr int kPairs = 1;
  static constexpr size_t kQs = offsetof(Block, qs);
  const uint8_t* row;
  DecQ5(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  static uint32_t qh(const uint8_t* b) {
    uint32_t h;
    std::memcpy(&h, b + offsetof(Block, qh), 4);
    return h;
  }
  JINX_VNNI __m512i bytes(int64_t p) const {
    const uint8_t* b0 = block_at<Block>(row, 2 * p);
    const uint8_t* b1 = block_at<Block>(row, 2 * p + 1);
    const __m256i y = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b0 + kQs))),
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(b1 + kQs)), 1);
    const __m512i u = nibbles_pair(y);
    const __mmask64 high = static_cast<__mmask64>(qh(b0)) | (static_cast<__mmask64>(qh(b1)) << 32);
    return _mm512_mask_add_epi8(u, high, u, _mm512_set1_epi8(16));
  }
  JINX_VNNI void bytes_unit(int64_t p, __m512i* b) const { b[0] = bytes(p); }
  JINX_VNNI __m512i bytes_half(int64_t c) const {
    const uint8_t* b = block_at<Block>(row, c);
    const __m256i y = nibbles_half(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + kQs)));
    const __m256i v = _mm256_mask_add_epi8(y, qh(b), y, _mm256_set1_epi8(16));
    return _mm512_zextsi256_si512(v);
  }
  // A block's first 4 bytes: d, then m (Q5_1) or 2 bytes of qh (Q5_0).
  JINX_VNNI static void unit_scales(const WeightMatrix&, const GroupRows& gr, int64_t p,
                                    bool half, __m512* dw, __m512* ow) {
    for (int c = 0; c < (half ? 1 : 2); ++c) {
      const __m512i heads = gather_rows(gr, (2 * p + c) * sizeof(Block));
      dw[c] = f16_lo(heads);
      if constexpr (kMin)
        ow[c] = f16_hi(heads);
      else
        ow[c] = _mm512_mul_ps(dw[c], _mm512_set1_ps(-16.0f));
    }
  }
};

// IQ4_NL's 16 table values shifted to unsigned bytes (+128), in every 128-bit lane, for
// vpshufb; the offset -128 * d moves them back.
JINX_VNNI inline __m512i iq4nl_table() {
  return _mm512_broadcast_i32x4(_mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129,
                                              (char)141, (char)153, (char)166, (char)181,
                                              (char)197, (char)217, (char)241));
}
static_assert(kIq4nlValues[0] + 128 == 1 && kIq4nlValues[15] + 128 == 241);

// IQ4_NL: Q4_0's nibbles as indices into the table.
struct DecIQ4NL {
  static constexpr int kPairs = 1;
  static constexpr size_t kQs = offsetof(BlockIQ4_NL, qs);
  const uint8_t* row;
  DecIQ4NL(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_VNNI void bytes_unit(int64_t p, __m512i* b) const {
    const __m256i y = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(
            reinterpret_cast<const __m128i*>(block_at<BlockIQ4_NL>(row, 2 * p) + kQs))),
        _mm_loadu_si128(
            reinterpret_cast<const __m128i*>(block_at<BlockIQ4_NL>(row, 2 * p + 1) + kQs)),
        1);
    b[0] = _mm512_shuffle_epi8(iq4nl_table(), nibbles_pair(y));
  }
  JINX_VNNI __m512i bytes_half(int64_t c) const {
    const __m256i y = nibbles_half(_mm_loadu_si128(
        reinterpret_cast<const __m128i*>(block_at<BlockIQ4_NL>(row, c) + kQs)));
    return _mm512_zextsi256_si512(
        _mm256_shuffle_epi8(_mm512_castsi512_si256(iq4nl_table()), y));
  }
  JINX_VNNI static void unit_scales(const WeightMatrix&, const GroupRows& gr, int64_t p,
                                    bool half, __m512* dw, __m512* ow) {
    for (int c = 0; c < (half ? 1 : 2); ++c) {
      dw[c] = f16_lo(gather_rows(gr, (2 * p + c) * sizeof(BlockIQ4_NL)));
      ow[c] = _mm512_mul_ps(dw[c], _mm512_set1_ps(-128.0f));
    }
  }
};

// MXFP4's 16 grid values shifted to unsigned bytes by +12 (not IQ4_NL's +128: the offset
// -12 * dw stays the size of the weights), in every 128-bit lane, for vpshufb.
JINX_VNNI inline __m512i mxfp4_table() {
  return _mm512_broadcast_i32x4(
      _mm_setr_epi8(12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0));
}
static_assert(kMxfp4Values[7] + 12 == 24 && kMxfp4Values[15] + 12 == 0);

// MXFP4: IQ4_NL's layout with the E2M1 grid; the scale 2^(e - 128) from the block's first byte
// e, built bit for bit as e8m0_to_f32_half does (denormal for e < 2).
struct DecMXFP4 {
  static constexpr int kPairs = 1;
  static constexpr size_t kQs = offsetof(BlockMXFP4, qs);
  const uint8_t* row;
  DecMXFP4(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_VNNI void bytes_unit(int64_t p, __m512i* b) const {
    const __m256i y = _mm256_inserti128_si256(
        _mm256_castsi128_si256(_mm_loadu_si128(
            reinterpret_cast<const __m128i*>(block_at<BlockMXFP4>(row, 2 * p) + kQs))),
        _mm_loadu_si128(
            reinterpret_cast<const __m128i*>(block_at<BlockMXFP4>(row, 2 * p + 1) + kQs)),
        1);
    b[0] = _mm512_shuffle_epi8(mxfp4_table(), nibbles_pair(y));
  }
  JINX_VNNI __m512i bytes_half(int64_t c) const {
    const __m256i y = nibbles_half(_mm_loadu_si128(
        reinterpret_cast<const __m128i*>(block_at<BlockMXFP4>(row, c) + kQs)));
    return _mm512_zextsi256_si512(
        _mm256_shuffle_epi8(_mm512_castsi512_si256(mxfp4_table()), y));
  }
  // The 4 bytes from e (e and qs[0..2], all in the block) per row.
  JINX_VNNI static void unit_scales(const WeightMatrix&, const GroupRows& gr, int64_t p,
                                    bool half, __m512* dw, __m512* ow) {
    for (int c = 0; c < (half ? 1 : 2); ++c) {
      const __m512i e = _mm512_and_si512(gather_rows(gr, (2 * p + c) * sizeof(BlockMXFP4)),
                                         _mm512_set1_epi32(0xff));
      const __m512i normal = _mm512_slli_epi32(_mm512_sub_epi32(e, _mm512_set1_epi32(1)), 23);
      const __m512i denormal = _mm512_sllv_epi32(_mm512_set1_epi32(0x00200000), e);
      dw[c] = _mm512_castsi512_ps(_mm512_mask_blend_epi32(
          _mm512_cmpge_epu32_mask(e, _mm512_set1_epi32(2)), denormal, normal));
      ow[c] = _mm512_mul_ps(dw[c], _mm512_set1_ps(-12.0f));
    }
  }
};

// IQ4_XS: a 256-value super-block is 4 pairs; pair k = sub-blocks 2k and 2k + 1, each 16 bytes
// of qs in IQ4_NL's layout, each with its 6-bit scale (w = d * (ls - 32) * table[q]).
struct DecIQ4XS {
  static constexpr int kPairs = 4;
  const uint8_t* row;
  DecIQ4XS(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_VNNI void bytes_unit(int64_t s, __m512i* b) const {
    const uint8_t* qs = block_at<BlockIQ4_XS>(row, s) + offsetof(BlockIQ4_XS, qs);
    const __m512i table = iq4nl_table();
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k)
      b[k] = _mm512_shuffle_epi8(
          table, nibbles_pair(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * k))));
  }
  __m512i bytes_half(int64_t) const { return _mm512_setzero_si512(); }  // never called
  JINX_VNNI static void unit_scales(const WeightMatrix&, const GroupRows& gr, int64_t s, bool,
                                    __m512* dw, __m512* ow) {
    const size_t at = static_cast<size_t>(s) * sizeof(BlockIQ4_XS);
    const __m512i head = gather_rows(gr, at);  // d, scales_h
    const __m512i sl = gather_rows(gr, at + offsetof(BlockIQ4_XS, scales_l));
    const __m512 d = f16_lo(head);
    const __m512i sh = _mm512_srli_epi32(head, 16);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m512i ls = _mm512_or_si512(
          _mm512_and_si512(_mm512_srli_epi32(sl, 4 * j), _mm512_set1_epi32(0x0f)),
          _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(sh, 2 * j), _mm512_set1_epi32(3)),
                            4));
      dw[j] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(ls, _mm512_set1_epi32(32))), d);
      ow[j] = _mm512_mul_ps(dw[j], _mm512_set1_ps(-128.0f));
    }
  }
};

// Q4_K / Q5_K: a 256-value super-block is 4 pairs. Pair k = sub-blocks 2k and 2k + 1, the low
// and high nibbles of qs[32k .. 32k + 31]; Q5_K adds bit 2k / 2k + 1 of qh[l] as bit 4.
template <bool kFive>
struct DecQ45K {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  static constexpr int kPairs = 4;
  const uint8_t* row;
  DecQ45K(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_VNNI void bytes_unit(int64_t s, __m512i* b) const {
    const uint8_t* x = block_at<Block>(row, s);
    __m512i qh;
    if constexpr (kFive)
      qh = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + offsetof(BlockQ5_K, qh))));
    const uint8_t* qs = x + offsetof(Block, qs);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * k));
      __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(y), _mm256_srli_epi16(y, 4), 1);
      z = _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
      if constexpr (kFive) z = add_where_bit(z, qh, k, 16);
      b[k] = z;
    }
  }
  __m512i bytes_half(int64_t) const { return _mm512_setzero_si512(); }  // never called
  // Sub-block j of super-block s: dw = d * sc_j, ow = -dmin * m_j, the 6-bit sc / m unpacked as
  // ggml's get_scale_min_k4, four lanes at a time.
  JINX_VNNI static void unit_scales(const WeightMatrix&, const GroupRows& gr, int64_t s, bool,
                                    __m512* dw, __m512* ow) {
    const size_t at = static_cast<size_t>(s) * sizeof(Block);
    const __m512i dd = gather_rows(gr, at + offsetof(Block, d));  // d, dmin
    const __m512 d = f16_lo(dd), ndmin = _mm512_xor_ps(f16_hi(dd), _mm512_set1_ps(-0.0f));
    const __m512i u0 = gather_rows(gr, at + offsetof(Block, scales));
    const __m512i u1 = gather_rows(gr, at + offsetof(Block, scales) + 4);
    const __m512i u2 = gather_rows(gr, at + offsetof(Block, scales) + 8);
    const __m512i m6 = _mm512_set1_epi32(0x3f), m4 = _mm512_set1_epi32(0x0f),
                  m2 = _mm512_set1_epi32(0x03);
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) {
      const __m512i sc = _mm512_and_si512(_mm512_srli_epi32(u0, 8 * j), m6);
      const __m512i mn = _mm512_and_si512(_mm512_srli_epi32(u1, 8 * j), m6);
      const __m512i sc_hi = _mm512_or_si512(
          _mm512_and_si512(_mm512_srli_epi32(u2, 8 * j), m4),
          _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u0, 8 * j + 6), m2), 4));
      const __m512i mn_hi = _mm512_or_si512(
          _mm512_and_si512(_mm512_srli_epi32(u2, 8 * j + 4), m4),
          _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(u1, 8 * j + 6), m2), 4));
      dw[j] = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), d);
      ow[j] = _mm512_mul_ps(_mm512_cvtepi32_ps(mn), ndmin);
      dw[4 + j] = _mm512_mul_ps(_mm512_cvtepi32_ps(sc_hi), d);
      ow[4 + j] = _mm512_mul_ps(_mm512_cvtepi32_ps(mn_hi), ndmin);
    }
  }
};

// Q6_K: pairs 2h, 2h + 1 of a super-block come from ql[64h .. 64h + 63] (low, then high
// nibbles) and qh[32h .. 32h + 31] (bits 0-1 / 2-3, then 4-5 / 6-7); w = d * sc * (u - 32)
// with a scale per 16 values.
struct DecQ6K {
  static constexpr int kPairs = 4;
  static constexpr bool kHalfScales = true;
  const uint8_t* row;
  DecQ6K(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_VNNI void bytes_unit(int64_t s, __m512i* b) const {
    const uint8_t* x = block_at<BlockQ6_K>(row, s);
    const uint8_t* qls = x + offsetof(BlockQ6_K, ql);
    const uint8_t* qhs = x + offsetof(BlockQ6_K, qh);
    const __m512i lo4 = _mm512_set1_epi8(0x0f), hi2 = _mm512_set1_epi8(0x30);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(qls + 64 * h);
      const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qhs + 32 * h));
      const __m512i qhz =
          _mm512_inserti64x4(_mm512_castsi256_si512(qh), _mm256_srli_epi16(qh, 2), 1);
      b[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, lo4),
                                 _mm512_and_si512(_mm512_slli_epi16(qhz, 4), hi2));
      b[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), lo4),
                                     _mm512_and_si512(qhz, hi2));
    }
  }
  __m512i bytes_half(int64_t) const { return _mm512_setzero_si512(); }  // never called
  // Scale j (16 values) of super-block s: dw = d * scales[j], ow = -32 * dw; pair k's chunk j
  // (4 values) takes scale 4k + j.
  JINX_VNNI static void unit_scales(const WeightMatrix&, const GroupRows& gr, int64_t s, bool,
                                    __m512* dw, __m512* ow) {
    const size_t at = static_cast<size_t>(s) * sizeof(BlockQ6_K);
    // d is the block's last 2 bytes: read the word that ends with it.
    const __m512 d = f16_hi(gather_rows(gr, at + offsetof(BlockQ6_K, d) - 2));
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      const __m512i w4 = gather_rows(gr, at + offsetof(BlockQ6_K, scales) + 4 * q);
      for (int e = 0; e < 4; ++e) {
        const __m512i sc = _mm512_srai_epi32(_mm512_slli_epi32(w4, 24 - 8 * e), 24);
        dw[4 * q + e] = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), d);
        ow[4 * q + e] = _mm512_mul_ps(dw[4 * q + e], _mm512_set1_ps(-32.0f));
      }
    }
  }
};

// Q2_K / Q3_K: pair k of a super-block = chunks 2k and 2k + 1, bits 4(k % 2) and 4(k % 2) + 2 of
// qs[32(k / 2) .. + 31]; Q3_K adds bit 2k / 2k + 1 of hmask[l] as bit 2. A scale per 16 values:
// Q2_K's w = d * (sc & 15) * u - dmin * (sc >> 4), Q3_K's w = d * (sc - 32) * (u - 4).
template <bool kThree>
struct DecQ23K {
  using Block = std::conditional_t<kThree, BlockQ3_K, BlockQ2_K>;
  static constexpr int kPairs = 4;
  static constexpr bool kHalfScales = true;
  const uint8_t* row;
  DecQ23K(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_VNNI void bytes_unit(int64_t s, __m512i* b) const {
    const uint8_t* x = block_at<Block>(row, s);
    const uint8_t* qs = x + offsetof(Block, qs);
    __m512i hm;
    if constexpr (kThree)
      hm = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + offsetof(BlockQ3_K, hmask))));
    const __m512i m2 = _mm512_set1_epi8(3);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * (k / 2)));
      const int sh = 4 * (k % 2);
      __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_srli_epi16(y, sh)),
                                     _mm256_srli_epi16(y, sh + 2), 1);
      z = _mm512_and_si512(z, m2);
      if constexpr (kThree) z = add_where_bit(z, hm, k, 4);
      b[k] = z;
    }
  }
  __m512i bytes_half(int64_t) const { return _mm512_setzero_si512(); }  // never called
  // Scale i (16 values) of super-block s in dw[i] / ow[i] (pair k's chunk c, half h: 4k + 2c + h).
  JINX_VNNI static void unit_scales(const WeightMatrix&, const GroupRows& gr, int64_t s, bool,
                                    __m512* dw, __m512* ow) {
    const size_t at = static_cast<size_t>(s) * sizeof(Block);
    const __m512i m4 = _mm512_set1_epi32(0x0f), m2 = _mm512_set1_epi32(0x03);
    if constexpr (kThree) {
      // d is the block's last 2 bytes: read the word that ends with it.
      const __m512 d = f16_hi(gather_rows(gr, at + offsetof(BlockQ3_K, d) - 2));
      const __m512i w[3] = {gather_rows(gr, at + offsetof(BlockQ3_K, scales)),
                            gather_rows(gr, at + offsetof(BlockQ3_K, scales) + 4),
                            gather_rows(gr, at + offsetof(BlockQ3_K, scales) + 8)};
#pragma GCC unroll 16
      for (int i = 0; i < 16; ++i) {
        const __m512i lo = _mm512_and_si512(
            _mm512_srli_epi32(w[(i % 8) / 4], 8 * (i % 4) + 4 * (i / 8)), m4);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(w[2], 8 * (i % 4) + 2 * (i / 4)), m2);
        const __m512i sc =
            _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), _mm512_set1_epi32(32));
        dw[i] = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), d);
        ow[i] = _mm512_mul_ps(dw[i], _mm512_set1_ps(-4.0f));
      }
    } else {
      const __m512i dd = gather_rows(gr, at + offsetof(BlockQ2_K, d));  // d, dmin
      const __m512 d = f16_lo(dd), ndmin = _mm512_xor_ps(f16_hi(dd), _mm512_set1_ps(-0.0f));
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        const __m512i w4 = gather_rows(gr, at + offsetof(BlockQ2_K, scales) + 4 * q);
        for (int e = 0; e < 4; ++e) {
          const __m512i sc = _mm512_srli_epi32(w4, 8 * e);
          dw[4 * q + e] = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(sc, m4)), d);
          ow[4 * q + e] = _mm512_mul_ps(
              _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(sc, 4), m4)), ndmin);
        }
      }
    }
  }
};

// MLX affine 4 / 8 bit: w = scale * u + bias per group. 4-bit: byte i holds values 2i (low
// nibble) and 2i + 1 (high nibble); widening each byte to 16 bits and moving the high nibble
// to the next byte puts them in order.
template <int kBits>
struct DecMlx {
  static constexpr int kPairs = 1;
  const uint8_t* q;
  const uint8_t* scales;
  const uint8_t* biases;
  DType st;
  int64_t g0;       // first group of the row
  int group_shift;  // chunk -> group: c >> group_shift
  int sbytes;
  DecMlx(const WeightMatrix& w, int64_t r)
      : q(row_ptr(w, r)),
        scales(static_cast<const uint8_t*>(w.mlx.scales)),
        biases(static_cast<const uint8_t*>(w.mlx.biases)),
        st(w.mlx.scale_dtype),
        g0(r * (w.cols / w.mlx.group_size)),
        group_shift(w.mlx.group_size == 32   ? 0
                    : w.mlx.group_size == 64 ? 1
                                             : 2),
        sbytes(st == DType::F32 ? 4 : 2) {}
  JINX_VNNI float load(const uint8_t* base, int64_t g) const {
    if (st == DType::F32) {
      float f;
      std::memcpy(&f, base + 4 * g, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, base + 2 * g, 2);
    if (st == DType::F16) return _cvtsh_ss(h);
    const uint32_t u = static_cast<uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  JINX_VNNI static __m256i nib32(__m128i v) {  // 16 packed bytes -> 32 values in order
    const __m256i w = _mm256_cvtepu8_epi16(v);
    return _mm256_or_si256(_mm256_and_si256(w, _mm256_set1_epi16(0x000f)),
                           _mm256_slli_epi16(_mm256_and_si256(w, _mm256_set1_epi16(0x00f0)), 4));
  }
  JINX_VNNI void bytes_unit(int64_t p, __m512i* b) const {
    if constexpr (kBits == 8) {
      b[0] = _mm512_loadu_si512(q + 64 * p);
    } else {
      const __m256i y = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * p));
      const __m512i w = _mm512_cvtepu8_epi16(y);
      b[0] = _mm512_or_si512(_mm512_and_si512(w, _mm512_set1_epi16(0x000f)),
                             _mm512_slli_epi16(_mm512_and_si512(w, _mm512_set1_epi16(0x00f0)), 4));
    }
  }
  JINX_VNNI __m512i bytes_half(int64_t c) const {
    __m256i b;
    if constexpr (kBits == 8)
      b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * c));
    else
      b = nib32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * c)));
    return _mm512_zextsi256_si512(b);
  }
  // Group `grp` of the group's 16 rows from a scales / biases array (lanes past the matrix 0).
  JINX_VNNI static __m512 gather_param(const void* arr, DType st, const GroupRows& gr,
                                       int64_t ng, int64_t grp) {
    const __m512i e = _mm512_add_epi32(
        _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                           _mm512_set1_epi32(static_cast<int32_t>(ng))),
        _mm512_set1_epi32(static_cast<int32_t>(grp)));  // elements from row g's first
    const int64_t e0 = gr.g * ng;
    if (st == DType::F32)
      return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), gr.mask, e,
                                      static_cast<const float*>(arr) + e0, 4);
    // 16-bit values: the 32-bit word that ends with each (the array's first element, which has
    // no word before it, from the word it starts).
    const uint8_t* base = static_cast<const uint8_t*>(arr) + 2 * e0;
    const bool first = e0 + grp == 0;
    __m512i at = _mm512_sub_epi32(_mm512_slli_epi32(e, 1), _mm512_set1_epi32(2));
    if (first) at = _mm512_mask_mov_epi32(at, 1, _mm512_setzero_si512());
    const __m512i raw = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), gr.mask, at, base, 1);
    __m512i h = _mm512_srli_epi32(raw, 16);
    if (first) h = _mm512_mask_mov_epi32(h, 1, _mm512_and_si512(raw, _mm512_set1_epi32(0xffff)));
    if (st == DType::F16) return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(h));
    return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));  // BF16
  }
  JINX_VNNI static void unit_scales(const WeightMatrix& w, const GroupRows& gr, int64_t p,
                                    bool half, __m512* dw, __m512* ow) {
    const int64_t ng = w.cols / w.mlx.group_size;
    const int shift = w.mlx.group_size == 32 ? 0 : w.mlx.group_size == 64 ? 1 : 2;
    for (int c = 0; c < (half ? 1 : 2); ++c) {
      const int64_t grp = (2 * p + c) >> shift;
      if (c == 1 && grp == ((2 * p) >> shift)) {  // one group for the pair
        dw[1] = dw[0];
        ow[1] = ow[0];
        break;
      }
      dw[c] = gather_param(w.mlx.scales, w.mlx.scale_dtype, gr, ng, grp);
      ow[c] = gather_param(w.mlx.biases, w.mlx.scale_dtype, gr, ng, grp);
    }
  }
};

// Formats whose scales change every 16 values (Q6_K, Q2_K, Q3_K): their blocks take two integer
// sums.
template <class Dec>
constexpr bool kScalesPer16 = requires { requires Dec::kHalfScales; };

// ---- GEMV: up to four tokens straight off the stored rows, in the panel GEMM's arithmetic ----
//
// Batch invariance: a token's outputs must not depend on how many tokens share the call (the
// engine's seeded sampling repeats only if a request's logits are the same alone, batched, or
// after a prefix-cache hit leaves a few prompt tokens to compute). So the GEMV does exactly the
// float work of panel_tile below, per row: for each 32-value block in order, the block's integer
// dot product (exact, so summed in any order), then acc = fma(float(dot), dw * d, acc) and
// acc = fma(ow, s, acc) (two of each per block for Q6_K's 16-value scales).
//
// 16 rows at a time, rows in lanes: each row's unit is decoded in registers (no panel is
// written) and multiplied by vpdpbusd into 16 int32 lanes (4 values each); a transpose-add tree
// over the 16 rows' vectors gives the 4-lane chunk sums with rows in lanes (2.75 integer
// instructions per row and pair), the scales come gathered with rows in lanes, and the float
// work runs once per 16 rows. (Transposing per-row scale vectors instead cost 10-20%; summing
// 4-value lanes in fp32, the GEMV before, was not batch-invariant.)

constexpr int kGroupRows = 16;

// f[q] holds, in 128-bit chunk j, one value for each of rows 4q .. 4q + 3. out[j]: lane i = the
// value of row i in chunk j.
JINX_VNNI_INLINE void gather_chunks(const __m512i* f, __m512i* out) {
  const __m512i a = _mm512_shuffle_i32x4(f[0], f[1], _MM_SHUFFLE(1, 0, 1, 0));
  const __m512i b = _mm512_shuffle_i32x4(f[0], f[1], _MM_SHUFFLE(3, 2, 3, 2));
  const __m512i c = _mm512_shuffle_i32x4(f[2], f[3], _MM_SHUFFLE(1, 0, 1, 0));
  const __m512i d = _mm512_shuffle_i32x4(f[2], f[3], _MM_SHUFFLE(3, 2, 3, 2));
  out[0] = _mm512_shuffle_i32x4(a, c, _MM_SHUFFLE(2, 0, 2, 0));
  out[1] = _mm512_shuffle_i32x4(a, c, _MM_SHUFFLE(3, 1, 3, 1));
  out[2] = _mm512_shuffle_i32x4(b, d, _MM_SHUFFLE(2, 0, 2, 0));
  out[3] = _mm512_shuffle_i32x4(b, d, _MM_SHUFFLE(3, 1, 3, 1));
}

// v: 16 rows' int32 lane vectors. out[j] lane i = sum of lanes 4j .. 4j + 3 of v[i].
JINX_VNNI_INLINE void chunk_sums(const __m512i* v, __m512i* out) {
  __m512i e[8], f[4];
  for (int i = 0; i < 8; ++i)  // [a0 + a2, b0 + b2, a1 + a3, b1 + b3] per chunk
    e[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]),
                            _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
  for (int q = 0; q < 4; ++q)  // [a, b, c, d] per chunk
    f[q] = _mm512_add_epi32(_mm512_unpacklo_epi64(e[2 * q], e[2 * q + 1]),
                            _mm512_unpackhi_epi64(e[2 * q], e[2 * q + 1]));
  gather_chunks(f, out);
}

// acc += float(dot) * (dw * d) + ow * s, with d and s one token's scalars (panel_tile's order).
JINX_VNNI_INLINE __m512 block_step(__m512i dot, __m512 dw, __m512 ow, float d, float s,
                                   __m512 acc) {
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_mul_ps(dw, _mm512_set1_ps(d)), acc);
  return _mm512_fmadd_ps(ow, _mm512_set1_ps(s), acc);
}

// Scratch of one group: per pair of a unit, each row's dot products per token.
template <int KP, int NX>
struct alignas(64) GroupScratch {
  __m512i dots[KP][NX][kGroupRows];
};

// Software prefetch distance of the GEMV, in the order it reads: the weights stream from DRAM
// once per token, and 16 interleaved row streams are more than the hardware prefetcher follows
// (4 KiB measured best of 2-16 KiB on this VM).
constexpr size_t kGroupPrefetchBytes = 4096;

template <class Dec, int NX>
JINX_VNNI void gemv_group(const WeightMatrix& w, int64_t g, int nr, int next_rows,
                          const QuantActs& a, float* y, int64_t ldy,
                          GroupScratch<Dec::kPairs, NX>& sc) {
  constexpr int KP = Dec::kPairs;
  constexpr bool kHalf = kScalesPer16<Dec>;  // scales per 16 values
  const int64_t n_chunks = w.cols / kActBlock, full = n_chunks / 2, units = full / KP;
  const bool tail = KP == 1 && n_chunks % 2;
  const int64_t steps = units + (tail ? 1 : 0);  // units, then the odd chunk's half pair
  const GroupRows gr = group_rows(w, g, nr);
  const RowDecoders<Dec> decs(w, g, nr);
  const int8_t* xq[NX];
  const float *xd[NX], *xs[NX];
  for (int t = 0; t < NX; ++t) {
    xq[t] = a.q_row(t);
    xd[t] = a.db_row(t);
    xs[t] = kHalf ? a.sh_row(t) : a.sb_row(t);
  }
  __m512 acc[NX];
  for (int t = 0; t < NX; ++t) acc[t] = _mm512_setzero_ps();
  // Each step reads one unit of every row; prefetch the bytes `ahead` steps on (in the next
  // group's rows once past the end of these).
  const size_t step_bytes = std::max<size_t>(1, w.row_bytes / static_cast<size_t>(steps));
  const int64_t ahead = std::max<int64_t>(
      1, static_cast<int64_t>(kGroupPrefetchBytes / (kGroupRows * step_bytes)));
  for (int64_t u = 0; u < steps; ++u) {
    {
      const int64_t v = u + ahead;
      const bool here = v < steps;
      const int rows = here ? nr : next_rows;
      const uint8_t* base = row_ptr(w, here ? g : g + nr);
      const size_t off = static_cast<size_t>(here ? v : v - steps) * step_bytes;
      if (off < w.row_bytes) {
        const size_t len = std::min(step_bytes, w.row_bytes - off);
        for (int i = 0; i < rows; ++i) {  // every line of the row's unit
          const uintptr_t at = reinterpret_cast<uintptr_t>(base + i * w.row_bytes + off);
          for (uintptr_t q = at & ~uintptr_t{63}; q < at + len; q += 64)
            _mm_prefetch(reinterpret_cast<const char*>(q), _MM_HINT_T0);
        }
      }
    }
    if (next_rows > 0) {  // the next group's rows (adjacent in memory), a slice per step, to L2
      const uint8_t* nb = row_ptr(w, g + nr);
      const size_t total = static_cast<size_t>(next_rows) * w.row_bytes;
      const size_t per = (total / static_cast<size_t>(steps) + 64) & ~size_t{63};
      const size_t end = std::min(total, (static_cast<size_t>(u) + 1) * per);
      for (size_t q = static_cast<size_t>(u) * per; q < end; q += 64)
        _mm_prefetch(reinterpret_cast<const char*>(nb + q), _MM_HINT_T1);
    }
    const bool half_pair = u == units;
    for (int i = 0; i < nr; ++i) {
      __m512i b[KP];
      if (half_pair)
        b[0] = decs[i].bytes_half(n_chunks - 1);
      else
        decs[i].bytes_unit(u, b);
      for (int k = 0; k < (half_pair ? 1 : KP); ++k)
        for (int t = 0; t < NX; ++t)
          sc.dots[k][t][i] =
              _mm512_dpbusd_epi32(_mm512_setzero_si512(), b[k],
                                  _mm512_loadu_si512(xq[t] + (u * KP + k) * kActPair));
    }
    // The unit's scales, rows in lanes: per block (per 16 values for Q6_K), gathered from the
    // 16 rows' block headers (no per-row scale vectors to transpose).
    constexpr int kPer = kHalf ? 4 : 2;
    __m512 udw[KP * kPer], uow[KP * kPer];
    Dec::unit_scales(w, gr, u, half_pair, udw, uow);
    for (int k = 0; k < (half_pair ? 1 : KP); ++k) {
      const int64_t pair = u * KP + k;
      const __m512* dw = udw + kPer * k;  // [c] (or [2c + h] for Q6_K)
      const __m512* ow = uow + kPer * k;
      const int nb = half_pair ? 1 : 2;
      for (int t = 0; t < NX; ++t) {
        __m512i s[4];
        chunk_sums(sc.dots[k][t], s);
        for (int c = 0; c < nb; ++c) {
          const int64_t blk = 2 * pair + c;
          if constexpr (kHalf) {
            acc[t] = block_step(s[2 * c], dw[2 * c], ow[2 * c], xd[t][blk], xs[t][2 * blk], acc[t]);
            acc[t] = block_step(s[2 * c + 1], dw[2 * c + 1], ow[2 * c + 1], xd[t][blk],
                                xs[t][2 * blk + 1], acc[t]);
          } else {
            acc[t] = block_step(_mm512_add_epi32(s[2 * c], s[2 * c + 1]), dw[c], ow[c], xd[t][blk],
                                xs[t][blk], acc[t]);
          }
        }
      }
    }
  }
  const __mmask16 m = nr >= kGroupRows ? __mmask16(0xffff) : __mmask16((1u << nr) - 1);
  for (int t = 0; t < NX; ++t) _mm512_mask_storeu_ps(y + t * ldy + g, m, acc[t]);
}

template <class Dec, int NX>
JINX_VNNI void gemv_nx(const WeightMatrix& w, int64_t r0, int64_t r1, const QuantActs& a, float* y,
                       int64_t ldy) {
  // Scales are gathered with int32 byte offsets over 16 rows.
  JINX_CHECK(w.row_bytes <= INT32_MAX / (2 * kGroupRows), "gemv: rows of ", w.row_bytes,
             " bytes are too long");
  // Lanes of rows past a short last group compute on stale scratch and are never stored.
  thread_local GroupScratch<Dec::kPairs, NX> sc;
  for (int64_t g = r0; g < r1; g += kGroupRows) {
    const int nr = static_cast<int>(std::min<int64_t>(kGroupRows, r1 - g));
    gemv_group<Dec, NX>(w, g, nr, static_cast<int>(std::min<int64_t>(kGroupRows, r1 - g - nr)),
                        a, y, ldy, sc);
  }
}

template <class Dec>
void gemv(const WeightMatrix& w, int64_t r0, int64_t r1, const QuantActs& a, float* y,
          int64_t ldy) {
  switch (a.n_tokens) {
    case 1:
      return gemv_nx<Dec, 1>(w, r0, r1, a, y, ldy);
    case 2:
      return gemv_nx<Dec, 2>(w, r0, r1, a, y, ldy);
    case 3:
      return gemv_nx<Dec, 3>(w, r0, r1, a, y, ldy);
    case 4:
      return gemv_nx<Dec, 4>(w, r0, r1, a, y, ldy);
    default:
      return;
  }
}

// ---- GEMM on row panels: the integer dot of a whole 32-value block first ----
//
// For formats with one scale and one offset per 32 values (all but Q6_K, whose scales change
// every 16), 16 rows are decoded once into a panel where, per block, byte group g (values
// 4g .. 4g + 3) of all 16 rows sits in one 64-byte vector. One vpdpbusd then takes 4 values of
// 16 rows against 4 activation bytes of a token broadcast from memory; 8 of them sum a block in
// int32, and only then does the block pay its float work (convert, scale, offset): 8 integer
// instructions and 4 float ones per 512 multiply-adds. Rows are the 16 lanes, so the results
// store straight to y.

constexpr int kPanelRows = 16, kPanelTokens = 8;

struct alignas(64) PanelBlock {
  uint8_t b[8][kPanelRows][4];  // [byte group][row][4 values]
  // w = dw * u + ow for the row's values 0-15 ([0]) and 16-31 ([1]); the same twice for the
  // formats with one scale per 32 values.
  float dw[2][kPanelRows];
  float ow[2][kPanelRows];
};


// 16 x 16 int32 transpose in place: v[i] lane j -> v[j] lane i.
JINX_VNNI_INLINE void transpose16(__m512i* v) {
  __m512i t[16], u[16];
  for (int i = 0; i < 8; ++i) {  // per 128 bits: [a0 b0 a1 b1], [a2 b2 a3 b3]
    t[2 * i] = _mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {  // u[4i + e], 128-bit chunk k: lane 4k + e of rows 4i .. 4i + 3
    u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
    u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
    u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
  }
  for (int e = 0; e < 4; ++e) {
    const __m512i y0 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x88);
    const __m512i y1 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xdd);
    const __m512i y2 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x88);
    const __m512i y3 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xdd);
    v[e] = _mm512_shuffle_i32x4(y0, y2, 0x88);
    v[8 + e] = _mm512_shuffle_i32x4(y0, y2, 0xdd);
    v[4 + e] = _mm512_shuffle_i32x4(y1, y3, 0x88);
    v[12 + e] = _mm512_shuffle_i32x4(y1, y3, 0xdd);
  }
}

// Rows [r0, r0 + nr) of w (nr <= 16) into n_blocks panel blocks; missing rows are zero. A unit
// of each row is decoded to bytes (the GEMV's interface), the 16 rows' vectors transposed (int32
// lane l of a pair is byte group l % 8 of its block l / 8: the panel's [group][row] layout), and
// the scales gathered from the block headers with rows in lanes.
template <class Dec>
JINX_VNNI void decode_panel(const WeightMatrix& w, int64_t r0, int nr, int64_t n_blocks,
                            PanelBlock* out) {
  constexpr int KP = Dec::kPairs;
  constexpr bool kHalf = kScalesPer16<Dec>;
  constexpr int kPer = kHalf ? 4 : 2;
  const int64_t full = n_blocks / 2, units = full / KP;
  const int64_t steps = units + (KP == 1 && n_blocks % 2 ? 1 : 0);
  const GroupRows gr = group_rows(w, r0, nr);
  const RowDecoders<Dec> decs(w, r0, nr);
  for (int64_t u = 0; u < steps; ++u) {
    const bool half_pair = u == units;
    const int np = half_pair ? 1 : KP;
    __m512i b[KP][kPanelRows];
    for (int i = 0; i < kPanelRows; ++i) {
      __m512i v[KP];
      if (i >= nr) {
        for (int k = 0; k < KP; ++k) v[k] = _mm512_setzero_si512();
      } else if (half_pair) {
        v[0] = decs[i].bytes_half(n_blocks - 1);
      } else {
        decs[i].bytes_unit(u, v);
      }
      for (int k = 0; k < np; ++k) b[k][i] = v[k];
    }
    __m512 dw[KP * kPer], ow[KP * kPer];
    Dec::unit_scales(w, gr, u, half_pair, dw, ow);
    for (int k = 0; k < np; ++k) {
      transpose16(b[k]);
      const int64_t pair = u * KP + k;
      for (int c = 0; c < (half_pair ? 1 : 2); ++c) {
        PanelBlock& pb = out[2 * pair + c];
        for (int g = 0; g < 8; ++g) _mm512_store_si512(pb.b[g], b[k][8 * c + g]);
        for (int h = 0; h < 2; ++h) {
          const int j = kPer * k + (kHalf ? 2 * c + h : c);
          _mm512_store_ps(pb.dw[h], dw[j]);
          _mm512_store_ps(pb.ow[h], ow[j]);
        }
      }
    }
  }
}

// dot[t] += byte groups [G0, G1) of one block times token t's activations.
template <int NT, int G0, int G1>
JINX_VNNI_INLINE void block_dots(const PanelBlock& blk, const int8_t* const* xq, int64_t k,
                                 __m512i* dot) {
#pragma GCC unroll 8
  for (int g = G0; g < G1; ++g) {
    const __m512i wv = _mm512_load_si512(blk.b[g]);
    for (int t = 0; t < NT; ++t) {
      int32_t x4;
      std::memcpy(&x4, xq[t] + k * kActBlock + 4 * g, 4);
      dot[t] = _mm512_dpbusd_epi32(dot[t], wv, _mm512_set1_epi32(x4));
    }
  }
}

// acc[t] += float(dot[t]) * dw * d_t + ow * s_t.
template <int NT>
JINX_VNNI_INLINE void block_scale(const __m512i* dot, const float* dw, const float* ow,
                                  const float* d, const float* sum, __m512* acc) {
  const __m512 vdw = _mm512_load_ps(dw), vow = _mm512_load_ps(ow);
  for (int t = 0; t < NT; ++t) {
    acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot[t]), _mm512_mul_ps(vdw, _mm512_set1_ps(d[t])),
                             acc[t]);
    acc[t] = _mm512_fmadd_ps(vow, _mm512_set1_ps(sum[t]), acc[t]);
  }
}

// y[t0 + t][r0 .. r0 + nr) for NT tokens from one decoded panel.
template <int NT, bool kHalf>
JINX_VNNI void panel_tile(const PanelBlock* pb, int64_t n_blocks, const QuantActs& a, int64_t t0,
                          float* y, int64_t ldy, int64_t r0, int nr) {
  const int8_t* xq[NT];
  const float *xd[NT], *xs[NT], *xh[NT];
  for (int t = 0; t < NT; ++t) {
    xq[t] = a.q_row(t0 + t), xd[t] = a.db_row(t0 + t), xs[t] = a.sb_row(t0 + t);
    xh[t] = a.sh_row(t0 + t);
  }
  __m512 acc[NT];
  for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t k = 0; k < n_blocks; ++k) {
    const PanelBlock& blk = pb[k];
    float d[NT], s0[NT], s1[NT];
    for (int t = 0; t < NT; ++t) d[t] = xd[t][k];
    __m512i dot[NT];
    for (int t = 0; t < NT; ++t) dot[t] = _mm512_setzero_si512();
    if constexpr (!kHalf) {
      for (int t = 0; t < NT; ++t) s0[t] = xs[t][k];
      block_dots<NT, 0, 8>(blk, xq, k, dot);
      block_scale<NT>(dot, blk.dw[0], blk.ow[0], d, s0, acc);
    } else {
      for (int t = 0; t < NT; ++t) s0[t] = xh[t][2 * k], s1[t] = xh[t][2 * k + 1];
      block_dots<NT, 0, 4>(blk, xq, k, dot);
      block_scale<NT>(dot, blk.dw[0], blk.ow[0], d, s0, acc);
      for (int t = 0; t < NT; ++t) dot[t] = _mm512_setzero_si512();
      block_dots<NT, 4, 8>(blk, xq, k, dot);
      block_scale<NT>(dot, blk.dw[1], blk.ow[1], d, s1, acc);
    }
  }
  const __mmask16 m = nr >= 16 ? __mmask16(0xffff) : __mmask16((1u << nr) - 1);
  for (int t = 0; t < NT; ++t) _mm512_mask_storeu_ps(y + (t0 + t) * ldy + r0, m, acc[t]);
}

using PanelTileFn = void (*)(const PanelBlock*, int64_t, const QuantActs&, int64_t, float*, int64_t,
                             int64_t, int);

template <bool kHalf>
PanelTileFn pick_panel_tile(int64_t nt) {
  static constexpr PanelTileFn kFns[kPanelTokens] = {
      panel_tile<1, kHalf>, panel_tile<2, kHalf>, panel_tile<3, kHalf>, panel_tile<4, kHalf>,
      panel_tile<5, kHalf>, panel_tile<6, kHalf>, panel_tile<7, kHalf>, panel_tile<8, kHalf>};
  return kFns[std::clamp<int64_t>(nt, 1, kPanelTokens) - 1];
}

template <class Dec>
void gemm(const WeightMatrix& w, int64_t r0, int64_t r1, const QuantActs& a, float* y,
          int64_t ldy) {
  thread_local std::vector<PanelBlock> buf;
  const int64_t n_blocks = w.cols / kActBlock;
  buf.resize(static_cast<size_t>(n_blocks));
  for (int64_t r = r0; r < r1; r += kPanelRows) {
    const int nr = static_cast<int>(std::min<int64_t>(kPanelRows, r1 - r));
    decode_panel<Dec>(w, r, nr, n_blocks, buf.data());
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kPanelTokens) {
      const int64_t nt = std::min<int64_t>(kPanelTokens, a.n_tokens - t0);
      pick_panel_tile<kScalesPer16<Dec>>(nt)(buf.data(), n_blocks, a, t0, y, ldy, r, nr);
    }
  }
}

template <class Dec>
QKernels kernels() {
  return {gemv<Dec>, gemm<Dec>};
}

bool has_vnni() {
#if defined(__x86_64__)
  static const bool v = __builtin_cpu_supports("avx512vnni") &&
                        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512dq");
  return v;
#else
  return false;
#endif
}

}  // namespace

QKernels qdot_avx512(QFormat f) {
  if (!has_vnni()) return {};
  switch (f) {
    case QFormat::kQ8_0:
      return kernels<DecQ8_0>();
    case QFormat::kQ4_0:
      return kernels<DecQ4<false>>();
    case QFormat::kQ4_1:
      return kernels<DecQ4<true>>();
    case QFormat::kQ5_0:
      return kernels<DecQ5<false>>();
    case QFormat::kQ5_1:
      return kernels<DecQ5<true>>();
    case QFormat::kQ2_K:
      return kernels<DecQ23K<false>>();
    case QFormat::kQ3_K:
      return kernels<DecQ23K<true>>();
    case QFormat::kIQ4_NL:
      return kernels<DecIQ4NL>();
    case QFormat::kIQ4_XS:
      return kernels<DecIQ4XS>();
    case QFormat::kMXFP4:
      return kernels<DecMXFP4>();
    case QFormat::kQ4_K:
      return kernels<DecQ45K<false>>();
    case QFormat::kQ5_K:
      return kernels<DecQ45K<true>>();
    case QFormat::kQ6_K:
      return kernels<DecQ6K>();
    case QFormat::kMlx4:
      return kernels<DecMlx<4>>();
    case QFormat::kMlx8:
      return kernels<DecMlx<8>>();
    case QFormat::kNone:
      break;
  }
  return {};
}

}  // namespace jinx::cpu::detail
