// Reference-exact fp32 -> Q8_0 / Q4_0 quantization, written from the formulas of ggml's
// quantize_row_q8_0_ref / quantize_row_q4_0_ref (as gguf-py's quants.py restates them).
//
// Bit-exactness rests on doing the same fp32 operations in the same order: d = amax / 127 (or
// max / -8), id = 1 / d, then x * id, each rounded to fp32. The product x * id of Q4_0 must be
// rounded before 8.5 is added: GCC contracts a * b + c into one FMA in C++ whenever the target
// has FMA (-ffp-contract=fast is its C++ default even with -std=c++20), which skips that
// rounding and turns, e.g., x / d = -5.5 into -5.5000002 and q = 3 into 2 (seen on bf16
// checkpoints). rounded_product() stops the fusion.
//
// Non-finite inputs are refused (a weight file with NaN or inf is broken), and the integer
// conversions are clamped so that no input, not even a denormal scale whose inverse overflows,
// converts an out-of-range float to an integer (undefined behaviour). For finite weights of
// normal size the clamps never change a result.
#include "backend/cpu/quantize.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>

#include "backend/cpu/dequant.h"
#include "core/check.h"
#include "core/half.h"
#include "core/quant_blocks.h"

namespace jinx::cpu {

namespace {

void store_f16(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  std::memcpy(p, &h, sizeof h);
}

bool all_finite(const float* x, int64_t n) {
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) ok &= std::isfinite(x[i]);
  return ok;
}

// One block of 32: x [32] -> b (34 bytes).
void q8_0_block(const float* x, uint8_t* b) {
  float amax = 0.0f;
  for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b + offsetof(BlockQ8_0, d), d);
  int8_t* qs = reinterpret_cast<int8_t*>(b + offsetof(BlockQ8_0, qs));
  for (int j = 0; j < kQK8_0; ++j) {
    const float v = x[j] * id;
    qs[j] = static_cast<int8_t>(std::min(127.0f, std::max(-128.0f, std::round(v))));
  }
}

// a * b rounded to fp32, never fused with what is done to it next.
inline float rounded_product(float a, float b) {
  float p = a * b;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+x"(p));  // p must exist as an fp32 value in a register here: no FMA across
#else
  volatile float v = p;
  p = v;
#endif
  return p;
}

// min(15, trunc(x * id + 8.5)) for one element.
uint8_t q4_nibble(float x, float id) {
  const float t = rounded_product(x, id) + 8.5f;
  return static_cast<uint8_t>(std::min(15.0f, std::max(0.0f, t)));
}

// One block of 32: x [32] -> b (18 bytes).
void q4_0_block(const float* x, uint8_t* b) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < kQK4_0; ++j) {
    if (amax < std::fabs(x[j])) {  // strict: the first of equal magnitudes wins
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  store_f16(b + offsetof(BlockQ4_0, d), d);
  uint8_t* qs = b + offsetof(BlockQ4_0, qs);
  constexpr int kHalf = kQK4_0 / 2;
  for (int j = 0; j < kHalf; ++j)
    qs[j] = static_cast<uint8_t>(q4_nibble(x[j], id) | q4_nibble(x[j + kHalf], id) << 4);
}

void check_row(DType t, const float* x, int64_t n) {
  if (!can_quantize_to(t)) fail("cannot quantize to ", name(t), " (only Q8_0 and Q4_0)");
  if (n < 0 || n % traits(t).block_elems != 0)
    fail("cannot quantize a row of ", n, " values to ", name(t), ": not a multiple of ",
         traits(t).block_elems);
  if (!all_finite(x, n)) fail("cannot quantize a row holding NaN or infinity");
}

// The unchecked row loop shared by quantize_row and quantize_matrix.
void quantize_blocks(DType t, const float* x, uint8_t* dst, int64_t n) {
  const int64_t nb = n / traits(t).block_elems;
  if (t == DType::Q8_0) {
    for (int64_t i = 0; i < nb; ++i) q8_0_block(x + i * kQK8_0, dst + i * sizeof(BlockQ8_0));
  } else {
    for (int64_t i = 0; i < nb; ++i) q4_0_block(x + i * kQK4_0, dst + i * sizeof(BlockQ4_0));
  }
}

}  // namespace

bool can_quantize_to(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0;
}

void quantize_row_q8_0(const float* x, void* dst, int64_t n) {
  quantize_row(DType::Q8_0, x, dst, n);
}

void quantize_row_q4_0(const float* x, void* dst, int64_t n) {
  quantize_row(DType::Q4_0, x, dst, n);
}

void quantize_row(DType t, const float* x, void* dst, int64_t n) {
  check_row(t, x, n);
  quantize_blocks(t, x, static_cast<uint8_t*>(dst), n);
}

bool can_quantize_matrix(const WeightMatrix& w, DType t) {
  const bool dense = w.dtype == DType::F32 || w.dtype == DType::F16 || w.dtype == DType::BF16;
  return can_quantize_to(t) && dense && !w.is_mlx() && w.rows >= 0 && w.cols > 0 &&
         w.cols % traits(t).block_elems == 0 && w.data != nullptr;
}

WeightMatrix quantize_matrix(const WeightMatrix& w, DType t, std::vector<uint8_t>* storage,
                             ThreadPool& pool) {
  if (!can_quantize_matrix(w, t))
    fail("cannot quantize a ", name(w.dtype), " [", w.rows, ", ", w.cols, "] matrix to ", name(t));
  const auto row_bytes = bytes_for(t, w.cols);
  JINX_CHECK(row_bytes.has_value(), "row size overflows");
  const size_t rb = *row_bytes;
  JINX_CHECK(w.rows == 0 || rb <= SIZE_MAX / static_cast<size_t>(w.rows), "matrix too large");
  storage->assign(rb * static_cast<size_t>(w.rows), 0);
  uint8_t* out = storage->data();
  // Workers must not throw: the first row with a non-finite value is reported afterwards.
  std::atomic<int64_t> bad_row{-1};
  constexpr int64_t kGrain = 16;
  pool.parallel_for(w.rows, kGrain, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = r0; r < r1; ++r) {
      const auto* src = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_bytes;
      dequantize_row(w.dtype, src, row.data(), w.cols);
      if (!all_finite(row.data(), w.cols)) {
        int64_t none = -1;
        bad_row.compare_exchange_strong(none, r);
        continue;
      }
      quantize_blocks(t, row.data(), out + static_cast<size_t>(r) * rb, w.cols);
    }
  });
  if (bad_row.load() >= 0) fail("row ", bad_row.load(), " holds NaN or infinity: not quantized");
  WeightMatrix q;
  q.dtype = t;
  q.data = out;
  q.rows = w.rows;
  q.cols = w.cols;
  q.row_bytes = rb;
  return q;
}

}  // namespace jinx::cpu
