// AVX2 integer-dot kernels: one 32-value chunk per 256-bit register, pmaddubsw + pmaddwd for
// the integer dot product and two fp32 multiply-adds per 8 lanes (the scheme of qdot_avx512.cpp).
// pmaddubsw saturates its int16 pair sums, so unsigned weights must stay below 128: the 8-bit
// formats (Q8_0, MLX 8-bit) are kept signed and multiplied with the sign trick
// (|w| * (x * sign(w))), which stays within int16.
// Weight rows may sit at any address: blocks are read as bytes (backend/cpu/unaligned.h).
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <vector>

#include "backend/cpu/simd.h"
#include "backend/cpu/unaligned.h"
#include "core/quant_blocks.h"

#define JINX_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace jinx::cpu::detail {
namespace {

// 32 weights: bytes (unsigned < 64, or signed for kSigned decoders), per-lane scale and offset.
struct Chunk {
  __m256i b;
  __m256 dw, ow;
};

const uint8_t* row_ptr(const WeightMatrix& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_bytes;
}

// The f16 at byte `offset` of a block.
JINX_AVX2 inline float h2f(const uint8_t* block, size_t offset) {
  return _cvtsh_ss(load_u16(block + offset));
}

JINX_AVX2 inline __m256i load256(const void* p) {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
}

JINX_AVX2 inline void set(Chunk* o, __m256i b, float dw, float ow) {
  o->b = b;
  o->dw = _mm256_set1_ps(dw);
  o->ow = _mm256_set1_ps(ow);
}

struct DecQ8_0 {
  static constexpr int kChunks = 1;
  static constexpr bool kSigned = true, kOffset = false;
  const uint8_t* row;
  DecQ8_0(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_AVX2 void unit(int64_t c, Chunk* o) const {
    const uint8_t* b = block_at<BlockQ8_0>(row, c);
    set(o, load256(b + offsetof(BlockQ8_0, qs)), h2f(b, offsetof(BlockQ8_0, d)), 0.0f);
  }
};

template <bool kMin>
struct DecQ4 {
  using Block = std::conditional_t<kMin, BlockQ4_1, BlockQ4_0>;
  static constexpr int kChunks = 1;
  static constexpr bool kSigned = false, kOffset = true;
  const uint8_t* row;
  DecQ4(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_AVX2 void unit(int64_t c, Chunk* o) const {
    const uint8_t* b = block_at<Block>(row, c);
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + offsetof(Block, qs)));
    const __m256i y = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    const float d = h2f(b, offsetof(Block, d));
    float m;
    if constexpr (kMin)
      m = h2f(b, offsetof(BlockQ4_1, m));
    else
      m = -8.0f * d;
    set(o, _mm256_and_si256(y, _mm256_set1_epi8(0x0f)), d, m);
  }
};

// 16 bytes of a block in Q4_0's nibble layout -> its 32 values in order.
JINX_AVX2 inline __m256i nibbles32(const uint8_t* qs) {
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  return _mm256_and_si256(_mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1),
                          _mm256_set1_epi8(0x0f));
}

// Q5_0 / Q5_1: Q4_0's nibbles plus bit i of qh (a little-endian uint32) as bit 4 of value i;
// Q5_0: w = d * (u - 16), Q5_1: w = d * u + m.
template <bool kMin>
struct DecQ5 {
  using Block = std::conditional_t<kMin, BlockQ5_1, BlockQ5_0>;
  static constexpr int kChunks = 1;
  static constexpr bool kSigned = false, kOffset = true;
  const uint8_t* row;
  DecQ5(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_AVX2 void unit(int64_t c, Chunk* o) const {
    const uint8_t* b = block_at<Block>(row, c);
    const __m256i y = nibbles32(b + offsetof(Block, qs));
    uint32_t qh;
    std::memcpy(&qh, b + offsetof(Block, qh), 4);
    // Byte i gets bit i of qh: broadcast the 4 bytes of qh to their 8-byte lanes, test bit i % 8.
    const __m256i bytes = _mm256_shuffle_epi8(
        _mm256_set1_epi32(static_cast<int>(qh)),
        _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
    const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
    const __m256i on = _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
    const float d = h2f(b, offsetof(Block, d));
    float m;
    if constexpr (kMin)
      m = h2f(b, offsetof(BlockQ5_1, m));
    else
      m = -16.0f * d;
    set(o, _mm256_or_si256(y, _mm256_and_si256(on, _mm256_set1_epi8(16))), d, m);
  }
};

// IQ4_NL / IQ4_XS / MXFP4: nibbles index a signed table of 16 values (pshufb per 128-bit lane);
// no offset.
JINX_AVX2 inline __m256i table_lookup(const int8_t* table, __m256i idx) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(table));
  return _mm256_shuffle_epi8(_mm256_inserti128_si256(_mm256_castsi128_si256(t), t, 1), idx);
}

struct DecIQ4NL {
  static constexpr int kChunks = 1;
  static constexpr bool kSigned = true, kOffset = false;
  const uint8_t* row;
  DecIQ4NL(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_AVX2 void unit(int64_t c, Chunk* o) const {
    const uint8_t* b = block_at<BlockIQ4_NL>(row, c);
    set(o, table_lookup(kIq4nlValues, nibbles32(b + offsetof(BlockIQ4_NL, qs))),
        h2f(b, offsetof(BlockIQ4_NL, d)), 0.0f);
  }
};

// MXFP4: IQ4_NL's layout with the E2M1 grid and a power-of-two scale.
struct DecMXFP4 {
  static constexpr int kChunks = 1;
  static constexpr bool kSigned = true, kOffset = false;
  const uint8_t* row;
  DecMXFP4(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_AVX2 void unit(int64_t c, Chunk* o) const {
    const uint8_t* b = block_at<BlockMXFP4>(row, c);
    set(o, table_lookup(kMxfp4Values, nibbles32(b + offsetof(BlockMXFP4, qs))),
        e8m0_to_f32_half(b[offsetof(BlockMXFP4, e)]), 0.0f);
  }
};

// A 256-value super-block: 8 chunks of 16 bytes of qs in IQ4_NL's layout, a scale each.
struct DecIQ4XS {
  static constexpr int kChunks = 8;
  static constexpr bool kSigned = true, kOffset = false;
  const uint8_t* row;
  DecIQ4XS(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_AVX2 void unit(int64_t s, Chunk* o) const {
    const uint8_t* x = block_at<BlockIQ4_XS>(row, s);
    const float d = h2f(x, offsetof(BlockIQ4_XS, d));
    const uint16_t sh = load_u16(x + offsetof(BlockIQ4_XS, scales_h));
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const int ls = iq4_xs_scale(sh, x + offsetof(BlockIQ4_XS, scales_l), j);
      set(&o[j], table_lookup(kIq4nlValues, nibbles32(x + offsetof(BlockIQ4_XS, qs) + 16 * j)),
          d * static_cast<float>(ls), 0.0f);
    }
  }
};

// Q2_K / Q3_K: chunk j of a super-block is bits 2(j % 4) of qs[32(j / 4) + l]; Q3_K adds bit j of
// hmask[l] as bit 2 (w = d * (sc - 32) * (u - 4)), Q2_K has w = d * (sc & 15) * u - dmin * (sc >> 4).
// A scale per 16 values (lanes 0-3 and 4-7).
template <bool kThree>
struct DecQ23K {
  using Block = std::conditional_t<kThree, BlockQ3_K, BlockQ2_K>;
  static constexpr int kChunks = 8;
  static constexpr bool kSigned = false, kOffset = true;
  const uint8_t* row;
  DecQ23K(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_AVX2 static __m256 halves(float s0, float s1) {
    return _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(s0)), _mm_set1_ps(s1), 1);
  }
  JINX_AVX2 void unit(int64_t s, Chunk* o) const {
    const uint8_t* x = block_at<Block>(row, s);
    const uint8_t* qs = x + offsetof(Block, qs);
    const float d = h2f(x, offsetof(Block, d));
    float dmin = 0;
    __m256i hm;
    if constexpr (kThree)
      hm = load256(x + offsetof(BlockQ3_K, hmask));
    else
      dmin = h2f(x, offsetof(BlockQ2_K, dmin));
    const __m256i q[2] = {load256(qs), load256(qs + 32)};
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      __m256i b = _mm256_and_si256(_mm256_srli_epi16(q[j / 4], 2 * (j % 4)), _mm256_set1_epi8(3));
      Chunk& ch = o[j];
      if constexpr (kThree) {
        const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << j));
        const __m256i on = _mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit);
        b = _mm256_or_si256(b, _mm256_and_si256(on, _mm256_set1_epi8(4)));
        const uint8_t* sc = x + offsetof(BlockQ3_K, scales);
        ch.dw = halves(d * static_cast<float>(q3_k_scale(sc, 2 * j)),
                       d * static_cast<float>(q3_k_scale(sc, 2 * j + 1)));
        ch.ow = _mm256_mul_ps(ch.dw, _mm256_set1_ps(-4.0f));
      } else {
        const uint8_t* sc = x + offsetof(BlockQ2_K, scales) + 2 * j;
        ch.dw = halves(d * static_cast<float>(sc[0] & 0xF), d * static_cast<float>(sc[1] & 0xF));
        ch.ow = halves(-(dmin * static_cast<float>(sc[0] >> 4)),
                       -(dmin * static_cast<float>(sc[1] >> 4)));
      }
      ch.b = b;
    }
  }
};

template <bool kFive>
struct DecQ45K {
  using Block = std::conditional_t<kFive, BlockQ5_K, BlockQ4_K>;
  static constexpr int kChunks = 8;
  static constexpr bool kSigned = false, kOffset = true;
  const uint8_t* row;
  DecQ45K(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_AVX2 void unit(int64_t s, Chunk* o) const {
    const uint8_t* x = block_at<Block>(row, s);
    const uint8_t* scales = x + offsetof(Block, scales);
    const float d = h2f(x, offsetof(Block, d)), dmin = h2f(x, offsetof(Block, dmin));
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
    __m256i qh;
    if constexpr (kFive) qh = load256(x + offsetof(BlockQ5_K, qh));
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256i y = load256(x + offsetof(Block, qs) + 32 * k);
      __m256i q[2] = {_mm256_and_si256(y, lo4), _mm256_and_si256(_mm256_srli_epi16(y, 4), lo4)};
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * k + h;
        if constexpr (kFive) {
          const __m256i bit = _mm256_set1_epi8(static_cast<char>(1 << j));
          const __m256i on = _mm256_cmpeq_epi8(_mm256_and_si256(qh, bit), bit);
          q[h] = _mm256_or_si256(q[h], _mm256_and_si256(on, _mm256_set1_epi8(16)));
        }
        int sc, m;
        kquant_scale_min(scales, j, &sc, &m);
        set(&o[j], q[h], d * static_cast<float>(sc), -(dmin * static_cast<float>(m)));
      }
    }
  }
};

struct DecQ6K {
  static constexpr int kChunks = 8;
  static constexpr bool kSigned = false, kOffset = true;
  const uint8_t* row;
  DecQ6K(const WeightMatrix& w, int64_t r) : row(row_ptr(w, r)) {}
  JINX_AVX2 void unit(int64_t s, Chunk* o) const {
    const uint8_t* x = block_at<BlockQ6_K>(row, s);
    const uint8_t* ql = x + offsetof(BlockQ6_K, ql);
    const uint8_t* qhs = x + offsetof(BlockQ6_K, qh);
    const int8_t* scales = reinterpret_cast<const int8_t*>(x + offsetof(BlockQ6_K, scales));
    const float d = h2f(x, offsetof(BlockQ6_K, d));
    const __m256i lo4 = _mm256_set1_epi8(0x0f), hi2 = _mm256_set1_epi8(0x30);
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m256i ql0 = load256(ql + 64 * h), ql1 = load256(ql + 64 * h + 32);
      const __m256i qh = load256(qhs + 32 * h);
      const __m256i q[4] = {_mm256_or_si256(_mm256_and_si256(ql0, lo4),
                                            _mm256_and_si256(_mm256_slli_epi16(qh, 4), hi2)),
                            _mm256_or_si256(_mm256_and_si256(ql1, lo4),
                                            _mm256_and_si256(_mm256_slli_epi16(qh, 2), hi2)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), lo4),
                                            _mm256_and_si256(qh, hi2)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), lo4),
                                            _mm256_and_si256(_mm256_srli_epi16(qh, 2), hi2))};
      for (int k = 0; k < 4; ++k) {
        const int c = 4 * h + k;
        const float s0 = d * static_cast<float>(scales[2 * c]);
        const float s1 = d * static_cast<float>(scales[2 * c + 1]);
        Chunk& ch = o[c];
        ch.b = q[k];
        ch.dw = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(s0)), _mm_set1_ps(s1), 1);
        ch.ow = _mm256_mul_ps(ch.dw, _mm256_set1_ps(-32.0f));
      }
    }
  }
};

// MLX 4 / 8 bit. 8-bit values are flipped to signed (u - 128), which moves 128 * scale into
// the offset.
template <int kBits>
struct DecMlx {
  static constexpr int kChunks = 1;
  static constexpr bool kSigned = kBits == 8, kOffset = true;
  const uint8_t* q;
  const void* scales;
  const void* biases;
  DType st;
  int64_t g0;
  int group_shift;
  DecMlx(const WeightMatrix& w, int64_t r)
      : q(row_ptr(w, r)),
        scales(w.mlx.scales),
        biases(w.mlx.biases),
        st(w.mlx.scale_dtype),
        g0(r * (w.cols / w.mlx.group_size)),
        group_shift(w.mlx.group_size == 32   ? 0
                    : w.mlx.group_size == 64 ? 1
                                             : 2) {}
  JINX_AVX2 void unit(int64_t c, Chunk* o) const {
    const int64_t g = g0 + (c >> group_shift);
    const float s = mlx_scale_at(st, scales, g), bias = mlx_scale_at(st, biases, g);
    if constexpr (kBits == 8) {
      const __m256i v =
          _mm256_xor_si256(load256(q + 32 * c), _mm256_set1_epi8(static_cast<char>(0x80)));
      set(o, v, s, bias + 128.0f * s);
    } else {
      const __m256i w =
          _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + 16 * c)));
      const __m256i v =
          _mm256_or_si256(_mm256_and_si256(w, _mm256_set1_epi16(0x000f)),
                          _mm256_slli_epi16(_mm256_and_si256(w, _mm256_set1_epi16(0x00f0)), 4));
      set(o, v, s, bias);
    }
  }
};

// 8 int32 lanes, each the dot product of 4 weights with 4 activations.
template <bool kSigned>
JINX_AVX2 inline __m256i dot4(__m256i w, __m256i x) {
  __m256i p;
  if constexpr (kSigned)
    p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  else
    p = _mm256_maddubs_epi16(w, x);
  return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

template <class Dec>
JINX_AVX2 inline __m256 step(const Chunk& w, __m256i x, const float* dl, const float* sl,
                             __m256 acc) {
  const __m256i d = dot4<Dec::kSigned>(w.b, x);
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), _mm256_mul_ps(w.dw, _mm256_loadu_ps(dl)), acc);
  if constexpr (Dec::kOffset) acc = _mm256_fmadd_ps(w.ow, _mm256_loadu_ps(sl), acc);
  return acc;
}

JINX_AVX2 inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <class Dec, class F>
JINX_AVX2 inline void for_each_chunk(const WeightMatrix& w, int64_t r, F&& fn) {
  const Dec dec(w, r);
  const int64_t n_units = w.cols / kActBlock / Dec::kChunks;
  for (int64_t u = 0; u < n_units; ++u) {
    Chunk c[Dec::kChunks];
    dec.unit(u, c);
#pragma GCC unroll 8
    for (int k = 0; k < Dec::kChunks; ++k) fn(u * Dec::kChunks + k, c[k]);
  }
}

template <class Dec, int NX>
JINX_AVX2 void gemv_nx(const WeightMatrix& w, int64_t r0, int64_t r1, const QuantActs& a, float* y,
                       int64_t ldy) {
  for (int64_t r = r0; r < r1; ++r) {
    __m256 acc[NX];
    for (int t = 0; t < NX; ++t) acc[t] = _mm256_setzero_ps();
    for_each_chunk<Dec>(w, r, [&](int64_t c, const Chunk& ch) JINX_AVX2 {
      for (int t = 0; t < NX; ++t) {
        const __m256i x = load256(a.q_row(t) + c * kActBlock);
        acc[t] = step<Dec>(ch, x, a.dl_row(t) + c * 8, a.sl_row(t) + c * 8, acc[t]);
      }
    });
    for (int t = 0; t < NX; ++t) y[t * ldy + r] = hsum8(acc[t]);
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

// ---- GEMM: decoded rows x tiles of tokens (16 registers: 2 rows x 4 tokens) ----

constexpr int kTileR = 2, kTileT = 4;
constexpr int64_t kDecodedBytes = 192 << 10;

template <class Dec, int R, int T>
JINX_AVX2 void tile(const Chunk* rows, int64_t nc, const QuantActs& a, int64_t t0, float* y,
                    int64_t ldy, int64_t r0) {
  __m256 acc[R][T];
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) acc[i][t] = _mm256_setzero_ps();
  for (int64_t c = 0; c < nc; ++c) {
    __m256i x[T];
    for (int t = 0; t < T; ++t) x[t] = load256(a.q_row(t0 + t) + c * kActBlock);
    for (int i = 0; i < R; ++i) {
      const Chunk& w = rows[i * nc + c];
      for (int t = 0; t < T; ++t)
        acc[i][t] =
            step<Dec>(w, x[t], a.dl_row(t0 + t) + c * 8, a.sl_row(t0 + t) + c * 8, acc[i][t]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int t = 0; t < T; ++t) y[(t0 + t) * ldy + r0 + i] = hsum8(acc[i][t]);
}

template <class Dec>
void run_tile(int r, int t, const Chunk* rows, int64_t nc, const QuantActs& a, int64_t t0, float* y,
              int64_t ldy, int64_t r0) {
  auto pick = [&](auto R) {
    constexpr int kR = decltype(R)::value;
    switch (t) {
      case 1:
        return tile<Dec, kR, 1>(rows, nc, a, t0, y, ldy, r0);
      case 2:
        return tile<Dec, kR, 2>(rows, nc, a, t0, y, ldy, r0);
      case 3:
        return tile<Dec, kR, 3>(rows, nc, a, t0, y, ldy, r0);
      default:
        return tile<Dec, kR, 4>(rows, nc, a, t0, y, ldy, r0);
    }
  };
  if (r == 1)
    pick(std::integral_constant<int, 1>{});
  else
    pick(std::integral_constant<int, 2>{});
}

template <class Dec>
void gemm(const WeightMatrix& w, int64_t r0, int64_t r1, const QuantActs& a, float* y,
          int64_t ldy) {
  thread_local std::vector<Chunk> buf;
  const int64_t nc = w.cols / kActBlock;
  const int64_t block = std::max<int64_t>(
      kTileR, kDecodedBytes / (nc * static_cast<int64_t>(sizeof(Chunk))) / kTileR * kTileR);
  for (int64_t rb = r0; rb < r1; rb += block) {
    const int64_t nr = std::min(block, r1 - rb);
    buf.resize(static_cast<size_t>(nr * nc));
    for (int64_t i = 0; i < nr; ++i) {
      Chunk* out = buf.data() + i * nc;
      for_each_chunk<Dec>(w, rb + i, [&](int64_t c, const Chunk& ch) JINX_AVX2 { out[c] = ch; });
    }
    for (int64_t t0 = 0; t0 < a.n_tokens; t0 += kTileT) {
      const int nt = static_cast<int>(std::min<int64_t>(kTileT, a.n_tokens - t0));
      for (int64_t i = 0; i < nr; i += kTileR) {
        const int ri = static_cast<int>(std::min<int64_t>(kTileR, nr - i));
        run_tile<Dec>(ri, nt, buf.data() + i * nc, nc, a, t0, y, ldy, rb + i);
      }
    }
  }
}

template <class Dec>
QKernels kernels() {
  return {gemv<Dec>, gemm<Dec>};
}

}  // namespace

QKernels qdot_avx2(QFormat f) {
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
