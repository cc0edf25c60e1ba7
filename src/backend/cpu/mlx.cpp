// MLX affine-quantized rows (mlx.core.quantize): value = scale * q + bias per group of
// `group_size`, q unsigned `bits` wide, packed least-significant bits first into uint32 words.
#include <cstring>

#include "backend/cpu/simd.h"
#include "backend/cpu/unaligned.h"
#include "core/check.h"
#include "core/half.h"

namespace jinx::cpu::detail {

namespace {

float load_scale(DType t, const void* base, int64_t i) {
  switch (t) {
    case DType::F32: return f32_at(base, i);
    case DType::F16: return f16_to_f32(u16_at(base, i));
    case DType::BF16: return bf16_to_f32(u16_at(base, i));
    default: fail("MLX scales must be F32, F16 or BF16, got ", name(t));
  }
}

// 4-bit fast path: eight values per word.
void dequant4(const uint8_t* words, int64_t cols, int group, const float* s, const float* b,
              float* out) {
  for (int64_t c = 0; c < cols; c += 8) {
    uint32_t wv;
    std::memcpy(&wv, words + c / 2, 4);
    const float sc = s[c / group], bi = b[c / group];
    for (int k = 0; k < 8; ++k) out[c + k] = sc * static_cast<float>((wv >> (4 * k)) & 15u) + bi;
  }
}

}  // namespace

void mlx_dequant_row(const WeightMatrix& w, int64_t row, float* out) {
  const int bits = w.mlx.bits, group = w.mlx.group_size;
  JINX_CHECK(bits >= 2 && bits <= 8 && group > 0 && w.cols % group == 0, "bad MLX matrix");
  const int64_t n_groups = w.cols / group;
  float scales[1024], biases[1024];  // groups per row; cols <= 131072 at group 128
  JINX_CHECK(n_groups <= 1024, "MLX row has too many groups: ", n_groups);
  for (int64_t g = 0; g < n_groups; ++g) {
    scales[g] = load_scale(w.mlx.scale_dtype, w.mlx.scales, row * n_groups + g);
    biases[g] = load_scale(w.mlx.scale_dtype, w.mlx.biases, row * n_groups + g);
  }
  const uint8_t* bytes = static_cast<const uint8_t*>(w.data) + row * w.row_bytes;
  if (bits == 4 && group % 8 == 0) {
    dequant4(bytes, w.cols, group, scales, biases, out);
    return;
  }
  // General widths: a little-endian bit stream.
  const uint32_t mask = (1u << bits) - 1u;
  for (int64_t c = 0; c < w.cols; ++c) {
    const int64_t bit = c * bits;
    uint32_t v = 0;
    std::memcpy(&v, bytes + bit / 8, (bit % 8 + bits + 7) / 8);
    const float q = static_cast<float>((v >> (bit % 8)) & mask);
    out[c] = scales[c / group] * q + biases[c / group];
  }
}

}  // namespace jinx::cpu::detail
