// Scalar reference of the integer-dot kernels, and the format table they share. Each format
// decodes a 32-value chunk to integers u with a scale and offset per 16 values, written from
// the GGML block definitions (core/quant_blocks.h) and the MLX packing (weight.h); the SIMD
// kernels are tested against this.
#include <algorithm>
#include <cstddef>
#include <vector>

#include "backend/cpu/simd.h"
#include "backend/cpu/unaligned.h"
#include "core/check.h"
#include "core/half.h"
#include "core/quant_blocks.h"

namespace jinx::cpu::detail {

float mlx_scale_at(DType t, const void* base, int64_t i) {
  switch (t) {
    case DType::F32:
      return f32_at(base, i);
    case DType::F16:
      return f16_to_f32(u16_at(base, i));
    case DType::BF16:
      return bf16_to_f32(u16_at(base, i));
    default:
      fail("MLX scales must be F32, F16 or BF16, got ", name(t));
  }
}

QFormat qformat(const WeightMatrix& w) {
  if (w.is_mlx()) {
    const auto& m = w.mlx;
    const bool ok_group = m.group_size == 32 || m.group_size == 64 || m.group_size == 128;
    const bool ok_scale =
        m.scale_dtype == DType::F32 || m.scale_dtype == DType::F16 || m.scale_dtype == DType::BF16;
    if (!ok_group || !ok_scale || w.cols % m.group_size != 0) return QFormat::kNone;
    if (w.row_bytes < static_cast<size_t>(w.cols * m.bits / 8)) return QFormat::kNone;
    if (m.bits == 4) return QFormat::kMlx4;
    if (m.bits == 8) return QFormat::kMlx8;
    return QFormat::kNone;
  }
  switch (w.dtype) {
    case DType::Q8_0:
      return QFormat::kQ8_0;
    case DType::Q4_0:
      return QFormat::kQ4_0;
    case DType::Q4_1:
      return QFormat::kQ4_1;
    case DType::Q5_0:
      return QFormat::kQ5_0;
    case DType::Q5_1:
      return QFormat::kQ5_1;
    case DType::Q2_K:
      return QFormat::kQ2_K;
    case DType::Q3_K:
      return QFormat::kQ3_K;
    case DType::IQ4_NL:
      return QFormat::kIQ4_NL;
    case DType::IQ4_XS:
      return QFormat::kIQ4_XS;
    case DType::MXFP4:
      return QFormat::kMXFP4;
    case DType::Q4_K:
      return QFormat::kQ4_K;
    case DType::Q5_K:
      return QFormat::kQ5_K;
    case DType::Q6_K:
      return QFormat::kQ6_K;
    default:
      return QFormat::kNone;
  }
}

namespace {

// Chunk c of a row: value i = dw[i / 16] * u[i] + ow[i / 16].
struct Chunk {
  int u[32];
  float dw[2], ow[2];
};

void set_scale(Chunk* k, float dw, float ow) {
  k->dw[0] = k->dw[1] = dw;
  k->ow[0] = k->ow[1] = ow;
}

// Q4_0 / Q4_1: value i low nibble of qs[i], value i + 16 high nibble.
void nibbles16(const uint8_t* qs, int* u) {
  for (int i = 0; i < 16; ++i) {
    u[i] = qs[i] & 0xF;
    u[i + 16] = qs[i] >> 4;
  }
}

void decode_chunk(QFormat f, const WeightMatrix& w, int64_t row, int64_t c, Chunk* k) {
  const uint8_t* base = static_cast<const uint8_t*>(w.data) + row * w.row_bytes;
  switch (f) {
    case QFormat::kQ8_0: {
      const uint8_t* b = block_at<BlockQ8_0>(base, c);
      const uint8_t* qs = b + offsetof(BlockQ8_0, qs);
      for (int i = 0; i < 32; ++i) k->u[i] = static_cast<int8_t>(qs[i]);
      return set_scale(k, f16_field(b, offsetof(BlockQ8_0, d)), 0.0f);
    }
    case QFormat::kQ4_0: {
      const uint8_t* b = block_at<BlockQ4_0>(base, c);
      nibbles16(b + offsetof(BlockQ4_0, qs), k->u);
      const float d = f16_field(b, offsetof(BlockQ4_0, d));
      return set_scale(k, d, -8.0f * d);
    }
    case QFormat::kQ4_1: {
      const uint8_t* b = block_at<BlockQ4_1>(base, c);
      nibbles16(b + offsetof(BlockQ4_1, qs), k->u);
      return set_scale(k, f16_field(b, offsetof(BlockQ4_1, d)),
                       f16_field(b, offsetof(BlockQ4_1, m)));
    }
    case QFormat::kQ5_0: {  // Q4_0's nibbles plus bit i of qh (little-endian) as bit 4
      const uint8_t* b = block_at<BlockQ5_0>(base, c);
      nibbles16(b + offsetof(BlockQ5_0, qs), k->u);
      uint32_t qh;
      std::memcpy(&qh, b + offsetof(BlockQ5_0, qh), 4);
      for (int i = 0; i < 32; ++i) k->u[i] |= static_cast<int>((qh >> i) & 1) << 4;
      const float d = f16_field(b, offsetof(BlockQ5_0, d));
      return set_scale(k, d, -16.0f * d);
    }
    case QFormat::kQ5_1: {  // Q5_0's values, x = d * u + m
      const uint8_t* b = block_at<BlockQ5_1>(base, c);
      nibbles16(b + offsetof(BlockQ5_1, qs), k->u);
      uint32_t qh;
      std::memcpy(&qh, b + offsetof(BlockQ5_1, qh), 4);
      for (int i = 0; i < 32; ++i) k->u[i] |= static_cast<int>((qh >> i) & 1) << 4;
      return set_scale(k, f16_field(b, offsetof(BlockQ5_1, d)),
                       f16_field(b, offsetof(BlockQ5_1, m)));
    }
    case QFormat::kQ2_K:
    case QFormat::kQ3_K: {
      // Chunk j of a super-block: bits 2(j % 4) of qs[32(j / 4) + l]; Q3_K adds bit j of
      // hmask[l] as bit 2 (u = q + 4). Scales 2j and 2j + 1 cover its two halves.
      const bool three = f == QFormat::kQ3_K;
      const int j = static_cast<int>(c % 8);
      const uint8_t* b = three ? block_at<BlockQ3_K>(base, c / 8) : block_at<BlockQ2_K>(base, c / 8);
      const uint8_t* qs = b + (three ? offsetof(BlockQ3_K, qs) : offsetof(BlockQ2_K, qs));
      for (int l = 0; l < 32; ++l) {
        k->u[l] = (qs[32 * (j / 4) + l] >> (2 * (j % 4))) & 3;
        if (three) k->u[l] |= ((b[offsetof(BlockQ3_K, hmask) + l] >> j) & 1) << 2;
      }
      for (int s = 0; s < 2; ++s) {
        if (three) {
          k->dw[s] = f16_field(b, offsetof(BlockQ3_K, d)) *
                     static_cast<float>(q3_k_scale(b + offsetof(BlockQ3_K, scales), 2 * j + s));
          k->ow[s] = -4.0f * k->dw[s];
        } else {
          const uint8_t sc = b[offsetof(BlockQ2_K, scales) + 2 * j + s];
          k->dw[s] = f16_field(b, offsetof(BlockQ2_K, d)) * static_cast<float>(sc & 0xF);
          k->ow[s] = -(f16_field(b, offsetof(BlockQ2_K, dmin)) * static_cast<float>(sc >> 4));
        }
      }
      return;
    }
    case QFormat::kIQ4_NL: {  // signed table values, no offset
      const uint8_t* b = block_at<BlockIQ4_NL>(base, c);
      nibbles16(b + offsetof(BlockIQ4_NL, qs), k->u);
      for (int& u : k->u) u = kIq4nlValues[u];
      return set_scale(k, f16_field(b, offsetof(BlockIQ4_NL, d)), 0.0f);
    }
    case QFormat::kMXFP4: {  // IQ4_NL's layout, the E2M1 grid, a power-of-two scale
      const uint8_t* b = block_at<BlockMXFP4>(base, c);
      nibbles16(b + offsetof(BlockMXFP4, qs), k->u);
      for (int& u : k->u) u = kMxfp4Values[u];
      return set_scale(k, e8m0_to_f32_half(b[offsetof(BlockMXFP4, e)]), 0.0f);
    }
    case QFormat::kIQ4_XS: {  // chunk j of a super-block: qs[16j ..] as IQ4_NL, its own scale
      const uint8_t* b = block_at<BlockIQ4_XS>(base, c / 8);
      const int j = static_cast<int>(c % 8);
      nibbles16(b + offsetof(BlockIQ4_XS, qs) + 16 * j, k->u);
      for (int& u : k->u) u = kIq4nlValues[u];
      const int ls = iq4_xs_scale(load_u16(b + offsetof(BlockIQ4_XS, scales_h)),
                                  b + offsetof(BlockIQ4_XS, scales_l), j);
      return set_scale(k, f16_field(b, offsetof(BlockIQ4_XS, d)) * static_cast<float>(ls), 0.0f);
    }
    case QFormat::kQ4_K:
    case QFormat::kQ5_K: {
      // Sub-blocks 2k and 2k + 1 share qs[32k ..]: low nibbles, then high nibbles.
      const bool five = f == QFormat::kQ5_K;
      const int64_t sb = c / 8;
      const int j = static_cast<int>(c % 8);
      const uint8_t *scales, *qs, *qh = nullptr;
      float d, dmin;
      if (five) {
        const uint8_t* b = block_at<BlockQ5_K>(base, sb);
        scales = b + offsetof(BlockQ5_K, scales), qs = b + offsetof(BlockQ5_K, qs);
        qh = b + offsetof(BlockQ5_K, qh);
        d = f16_field(b, offsetof(BlockQ5_K, d)), dmin = f16_field(b, offsetof(BlockQ5_K, dmin));
      } else {
        const uint8_t* b = block_at<BlockQ4_K>(base, sb);
        scales = b + offsetof(BlockQ4_K, scales), qs = b + offsetof(BlockQ4_K, qs);
        d = f16_field(b, offsetof(BlockQ4_K, d)), dmin = f16_field(b, offsetof(BlockQ4_K, dmin));
      }
      int sc, m;
      kquant_scale_min(scales, j, &sc, &m);
      for (int l = 0; l < 32; ++l) {
        k->u[l] = (qs[32 * (j / 2) + l] >> (4 * (j % 2))) & 0xF;
        if (five) k->u[l] |= ((qh[l] >> j) & 1) << 4;
      }
      return set_scale(k, d * static_cast<float>(sc), -(dmin * static_cast<float>(m)));
    }
    case QFormat::kQ6_K: {
      // Chunk 4h + k: low 4 bits from ql[64h + 32(k % 2) + l] (nibble k / 2), high 2 bits
      // from bits 2k of qh[32h + l]; value = d * scales[16-value sub-block] * (u - 32).
      const uint8_t* b = block_at<BlockQ6_K>(base, c / 8);
      const uint8_t* ql = b + offsetof(BlockQ6_K, ql);
      const uint8_t* qh = b + offsetof(BlockQ6_K, qh);
      const uint8_t* scales = b + offsetof(BlockQ6_K, scales);
      const int h = static_cast<int>(c % 8) / 4, kk = static_cast<int>(c % 4);
      for (int l = 0; l < 32; ++l) {
        const int lo = (ql[64 * h + 32 * (kk % 2) + l] >> (4 * (kk / 2))) & 0xF;
        const int hi = (qh[32 * h + l] >> (2 * kk)) & 3;
        k->u[l] = lo | (hi << 4);
      }
      const float d = f16_field(b, offsetof(BlockQ6_K, d));
      for (int s = 0; s < 2; ++s) {
        k->dw[s] = d * static_cast<float>(static_cast<int8_t>(scales[2 * (c % 8) + s]));
        k->ow[s] = -32.0f * k->dw[s];
      }
      return;
    }
    case QFormat::kMlx4:
    case QFormat::kMlx8: {
      const int64_t n_groups = w.cols / w.mlx.group_size;
      const int64_t g = row * n_groups + c * 32 / w.mlx.group_size;
      for (int i = 0; i < 32; ++i)
        k->u[i] =
            f == QFormat::kMlx8 ? base[32 * c + i] : (base[16 * c + i / 2] >> (4 * (i % 2))) & 0xF;
      return set_scale(k, mlx_scale_at(w.mlx.scale_dtype, w.mlx.scales, g),
                       mlx_scale_at(w.mlx.scale_dtype, w.mlx.biases, g));
    }
    case QFormat::kNone:
      break;
  }
  fail("qdot: no integer kernel for this format");
}

template <QFormat F>
void matmul_rows(const WeightMatrix& w, int64_t r0, int64_t r1, const QuantActs& a, float* y,
                 int64_t ldy) {
  thread_local std::vector<float> acc;
  acc.resize(static_cast<size_t>(a.n_tokens));
  const int64_t n_chunks = w.cols / kActBlock;
  Chunk k;
  for (int64_t r = r0; r < r1; ++r) {
    std::fill(acc.begin(), acc.end(), 0.0f);
    for (int64_t c = 0; c < n_chunks; ++c) {
      decode_chunk(F, w, r, c, &k);
      for (int64_t t = 0; t < a.n_tokens; ++t) {
        const int8_t* q = a.q_row(t) + c * kActBlock;
        const float dx = a.dl_row(t)[c * 8];
        for (int h = 0; h < 2; ++h) {
          int dot = 0, sum = 0;
          for (int i = 16 * h; i < 16 * h + 16; ++i) {
            dot += k.u[i] * q[i];
            sum += q[i];
          }
          acc[t] +=
              k.dw[h] * (dx * static_cast<float>(dot)) + k.ow[h] * (dx * static_cast<float>(sum));
        }
      }
    }
    for (int64_t t = 0; t < a.n_tokens; ++t) y[t * ldy + r] = acc[t];
  }
}

template <QFormat F>
QKernels both() {
  return {matmul_rows<F>, matmul_rows<F>};
}

}  // namespace

QKernels qdot_scalar(QFormat f) {
  switch (f) {
    case QFormat::kQ8_0:
      return both<QFormat::kQ8_0>();
    case QFormat::kQ4_0:
      return both<QFormat::kQ4_0>();
    case QFormat::kQ4_1:
      return both<QFormat::kQ4_1>();
    case QFormat::kQ5_0:
      return both<QFormat::kQ5_0>();
    case QFormat::kQ5_1:
      return both<QFormat::kQ5_1>();
    case QFormat::kQ2_K:
      return both<QFormat::kQ2_K>();
    case QFormat::kQ3_K:
      return both<QFormat::kQ3_K>();
    case QFormat::kIQ4_NL:
      return both<QFormat::kIQ4_NL>();
    case QFormat::kIQ4_XS:
      return both<QFormat::kIQ4_XS>();
    case QFormat::kMXFP4:
      return both<QFormat::kMXFP4>();
    case QFormat::kQ4_K:
      return both<QFormat::kQ4_K>();
    case QFormat::kQ5_K:
      return both<QFormat::kQ5_K>();
    case QFormat::kQ6_K:
      return both<QFormat::kQ6_K>();
    case QFormat::kMlx4:
      return both<QFormat::kMlx4>();
    case QFormat::kMlx8:
      return both<QFormat::kMlx8>();
    case QFormat::kNone:
      break;
  }
  return {};
}

}  // namespace jinx::cpu::detail
