// Host side of the weight upload to a GPU: which device format a stack of weight matrices gets
// (q|k|v and gate|up are stacked into one matrix), and its bytes in the layout that
// cuda::DeviceMatrix describes (backend/cuda/ops.h). Pure C++, compiled and tested in the CPU
// build; the CUDA executor only copies the arrays to the device.
//
// Device formats: BF16 rows; Q8_0 and Q4_0 with quants and f16 scales split into two aligned
// arrays; and Q4A, 4-bit affine: blocks of 32 elements, 16 bytes of nibbles in the Q4_0 order
// (element j in the low nibble of byte j, element j + 16 in the high one) and per block an fp32
// scale s and fp32 offset m, x = s * q + m with q in 0..15. Q4A holds GGUF Q4_K, Q4_1 and Q4_0
// and MLX 4-bit weights with every value the CPU's dequantization gives (fp32 s and m are exact
// for all of them; for Q4_0 a zero may come out +0 where the CPU has -0), at 6 bits per weight
// instead of BF16's 16.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "backend/weight.h"
#include "core/dtype.h"

namespace jinx {

// The DType that tags Q4A in a DeviceMatrix: Q4_1, whose math (x = d * q + m, Q4_0 nibble order)
// it shares; its scales and offsets are fp32 on the device, not f16 as in a GGUF file.
constexpr DType kDeviceQ4A = DType::Q4_1;
constexpr int64_t kDeviceBlock = 32;  // elements per Q8_0 / Q4_0 / Q4A block

// True when every value of w is s * q + m with q a 4-bit code, in blocks of 32 whose s and m are
// exact in fp32: Q4_K (cols % 256 == 0), Q4_1 and Q4_0 (cols % 32 == 0), MLX with bits == 4,
// group 32, 64 or 128 and F16 / BF16 / F32 scales (cols % group == 0).
bool q4a_compatible(const WeightMatrix& w);

// Rows [r0, r1) of w (q4a_compatible) in Q4A: quants [r1 - r0, cols / 32, 16],
// scales and offsets [r1 - r0, cols / 32] fp32. Q4_K sub-block j: s = d * sc_j and
// m = -(dmin * m_j), as cpu::dequantize_row computes d * sc * q - dmin * m; Q4_0: s = d,
// m = -8 * d; Q4_1: s = d, m = m; MLX: s = scale, m = bias of the block's group.
void repack_q4a(const WeightMatrix& w, int64_t r0, int64_t r1, uint8_t* quants, float* scales,
                float* offsets);

// One Q4A row back to fp32: out[c] = s * q + m (how the GPU reads it).
// quants: [cols / 32, 16]; scales, offsets: [cols / 32]; out: [cols].
void dequant_q4a_row(const uint8_t* quants, const float* scales, const float* offsets, int64_t cols,
                     float* out);

// The device format of a stack of matrices with the same cols: Q8_0 / Q4_0 when every part has
// it (and cols % 32 == 0), Q8_0 when every part is Q5_0 or Q8_0, else Q4A when every part is
// q4a_compatible, else BF16 (any format, expanded by cpu::weight_row).
DType device_format(const std::vector<const WeightMatrix*>& parts);

// A stack of matrices in its device layout, in host memory.
struct HostDeviceMatrix {
  DType dtype = DType::BF16;  // BF16, Q8_0, Q4_0 or kDeviceQ4A
  int64_t rows = 0, cols = 0;
  size_t row_bytes = 0;         // between rows of data
  std::vector<uint8_t> data;    // BF16: bf16 [rows, cols]; else quants [rows, cols / 32, 32 or 16]
  std::vector<uint8_t> scales;  // Q8_0 / Q4_0: f16 [rows, cols / 32]; Q4A: fp32; BF16: empty
  std::vector<float> offsets;   // Q4A: [rows, cols / 32]; else empty
  std::string label;            // e.g. "Q4A from Q4_K", "BF16 from Q6_K+Q4_K", "Q8_0"
};

// Stacks the rows of parts (same cols; rows of part i follow those of part i - 1) in the format
// device_format(parts) picks.
HostDeviceMatrix pack_stacked(const std::vector<const WeightMatrix*>& parts);

// "Q4A" for kDeviceQ4A, else name(t).
std::string device_format_name(DType t);

}  // namespace jinx
