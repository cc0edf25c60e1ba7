// CPU kernels. fp32 activations, weights in any WeightMatrix format, fp32 accumulation.
// Each kernel has a scalar reference form; SIMD forms are chosen once at run time by ISA.
#pragma once

#include <cstdint>
#include <span>

#include "backend/weight.h"
#include "core/thread_pool.h"

namespace jinx::cpu {

enum class Isa { kScalar, kAvx2, kAvx512 };
Isa detected_isa();   // what this CPU supports
Isa active_isa();     // what the kernels use (detected, or lowered by set_isa)
void set_isa(Isa isa);  // force a lower level (tests, benchmarks); clamped to detected
const char* isa_name(Isa isa);

// How quantized weights meet activations. Default (false): each token's activations are
// rounded to int8 blocks of 32 (scale max|x| / 127, as llama.cpp's Q8 types) once per matmul
// call and multiplied with integer dot products (quant_act.h, qdot_*.cpp). True: activations
// stay fp32 and meet the dequantized weights in fp32, the exact math of a fp32 reference on the
// dequantized weights. Process-wide; dense weights (F32/F16/BF16) always use fp32 activations.
void set_exact_activations(bool exact);
bool exact_activations();

// Row `row` of w, dequantized to fp32 (cols floats).
void weight_row(const WeightMatrix& w, int64_t row, float* out);

// y[t, r] = sum_c w[r, c] * x[t, c] (x rounded to 8 bits for quantized w unless
// exact_activations()) for t < n_tokens. x: [n_tokens, w.cols], y: [n_tokens, w.rows]
// (row stride ldy, >= w.rows). Parallel over output rows.
void matmul(const WeightMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t ldy,
            ThreadPool& pool);

// Several matrices with the same columns against the same x (q/k/v, gate/up): outputs equal to
// one matmul() each, bit for bit, but the activations are quantized once and every matrix's
// rows share one parallel_for (a GEMV dispatch costs a few microseconds).
struct MatmulPart {
  const WeightMatrix* w;
  float* y;
  int64_t ldy;
};
void matmul_many(std::span<const MatmulPart> parts, const float* x, int64_t n_tokens,
                 ThreadPool& pool);

// Independent products, each with its own input rows (a MoE layer's experts, each over the
// tokens routed to it): outputs equal to one matmul() each, bit for bit, but every part's rows
// share one parallel_for. Parts with the same x (and n_tokens) quantize it once.
struct GroupedPart {
  const WeightMatrix* w;
  const float* x;  // [n_tokens, w->cols]
  int64_t n_tokens;
  float* y;  // [n_tokens, ldy]
  int64_t ldy;
};
void matmul_grouped(std::span<const GroupedPart> parts, ThreadPool& pool);

// out[t, :] = x[t, :] / rms(x[t, :]) * weight, weight fp32 [n]
void rmsnorm(const float* x, const float* weight, float* out, int64_t n_tokens, int64_t n,
             float eps);

// a[i] = silu(a[i]) * b[i]
void silu_mul(float* a, const float* b, int64_t n);
// a[i] = gelu(a[i]) * b[i], GELU in its tanh form (PyTorch's approximate="tanh", Gemma's
// gelu_pytorch_tanh): 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
void gelu_tanh_mul(float* a, const float* b, int64_t n);

// In-place softmax over n values; returns nothing, handles -inf entries.
void softmax(float* x, int64_t n);
// The same with one more logit, `sink`, in the sum (gpt-oss's attention sinks): x[i] becomes
// e^x[i] / (e^sink + sum_j e^x[j]), so the n values add up to less than one.
void softmax_with_sink(float* x, int64_t n, float sink);

float dot_f32(const float* a, const float* b, int64_t n);
// y += a * x
void axpy_f32(float a, const float* x, float* y, int64_t n);

}  // namespace jinx::cpu
