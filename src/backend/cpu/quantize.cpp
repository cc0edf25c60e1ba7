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
#include <limits>

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

// --- Q4_K (llama.cpp's quantize_row_q4_K_ref, restated) ---------------------------------------
//
// Bit-exactness with llama.cpp needs every fp32 operation done as written, one rounding per
// operation: the llama.cpp build it is compared with (llama-cpp-python's libggml-base) is
// compiled for baseline x86-64, so none of its products are fused into an FMA. Contraction is
// therefore switched off for this part of the file (GCC contracts by default in C++).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif

// Round half to even, as ggml's nearest_int (fval + 1.5 * 2^23) does for |v| < 2^22; clamped
// first so that no float converts out of range.
inline int nearest_int(float v) {
  return static_cast<int>(std::nearbyint(std::min(4194303.0f, std::max(-4194303.0f, v))));
}

constexpr int kQ4kSub = 32;                // elements per sub-block
constexpr int kQ4kNSub = kQK_K / kQ4kSub;  // 8 sub-blocks per super-block

// Weighted least-squares fit of x ~ scale * L + min with L in [0, nmax] (make_qkx2_quants with
// rmin -1, rdelta 0.1, 20 steps, squared error): a first guess from the range, then 21
// candidate scales, each refined by a closed-form fit, the best kept. Returns the scale;
// *neg_min = -min (>= 0).
float fit_scale_min(const float* x, const float* w, uint8_t* L, float* neg_min) {
  constexpr int n = kQ4kSub, nmax = 15, nstep = 20;
  constexpr float rmin = -1.0f, rdelta = 0.1f;
  float min = x[0], max = x[0], sum_w = w[0], sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    std::memset(L, 0, n);
    *neg_min = -min;
    return 0.0f;
  }
  float iscale = nmax / (max - min);
  float scale = 1 / iscale;
  float best_err = 0;
  for (int i = 0; i < n; ++i) {
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min)))));
    const float diff = scale * L[i] + min - x[i];
    best_err += w[i] * (diff * diff);
  }
  uint8_t Laux[n];
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * is + nmax) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = std::max(0, std::min(nmax, nearest_int(iscale * (x[i] - min))));
      Laux[i] = static_cast<uint8_t>(l);
      const float fl = static_cast<float>(l);
      sum_l += w[i] * fl;
      sum_l2 += w[i] * fl * fl;
      sum_xl += w[i] * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (!(D > 0)) continue;
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
    float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
    if (this_min > 0) {
      this_min = 0;
      this_scale = sum_xl / sum_l2;
    }
    float err = 0;
    for (int i = 0; i < n; ++i) {
      const float diff = this_scale * Laux[i] + this_min - x[i];
      err += w[i] * (diff * diff);
    }
    if (err < best_err) {
      std::memcpy(L, Laux, n);
      best_err = err;
      scale = this_scale;
      min = this_min;
    }
  }
  *neg_min = -min;
  return scale;
}

// One super-block of 256: x [256] -> b (144 bytes). Per sub-block a weighted fit (weights
// rms(sub-block) + |x|), the 8 scales and 8 mins then quantized to 6 bits against the largest
// (d = max_scale / 63, dmin = max_min / 63, both f16), and the values re-quantized with the
// 6-bit scales actually stored.
void q4_k_block(const float* x, uint8_t* b) {
  uint8_t L[kQK_K];
  float scales[kQ4kNSub], mins[kQ4kNSub], w[kQ4kSub];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < kQ4kNSub; ++j) {
    const float* xs = x + kQ4kSub * j;
    float sum_x2 = 0;
    for (int l = 0; l < kQ4kSub; ++l) sum_x2 += xs[l] * xs[l];
    const float av_x = std::sqrt(sum_x2 / kQ4kSub);
    for (int l = 0; l < kQ4kSub; ++l) w[l] = av_x + std::fabs(xs[l]);
    scales[j] = fit_scale_min(xs, w, L + kQ4kSub * j, &mins[j]);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
  const float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
  uint8_t* sc = b + offsetof(BlockQ4_K, scales);
  std::memset(sc, 0, kKScaleBytes);
  for (int j = 0; j < kQ4kNSub; ++j) {
    // nearest_int of a non-negative value <= 63 (+ rounding): fits the 6 bits after min(63).
    const uint8_t ls = static_cast<uint8_t>(std::min(63, nearest_int(inv_scale * scales[j]) & 255));
    const uint8_t lm = static_cast<uint8_t>(std::min(63, nearest_int(inv_min * mins[j]) & 255));
    if (j < 4) {
      sc[j] = ls;
      sc[j + 4] = lm;
    } else {
      sc[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      sc[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      sc[j] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
  store_f16(b + offsetof(BlockQ4_K, d), max_scale / 63.0f);
  store_f16(b + offsetof(BlockQ4_K, dmin), max_min / 63.0f);
  uint16_t dh, mh;
  std::memcpy(&dh, b + offsetof(BlockQ4_K, d), 2);
  std::memcpy(&mh, b + offsetof(BlockQ4_K, dmin), 2);
  const float d_all = f16_to_f32(dh), dmin_all = f16_to_f32(mh);
  for (int j = 0; j < kQ4kNSub; ++j) {
    const uint8_t s6 =
        j < 4 ? (sc[j] & 63) : static_cast<uint8_t>((sc[j + 4] & 0xF) | ((sc[j - 4] >> 6) << 4));
    const uint8_t m6 =
        j < 4 ? (sc[j + 4] & 63) : static_cast<uint8_t>((sc[j + 4] >> 4) | ((sc[j] >> 6) << 4));
    const float d = d_all * s6;
    if (d == 0.0f) continue;  // the fit's L stays (as in llama.cpp)
    const float dm = dmin_all * m6;
    for (int i = 0; i < kQ4kSub; ++i)
      L[kQ4kSub * j + i] = static_cast<uint8_t>(
          std::max(0, std::min(15, nearest_int((x[kQ4kSub * j + i] + dm) / d))));
  }
  // Sub-blocks 2k and 2k+1 share 32 bytes: the first in the low nibbles, the second in the high.
  uint8_t* q = b + offsetof(BlockQ4_K, qs);
  for (int j = 0; j < kQK_K; j += 64, q += 32)
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
}

#if defined(__clang__)
#pragma clang fp contract(on)
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif

void check_row(DType t, const float* x, int64_t n) {
  if (!can_quantize_to(t)) fail("cannot quantize to ", name(t), " (only Q8_0, Q4_0 and Q4_K)");
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
  } else if (t == DType::Q4_K) {
    for (int64_t i = 0; i < nb; ++i) q4_k_block(x + i * kQK_K, dst + i * sizeof(BlockQ4_K));
  } else {
    for (int64_t i = 0; i < nb; ++i) q4_0_block(x + i * kQK4_0, dst + i * sizeof(BlockQ4_0));
  }
}

// --- MLX affine (mlx.core.quantize, mode "affine"), restated -----------------------------------

void store_scale(DType t, void* base, int64_t i, float v) {
  auto* p = static_cast<uint8_t*>(base);
  if (t == DType::F32) {
    std::memcpy(p + 4 * i, &v, 4);
  } else {
    const uint16_t h = t == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
    std::memcpy(p + 2 * i, &h, 2);
  }
}

// One group: x [group] -> group * bits / 32 words; its scale and bias in fp32. The scale is the
// range over 2^bits - 1 (at least 1e-7), signed and snapped so that the endpoint of larger
// magnitude ("edge") is exactly q0 * scale; the bias is that endpoint, q = rint((x - bias) /
// scale) clamped to [0, 2^bits - 1]. The values are quantized with the fp32 scale and bias;
// only their stored copies are rounded to the scale type (as MLX does).
void mlx_group(const float* x, int group, int bits, uint32_t* words, float* scale_out,
               float* bias_out) {
  const float n_bins = static_cast<float>((1 << bits) - 1);
  float w_min = std::numeric_limits<float>::infinity(), w_max = -w_min;
  for (int j = 0; j < group; ++j) {
    w_max = std::max(w_max, x[j]);
    w_min = std::min(w_min, x[j]);
  }
  const bool mask = std::fabs(w_min) > std::fabs(w_max);
  float scale = std::max((w_max - w_min) / n_bins, 1e-7f);
  scale = mask ? scale : -scale;
  const float edge = mask ? w_min : w_max;
  const float q0 = std::rint(edge / scale);
  float bias = 0;
  if (q0 != 0) {
    scale = edge / q0;
    bias = edge;
  }
  const int per_word = 32 / bits;
  for (int k = 0; k < group / per_word; ++k) {
    uint32_t word = 0;
    for (int e = 0; e < per_word; ++e) {
      const float q =
          std::min(std::max(std::rint((x[k * per_word + e] - bias) / scale), 0.0f), n_bins);
      word |= static_cast<uint32_t>(q) << (e * bits);
    }
    words[k] = word;
  }
  *scale_out = scale;
  *bias_out = bias;
}

void check_mlx_args(int bits, int group_size, DType scale_dtype, int64_t n) {
  if (bits != 2 && bits != 4 && bits != 8)
    fail("MLX quantization: bits must be 2, 4 or 8, not ", bits);
  if (group_size != 32 && group_size != 64 && group_size != 128)
    fail("MLX quantization: group size must be 32, 64 or 128, not ", group_size);
  if (scale_dtype != DType::F32 && scale_dtype != DType::F16 && scale_dtype != DType::BF16)
    fail("MLX quantization: scales must be F32, F16 or BF16, not ", name(scale_dtype));
  if (n <= 0 || n % group_size != 0)
    fail("MLX quantization: a row of ", n, " values is not a whole number of groups of ",
         group_size);
}

// The unchecked row loop shared by quantize_row_mlx and quantize_matrix_mlx.
void mlx_row(const float* x, int64_t n, int bits, int group_size, DType scale_dtype,
             uint32_t* words, void* scales, void* biases) {
  const int64_t words_per_group = group_size * bits / 32;
  for (int64_t g = 0; g < n / group_size; ++g) {
    float s, b;
    mlx_group(x + g * group_size, group_size, bits, words + g * words_per_group, &s, &b);
    store_scale(scale_dtype, scales, g, s);
    store_scale(scale_dtype, biases, g, b);
  }
}

}  // namespace

bool can_quantize_to(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K;
}

void quantize_row_q8_0(const float* x, void* dst, int64_t n) {
  quantize_row(DType::Q8_0, x, dst, n);
}

void quantize_row_q4_0(const float* x, void* dst, int64_t n) {
  quantize_row(DType::Q4_0, x, dst, n);
}

void quantize_row_q4_k(const float* x, void* dst, int64_t n) {
  quantize_row(DType::Q4_K, x, dst, n);
}

void quantize_row(DType t, const float* x, void* dst, int64_t n) {
  check_row(t, x, n);
  quantize_blocks(t, x, static_cast<uint8_t*>(dst), n);
}

namespace {

// Calls fn(r, fp32 row r) for every row of the dense matrix w, rows split over the pool. Workers
// must not throw: a row holding NaN or infinity is skipped and the first one reported after.
template <class F>
void for_each_row(const WeightMatrix& w, ThreadPool& pool, F&& fn) {
  std::atomic<int64_t> bad_row{-1};
  pool.parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> row(static_cast<size_t>(w.cols));
    for (int64_t r = r0; r < r1; ++r) {
      const auto* src = static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_bytes;
      dequantize_row(w.dtype, src, row.data(), w.cols);
      if (!all_finite(row.data(), w.cols)) {
        int64_t none = -1;
        bad_row.compare_exchange_strong(none, r);
        continue;
      }
      fn(r, row.data());
    }
  });
  if (bad_row.load() >= 0) fail("row ", bad_row.load(), " holds NaN or infinity: not quantized");
}

}  // namespace

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
  for_each_row(w, pool, [&](int64_t r, const float* row) {
    quantize_blocks(t, row, out + static_cast<size_t>(r) * rb, w.cols);
  });
  WeightMatrix q;
  q.dtype = t;
  q.data = out;
  q.rows = w.rows;
  q.cols = w.cols;
  q.row_bytes = rb;
  return q;
}

void quantize_row_mlx(const float* x, int64_t n, int bits, int group_size, DType scale_dtype,
                      uint32_t* words, void* scales, void* biases) {
  check_mlx_args(bits, group_size, scale_dtype, n);
  if (!all_finite(x, n)) fail("cannot quantize a row holding NaN or infinity");
  mlx_row(x, n, bits, group_size, scale_dtype, words, scales, biases);
}

bool can_quantize_matrix_mlx(const WeightMatrix& w, int group_size) {
  const bool dense = w.dtype == DType::F32 || w.dtype == DType::F16 || w.dtype == DType::BF16;
  return dense && !w.is_mlx() && w.rows >= 0 && w.cols > 0 && group_size > 0 &&
         w.cols % group_size == 0 && w.data != nullptr;
}

WeightMatrix quantize_matrix_mlx(const WeightMatrix& w, int bits, int group_size,
                                 std::vector<uint8_t>* storage, ThreadPool& pool) {
  if (!can_quantize_matrix_mlx(w, group_size))
    fail("cannot MLX-quantize a ", name(w.dtype), " [", w.rows, ", ", w.cols,
         "] matrix with group ", group_size);
  const DType sdt = w.dtype;  // scales and biases in the checkpoint's float type, as mlx_lm
  check_mlx_args(bits, group_size, sdt, w.cols);
  const size_t rows = static_cast<size_t>(w.rows);
  const size_t row_bytes = static_cast<size_t>(w.cols) / 32 * bits * 4;  // cols % 32 == 0
  const size_t groups = static_cast<size_t>(w.cols / group_size);
  const size_t sb = traits(sdt).block_bytes;
  JINX_CHECK(rows == 0 || row_bytes + 2 * groups * sb <= SIZE_MAX / 2 / rows, "matrix too large");
  // One buffer: words [rows, row_bytes], then scales and biases [rows, groups] each; every part
  // starts 4-byte aligned (row_bytes is a multiple of 4).
  const size_t scales_at = rows * row_bytes, biases_at = scales_at + rows * groups * sb;
  storage->assign(biases_at + rows * groups * sb, 0);
  uint8_t* base = storage->data();
  for_each_row(w, pool, [&](int64_t r, const float* row) {
    const size_t ur = static_cast<size_t>(r);
    mlx_row(row, w.cols, bits, group_size, sdt, reinterpret_cast<uint32_t*>(base + ur * row_bytes),
            base + scales_at + ur * groups * sb, base + biases_at + ur * groups * sb);
  });
  WeightMatrix q;
  q.dtype = DType::U32;
  q.data = base;
  q.rows = w.rows;
  q.cols = w.cols;
  q.row_bytes = row_bytes;
  q.mlx = MlxQuant{bits, group_size, sdt, base + scales_at, base + biases_at};
  return q;
}

}  // namespace jinx::cpu
