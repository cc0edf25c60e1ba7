// Weight stacks in their device layout (see device_repack.h). Reads weight bytes at any address
// (an MLX tensor may start at an odd offset) through backend/cpu/unaligned.h.
#include "model/device_repack.h"

#include <cstddef>
#include <cstring>

#include "backend/cpu/dequant.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/simd.h"
#include "backend/cpu/unaligned.h"
#include "core/check.h"
#include "core/half.h"
#include "core/quant_blocks.h"

namespace jinx {
namespace {

using cpu::detail::f16_field;
using cpu::detail::load_f32;
using cpu::detail::load_u16;

const uint8_t* row_at(const WeightMatrix& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_bytes;
}

// 32 codes q[0..31] -> 16 bytes in the Q4_0 order.
void pack_nibbles(const uint8_t* q, uint8_t* out) {
  for (int i = 0; i < 16; ++i) out[i] = static_cast<uint8_t>(q[i] | (q[i + 16] << 4));
}

// One row of Q4_K super-blocks; out arrays start at the row's first 32-block.
void repack_q4_k_row(const uint8_t* src, int64_t cols, uint8_t* quants, float* scales,
                     float* offsets) {
  for (int64_t i = 0; i < cols / kQK_K; ++i) {
    const uint8_t* b = src + static_cast<size_t>(i) * sizeof(BlockQ4_K);
    const float d = f16_field(b, offsetof(BlockQ4_K, d));
    const float dmin = f16_field(b, offsetof(BlockQ4_K, dmin));
    for (int j = 0; j < kQK_K / 32; ++j) {
      int sc, m;
      cpu::detail::kquant_scale_min(b + offsetof(BlockQ4_K, scales), j, &sc, &m);
      const int64_t blk = i * (kQK_K / 32) + j;
      scales[blk] = d * static_cast<float>(sc);
      // x = ds * q - dm on the CPU; ds * q + (-dm) is the same IEEE operation.
      offsets[blk] = -(dmin * static_cast<float>(m));
      const uint8_t* qs = b + offsetof(BlockQ4_K, qs) + 32 * (j / 2);
      const int shift = 4 * (j % 2);
      uint8_t q[32];
      for (int l = 0; l < 32; ++l) q[l] = (qs[l] >> shift) & 0xF;
      pack_nibbles(q, quants + blk * 16);
    }
  }
}

// Q4_0 (x = d * (q - 8) = d * q - 8d, both products exact) and Q4_1 (x = d * q + m): the
// nibbles are already in the Q4A order.
void repack_q4_01_row(DType t, const uint8_t* src, int64_t cols, uint8_t* quants, float* scales,
                      float* offsets) {
  const bool one = t == DType::Q4_1;
  const size_t bb = one ? sizeof(BlockQ4_1) : sizeof(BlockQ4_0);
  const size_t qs_off = one ? offsetof(BlockQ4_1, qs) : offsetof(BlockQ4_0, qs);
  for (int64_t blk = 0; blk < cols / kDeviceBlock; ++blk) {
    const uint8_t* b = src + static_cast<size_t>(blk) * bb;
    const float d = f16_field(b, 0);
    scales[blk] = d;
    offsets[blk] = one ? f16_field(b, offsetof(BlockQ4_1, m)) : -8.0f * d;
    std::memcpy(quants + blk * 16, b + qs_off, 16);
  }
}

float mlx_param(DType t, const void* base, int64_t i) {
  const auto* p = static_cast<const uint8_t*>(base);
  switch (t) {
    case DType::F16:
      return f16_to_f32(load_u16(p + static_cast<size_t>(i) * 2));
    case DType::BF16:
      return bf16_to_f32(load_u16(p + static_cast<size_t>(i) * 2));
    default:
      return load_f32(p + static_cast<size_t>(i) * 4);
  }
}

// MLX 4-bit: eight codes per little-endian uint32, value c in bits 4 * (c % 8) of word c / 8,
// so byte k of the row holds values 2k (low nibble) and 2k + 1 (high nibble).
void repack_mlx4_row(const WeightMatrix& w, int64_t r, uint8_t* quants, float* scales,
                     float* offsets) {
  const uint8_t* src = row_at(w, r);
  const int64_t n_groups = w.cols / w.mlx.group_size;
  const int64_t per_group = w.mlx.group_size / kDeviceBlock;
  for (int64_t blk = 0; blk < w.cols / kDeviceBlock; ++blk) {
    const int64_t g = r * n_groups + blk / per_group;
    scales[blk] = mlx_param(w.mlx.scale_dtype, w.mlx.scales, g);
    offsets[blk] = mlx_param(w.mlx.scale_dtype, w.mlx.biases, g);
    const uint8_t* bytes = src + blk * 16;
    uint8_t q[32];
    for (int k = 0; k < 16; ++k) {
      q[2 * k] = bytes[k] & 0xF;
      q[2 * k + 1] = bytes[k] >> 4;
    }
    pack_nibbles(q, quants + blk * 16);
  }
}

// Bytes a row of w needs (row_bytes must cover it).
size_t q4a_source_row_bytes(const WeightMatrix& w) {
  if (w.is_mlx()) return static_cast<size_t>(w.cols / 2);
  const std::optional<size_t> b = bytes_for(w.dtype, w.cols);
  JINX_CHECK(b.has_value(), "repack_q4a: ", w.cols, " columns of ", name(w.dtype));
  return *b;
}

std::string source_name(const WeightMatrix& w) {
  return w.is_mlx() ? str("MLX", w.mlx.bits) : std::string(name(w.dtype));
}

// "A+B" over the parts' distinct source formats, in order of appearance.
std::string source_names(const std::vector<const WeightMatrix*>& parts) {
  std::vector<std::string> seen;
  std::string out;
  for (const WeightMatrix* p : parts) {
    const std::string s = source_name(*p);
    bool dup = false;
    for (const std::string& t : seen) dup = dup || t == s;
    if (dup) continue;
    out += (seen.empty() ? "" : "+") + s;
    seen.push_back(s);
  }
  return out;
}

void pack_bf16(const std::vector<const WeightMatrix*>& parts, HostDeviceMatrix& m) {
  const int64_t cols = m.cols;
  m.data.resize(static_cast<size_t>(m.rows * cols) * 2);
  m.row_bytes = static_cast<size_t>(cols) * 2;
  std::vector<float> row(static_cast<size_t>(cols));
  int64_t r0 = 0;
  for (const WeightMatrix* p : parts) {
    for (int64_t r = 0; r < p->rows; ++r) {
      uint8_t* dst = &m.data[static_cast<size_t>((r0 + r) * cols) * 2];
      if (p->dtype == DType::BF16 && !p->is_mlx()) {
        std::memcpy(dst, row_at(*p, r), static_cast<size_t>(cols) * 2);
      } else {
        cpu::weight_row(*p, r, row.data());
        for (int64_t c = 0; c < cols; ++c) {
          const uint16_t h = f32_to_bf16(row[static_cast<size_t>(c)]);
          std::memcpy(dst + c * 2, &h, 2);
        }
      }
    }
    r0 += p->rows;
  }
}

// Q8_0 / Q4_0: each block's f16 d to scales, its quants to data. A Q5_0 part of a Q8_0 stack:
// its codes q - 16 as int8 (the same values).
void pack_q8_q4_0(const std::vector<const WeightMatrix*>& parts, HostDeviceMatrix& m) {
  const int64_t nb = m.cols / kDeviceBlock;
  const size_t qbytes = m.dtype == DType::Q8_0 ? 32 : 16;
  m.data.resize(static_cast<size_t>(m.rows * nb) * qbytes);
  m.scales.resize(static_cast<size_t>(m.rows * nb) * 2);
  m.row_bytes = static_cast<size_t>(nb) * qbytes;
  int64_t r0 = 0;
  for (const WeightMatrix* p : parts) {
    const bool five = p->dtype == DType::Q5_0;
    const size_t block_bytes = traits(p->dtype).block_bytes;
    JINX_CHECK(p->row_bytes >= static_cast<size_t>(nb) * block_bytes, "weight rows too short");
    for (int64_t r = 0; r < p->rows; ++r) {
      const uint8_t* src = row_at(*p, r);
      for (int64_t b = 0; b < nb; ++b) {
        const uint8_t* blk = src + b * block_bytes;  // d (f16) first, then the quants
        const size_t i = static_cast<size_t>((r0 + r) * nb + b);
        std::memcpy(&m.scales[i * 2], blk, 2);
        if (five) {
          cpu::q5_0_codes(blk, reinterpret_cast<int8_t*>(&m.data[i * qbytes]));
        } else {
          std::memcpy(&m.data[i * qbytes], blk + 2, qbytes);
        }
      }
    }
    r0 += p->rows;
  }
}

void pack_q4a(const std::vector<const WeightMatrix*>& parts, HostDeviceMatrix& m) {
  const int64_t nb = m.cols / kDeviceBlock;
  const size_t n_blocks = static_cast<size_t>(m.rows * nb);
  m.data.resize(n_blocks * 16);
  m.scales.resize(n_blocks * sizeof(float));
  m.offsets.resize(n_blocks);
  m.row_bytes = static_cast<size_t>(nb) * 16;
  auto* scales = reinterpret_cast<float*>(m.scales.data());
  int64_t r0 = 0;
  for (const WeightMatrix* p : parts) {
    const size_t at = static_cast<size_t>(r0 * nb);
    repack_q4a(*p, 0, p->rows, &m.data[at * 16], scales + at, &m.offsets[at]);
    r0 += p->rows;
  }
}

}  // namespace

bool q4a_compatible(const WeightMatrix& w) {
  if (w.cols <= 0 || w.cols % kDeviceBlock != 0) return false;
  if (w.is_mlx()) {
    const MlxQuant& q = w.mlx;
    const bool group_ok = q.group_size == 32 || q.group_size == 64 || q.group_size == 128;
    const bool dtype_ok =
        q.scale_dtype == DType::F16 || q.scale_dtype == DType::BF16 || q.scale_dtype == DType::F32;
    return q.bits == 4 && group_ok && dtype_ok && w.cols % q.group_size == 0;
  }
  if (w.dtype == DType::Q4_K) return w.cols % kQK_K == 0;
  return w.dtype == DType::Q4_0 || w.dtype == DType::Q4_1;
}

void repack_q4a(const WeightMatrix& w, int64_t r0, int64_t r1, uint8_t* quants, float* scales,
                float* offsets) {
  JINX_CHECK(q4a_compatible(w), "repack_q4a: ", source_name(w), " with ", w.cols,
             " columns is not 4-bit affine");
  JINX_CHECK(0 <= r0 && r0 <= r1 && r1 <= w.rows, "repack_q4a: rows [", r0, ", ", r1, ") outside ",
             w.rows);
  JINX_CHECK(w.row_bytes >= q4a_source_row_bytes(w), "repack_q4a: rows of ", w.row_bytes,
             " bytes are too short for ", w.cols, " columns of ", source_name(w));
  const int64_t nb = w.cols / kDeviceBlock;
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t i = (r - r0) * nb;
    uint8_t* q = quants + i * 16;
    if (w.is_mlx()) {
      repack_mlx4_row(w, r, q, scales + i, offsets + i);
    } else if (w.dtype == DType::Q4_K) {
      repack_q4_k_row(row_at(w, r), w.cols, q, scales + i, offsets + i);
    } else {
      repack_q4_01_row(w.dtype, row_at(w, r), w.cols, q, scales + i, offsets + i);
    }
  }
}

void dequant_q4a_row(const uint8_t* quants, const float* scales, const float* offsets, int64_t cols,
                     float* out) {
  for (int64_t b = 0; b < cols / kDeviceBlock; ++b, out += kDeviceBlock) {
    const uint8_t* q = quants + b * 16;
    for (int i = 0; i < 16; ++i) {
      out[i] = scales[b] * static_cast<float>(q[i] & 0xF) + offsets[b];
      out[i + 16] = scales[b] * static_cast<float>(q[i] >> 4) + offsets[b];
    }
  }
}

DType device_format(const std::vector<const WeightMatrix*>& parts) {
  JINX_CHECK(!parts.empty(), "device_format: no matrices");
  const DType d = parts[0]->dtype;
  bool same = true, affine = true;
  for (const WeightMatrix* p : parts) {
    same = same && p->dtype == d && !p->is_mlx();
    affine = affine && q4a_compatible(*p);
  }
  if (same && d == DType::BF16) return d;
  if (same && (d == DType::Q8_0 || d == DType::Q4_0) && parts[0]->cols % kDeviceBlock == 0)
    return d;
  // Q5_0 (with Q8_0 or alone) fits Q8_0 exactly, at 8.5 bits per weight instead of BF16's 16.
  bool eight = parts[0]->cols % kDeviceBlock == 0;
  for (const WeightMatrix* p : parts)
    eight = eight && !p->is_mlx() && (p->dtype == DType::Q5_0 || p->dtype == DType::Q8_0);
  if (eight) return DType::Q8_0;
  return affine ? kDeviceQ4A : DType::BF16;
}

HostDeviceMatrix pack_stacked(const std::vector<const WeightMatrix*>& parts) {
  HostDeviceMatrix m;
  m.dtype = device_format(parts);
  m.cols = parts[0]->cols;
  for (const WeightMatrix* p : parts) {
    JINX_CHECK(p->cols == m.cols, "stacked weights differ in columns: ", p->cols, " vs ", m.cols);
    JINX_CHECK(p->rows >= 0, "negative row count");
    m.rows += p->rows;
  }
  if (m.dtype == DType::BF16) {
    pack_bf16(parts, m);
  } else if (m.dtype == kDeviceQ4A) {
    pack_q4a(parts, m);
  } else {
    pack_q8_q4_0(parts, m);
  }
  const std::string sources = source_names(parts);
  const std::string dev = device_format_name(m.dtype);
  m.label = sources == dev ? dev : dev + " from " + sources;
  return m;
}

std::string device_format_name(DType t) {
  return t == kDeviceQ4A ? "Q4A" : std::string(name(t));
}

}  // namespace jinx
