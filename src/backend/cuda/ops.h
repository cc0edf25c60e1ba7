// CUDA kernels, each the twin of a CPU kernel in backend/cpu/ (same math, same layouts), so that
// the op-parity tests can hold one against the other. All pointers are device pointers unless a
// comment says otherwise; every launch goes to the given stream and returns at once (no sync).
// Activations are fp32 between kernels, as on the CPU; weights stay in their storage format
// (BF16, Q8_0, Q4_0, and 4-bit affine for Q4_K / Q4_1 / MLX 4-bit; others are converted to BF16
// at upload) and are dequantized in registers.
//
// Nothing here reads a host value that changes from step to step except through kernel
// arguments fixed at launch, and no kernel's grid depends on data in device memory, so the
// decode step can be captured once in a CUDA graph and replayed with new metadata in the same
// device buffers.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

typedef struct cublasContext* cublasHandle_t;

namespace jinx::sampling {
struct RowSampling;
}

namespace jinx::cuda {

// Throws jinx::Error with the CUDA error string (a bad launch, out of memory, ...).
void check(cudaError_t e, const char* what);
// The GPU's name, memory and compute capability, e.g. "NVIDIA H200 (sm_90, 139 GiB)".
std::string describe_device(int device);
int device_count();  // 0 when there is no driver or no GPU (never throws)

// A weight matrix in device memory: [rows = out_features, cols = in_features], row-major,
// row_bytes between rows of `data`. dtype BF16: data bf16 [rows, cols]. The block formats are
// repacked at upload so that quants and scales are each aligned for vector loads:
// Q8_0: data int8 [rows, cols] (x = d * q), scales f16 [rows, cols / 32];
// Q4_0: data uint8 [rows, cols / 32, 16], each block's 16 bytes as in the file (element j in
// the low nibble of byte j, element j + 16 in the high one; x = d * (q - 8)), scales as Q8_0.
// Q4_1 tags the 4-bit affine format "Q4A" (model/device_repack.h), which holds GGUF Q4_K, Q4_1
// and MLX 4-bit weights exactly: data as Q4_0 with x = s * q + m (q in 0..15), scales s and
// offsets m fp32 [rows, cols / 32] (not f16 as in a Q4_1 file).
struct DeviceMatrix {
  DType dtype = DType::BF16;
  const void* data = nullptr;
  const void* scales = nullptr;
  int64_t rows = 0, cols = 0;
  size_t row_bytes = 0;
  const void* offsets = nullptr;  // Q4_1 (Q4A) only
};
constexpr DType kQ4A = DType::Q4_1;
bool supported_weight_dtype(DType t);

// What a matmul needs besides its operands: the stream, a cuBLAS handle and scratch memory for
// the bf16 copies of activations (and, with JINX_QGEMM=0, of dequantized weights) that the
// cuBLAS path uses; cuBLASLt's workspace (blas_lt.h; null: none), which may be the one given
// to cuBLAS with cublasSetWorkspace (both run in stream order).
struct MatmulContext {
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  void* scratch = nullptr;   // device
  size_t scratch_bytes = 0;  // >= matmul_scratch_bytes(...) of every call
  void* workspace = nullptr;  // device
  size_t workspace_bytes = 0;
};
// Scratch bytes a matmul of w with n_tokens rows needs.
size_t matmul_scratch_bytes(const DeviceMatrix& w, int64_t n_tokens);

// How a matmul reads its input rows. kPlain: x [n_tokens, w.cols] as it is. kRmsNorm: the rows
// of x normalized as rmsnorm(x, norm_w, eps) does. kSiluMul: x is gate|up [n_tokens,
// 2 * w.cols] and the input is silu(gate) * up, as silu_mul() computes it. The GEMV applies
// the transform while staging its input rows in shared memory (no kernel of its own, no
// round trip through memory); otherwise (many tokens, rows too long to stage) the transform
// runs first into tmp ([n_tokens, w.cols] fp32, device).
struct MatmulInput {
  enum Kind { kPlain = 0, kRmsNorm = 1, kSiluMul = 2 };
  Kind kind = kPlain;
  const float* norm_w = nullptr;  // kRmsNorm: [w.cols]
  float eps = 0.0f;
  float* tmp = nullptr;
  bool fuse = true;  // false: always the separate transform (for comparisons)
};

// y[t, r] = sum_c w[r, c] * x[t, c] for t < n_tokens (x as `in` reads it). x: [n_tokens,
// w.cols] fp32, y: [n_tokens, ldy] fp32 (ldy >= w.rows). Few tokens: a GEMV kernel that
// streams each weight row once for all tokens; many tokens: quantized weights on the GEMM of
// qgemm.h, BF16 weights on cuBLASLt (cuBLAS where it has no algorithm) with x rounded to bf16
// (fp32 accumulation). bias: [w.rows] fp32 added to every row of y, or null. accumulate: y += the
// product (+ bias) instead of y = (a residual connection in the epilogue).
void matmul(const DeviceMatrix& w, const float* x, int64_t n_tokens, float* y, int64_t ldy,
            const MatmulContext& ctx, const float* bias = nullptr, const MatmulInput& in = {},
            bool accumulate = false);
// Builds now what matmul() of w would otherwise build on first use: the GEMV compiled at run
// time for w's shape unless JINX_NVRTC=0 (backend/cuda/gemv_jit.h). Call it for every weight
// before a CUDA graph capture (nothing can be compiled or loaded during one: a shape not built
// by then runs the precompiled kernel). A no-op otherwise; a failed build is logged once.
void matmul_prepare(const DeviceMatrix& w, bool gated = false);
// The MLP's gate and up projections and its activation in one GEMV: w is [gate; up] stacked
// ([2 * n, cols]), y[t, r] = silu(gate_r . x_t + bias[r]) * (up_r . x_t + bias[n + r]) for
// r < n (y: [n_tokens, ldy], ldy >= n), `in` (a norm) applied as matmul() applies it. A warp
// reads both rows of an output, so the gate/up product is never written and no SiLU kernel
// runs. For up to kGemvMaxTokens tokens (matmul_gates); the arithmetic is matmul() followed by
// silu_mul(), value for value.
bool matmul_gates(const DeviceMatrix& w, int64_t n_tokens);
// For an A/B: single-token precompiled GEMVs (not the gated one, not run-time compiled ones)
// take two adjacent rows per warp, reading each input chunk once for both (JINX_GEMV_ROW_PAIRS=1
// sets it at start; off by default, not yet measured on a GPU).
void set_gemv_row_pairs(bool on);
void matmul_gated_silu(const DeviceMatrix& w, const float* x, int64_t n_tokens, float* y,
                       int64_t ldy, const MatmulContext& ctx, const float* bias = nullptr,
                       const MatmulInput& in = {});
// Whether matmul() applies `in` inside the GEMV for this many tokens of w (else it runs the
// transform into in.tmp first).
bool matmul_fuses_input(const DeviceMatrix& w, const MatmulInput& in, int64_t n_tokens);
// Token counts up to this use the GEMV kernel.
constexpr int64_t kGemvMaxTokens = 8;
// Whether matmul(w, n_tokens, ...) runs on the GEMV kernel (fp32) rather than cuBLAS (bf16 in
// scratch). BF16 weights: up to kGemvMaxTokens. Quantized weights: as long as the GEMV's passes
// (each streams the packed matrix once for kGemvMaxTokens tokens) read fewer bytes than cuBLAS
// needs (the packed matrix read once, expanded to bf16: 2 bytes per weight written and read
// again): Q8_0 up to 32 tokens, Q4A 48, Q4_0 64.
bool matmul_uses_gemv(const DeviceMatrix& w, int64_t n_tokens);

// out[t, :] = row tokens[t] of table, dequantized to fp32. tokens: [n] int32 (device).
// Overlap scheduling: with prev_picks (device, the previous step's picked tokens), an id
// -(k + 1) stands for prev_picks[k]. Ids outside [0, table.rows) otherwise give a row of zeros
// (the host checks ids, and that every placeholder names a picked row, before the step).
void embed(const DeviceMatrix& table, const int32_t* tokens, int64_t n, float* out,
           cudaStream_t s, const int32_t* prev_picks = nullptr);

// out[t, :] = x[t, :] / rms(x[t, :]) * w. x, out: [n_rows, n]; w: [n] fp32. out may be x.
void rmsnorm(const float* x, const float* w, float* out, int64_t n_rows, int64_t n, float eps,
             cudaStream_t s);
// x += r, then out = rmsnorm(x) * w (the residual add fused with the next norm).
void add_rmsnorm(float* x, const float* r, const float* w, float* out, int64_t n_rows, int64_t n,
                 float eps, cudaStream_t s);

// y[t, :n] += bias for token rows t at y + t * ldy.
void add_bias(float* y, int64_t ldy, const float* bias, int64_t n_tokens, int64_t n,
              cudaStream_t s);

// Per-head RMSNorm in place (Qwen3's q/k norm): head h of token t is x[t * ld + h * head_dim ..],
// w: [head_dim].
void rmsnorm_heads(float* x, int64_t ld, int64_t n_tokens, int64_t n_heads, int64_t head_dim,
                   const float* w, float eps, cudaStream_t s);

// Rotates the heads of q and k in place by their token's position (one launch for both): token t's
// heads are q[t * ld ..] ([n_q_heads, head_dim]) and k[t * ld ..] ([n_k_heads, head_dim]). Pairs
// (i, i + head_dim/2), or (2i, 2i+1) when interleaved. inv_freq: [head_dim / 2] fp32.
void rope(float* q, float* k, int64_t ld, int64_t n_tokens, int64_t n_q_heads, int64_t n_k_heads,
          int64_t head_dim, const int32_t* positions, const float* inv_freq, bool interleaved,
          cudaStream_t s);

// out[t, i] = silu(gu[t, i]) * gu[t, n + i]: the gate and up projections side by side in gu
// [n_tokens, 2n] (one matmul computes both). out: [n_tokens, n]
void silu_mul(const float* gu, int64_t n_tokens, int64_t n, float* out, cudaStream_t s);

// One layer's paged cache: k and v [n_blocks, block_size, n_kv_heads] rows, the layout of
// cpu::PagedKv: head_dim elements of F32, F16 or BF16, or head_dim I8 / F8_E4M3 codes followed
// by the row's fp32 scale (cpu::kv_row_bytes(dtype, head_dim) bytes per row).
struct PagedKv {
  void* k = nullptr;
  void* v = nullptr;
  DType dtype = DType::BF16;
  int64_t n_blocks = 0, block_size = 0, n_kv_heads = 0, head_dim = 0;
};

// Writes k/v rows (token t at k + t * ld, n_kv_heads * head_dim fp32) into their slots
// (block * block_size + offset; < 0: skip), converting to kv.dtype (round to nearest even;
// quantized rows byte for byte as cpu::kv_store writes them). Slots >= n_blocks * block_size
// are skipped too (the host checks them).
void kv_store(const PagedKv& kv, const float* k, const float* v, int64_t ld,
              const int64_t* slot_mapping, int64_t n_tokens, cudaStream_t s);

// rope() of q and k followed by kv_store() of the rotated k and v, in one launch (a decode step
// has one such pair per layer). q is rotated in place; k is read and only its rotated copy
// lands in the cache. Rows with a slot outside the pool store nothing.
void rope_kv_store(float* q, const float* k, const float* v, int64_t ld, int64_t n_tokens,
                   int64_t n_q_heads, const int32_t* positions, const float* inv_freq,
                   bool interleaved, const PagedKv& kv, const int64_t* slot_mapping,
                   cudaStream_t s);

// A varlen batch, as cpu::AttnBatch, with the arrays in device memory.
struct AttnBatch {
  int64_t n_seqs = 0;
  int64_t n_tokens = 0;                   // query_start[n_seqs]: query rows in all
  const int32_t* query_start = nullptr;   // [n_seqs + 1]
  const int32_t* context_len = nullptr;   // [n_seqs]
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks_per_seq]
  int64_t max_blocks_per_seq = 0;
  int64_t max_context_len = 0;  // >= every context_len (sizes the split over the KV range)
  // > 0: a launch shape that depends only on n_tokens and max_context_len (for CUDA graphs):
  // every row's context is split into min(this, max_context_len / 32) near-equal pieces, at
  // most kMaxSplits, sized in the kernel from the row's own length. 0: chosen per launch.
  int64_t fixed_split_len = 0;
  // Query tiles of the sequences with at least kPrefillMinRows new rows, for the tensor-core
  // prefill kernel: [n_prefill_tiles, 2] int32 (sequence, first new row), from
  // make_prefill_tiles(). Those sequences' rows are skipped by the row kernel. 0: none.
  const int32_t* prefill_tiles = nullptr;
  int64_t n_prefill_tiles = 0;
};

// The tensor-core prefill kernel (FlashAttention-2 style: 64 query rows x 64 KV positions per
// step, bf16 mma with fp32 accumulation, online softmax) takes sequences with this many new rows
// or more, when kv is bf16, int8 or fp8 (those rows scaled to bf16 as they are loaded) with
// head_dim 64 or 128; decode rows stay on the row kernel.
constexpr int64_t kPrefillMinRows = 16;
constexpr int64_t kPrefillTileRows = 64;
bool prefill_kernel_supported(const PagedKv& kv);
// The tile list for AttnBatch::prefill_tiles from the host copy of query_start [n_seqs + 1]:
// empty when the kernel does not apply.
std::vector<int32_t> make_prefill_tiles(const int32_t* query_start, int64_t n_seqs,
                                        const PagedKv& kv);

// Causal attention over the paged cache, the contract of cpu::paged_attention: query row
// query_start[s] + i is at position context_len[s] - n_new + i and attends to [0, position].
// q: row t at q + t * ldq ([n_heads, head_dim]); out: [n_tokens, n_heads, head_dim] fp32.
// head_dim: 64, 80, 96, 128 or 256.
// scale <= 0: 1/sqrt(head_dim). work: device scratch of attention_work_bytes(...), zeroed once
// before its first use (it holds counters that every launch leaves at zero).
// One kernel for prefill chunks and decode; long contexts are split over the KV range
// (flash decoding) and merged by a second kernel (or, with set_attention_merge_in_kernel(true)
// / JINX_ATTN_MERGE=last-block, by the last block of each row to finish: one launch fewer, but
// measured slower on an H200, bench/RESULTS.md).
// Batches of more than kMaxSplitTokens query rows are never split (and need no work memory).
constexpr int64_t kMaxSplits = 32;
constexpr int64_t kMaxSplitTokens = 64;
size_t attention_work_bytes(int64_t n_tokens, int64_t n_heads, int64_t head_dim);
bool attention_merge_in_kernel();
void set_attention_merge_in_kernel(bool on);
// Decode steps: RoPE and the KV store inside the attention kernel (one launch fewer per layer).
// Every sequence must have exactly one new row, at position context_len - 1 = positions[t];
// k / v hold the rows' unrotated keys and values (row t at k + t * ld). The kernel rotates q as
// it loads it (q stays unrotated in memory), rotates k, stores k and v at slots[t] (a slot
// outside the pool stores nothing) and attends to them from shared memory: what rope_kv_store()
// then paged_attention() compute. bf16, f16 and f32 KV only (attention_fuses_rope()).
struct AttnNewKv {
  const float* k = nullptr;
  const float* v = nullptr;
  int64_t ld = 0;
  const int32_t* positions = nullptr;  // [n_tokens]
  const float* inv_freq = nullptr;     // [head_dim / 2]
  bool interleaved = false;
  const int64_t* slots = nullptr;  // [n_tokens]
};
bool attention_fuses_rope(const PagedKv& kv);
void paged_attention(const float* q, int64_t ldq, float* out, int64_t n_heads, const PagedKv& kv,
                     const AttnBatch& b, float scale, void* work, cudaStream_t s,
                     const AttnNewKv* new_kv = nullptr);

// out[i, :] = x[rows[i], :] for i < n_rows. x: [*, n], rows: [n_rows] int32 (device).
void gather_rows(const float* x, int64_t n, const int32_t* rows, int64_t n_rows, float* out,
                 cudaStream_t s);

// out[r] = argmax_j x[r, j] (lowest index on ties; NaN ignored; 0 for a row of NaN).
// x: [n_rows, n]; keys: device scratch [n_rows].
void argmax_rows(const float* x, int64_t n_rows, int64_t n, int32_t* out,
                 unsigned long long* keys, cudaStream_t s);

// Draws out[r] for the rows with pick[r] == sampling::kPickSample by params[r] (temperature,
// top-k, top-p, min-p and the row's uniform; backend/sample_select.h), -1 for a row whose
// logits hold a NaN or no finite max. Other rows' out is left as it is. x: [n_rows, vocab];
// pick, params: [n_rows] (device). vocab < 2^31.
void sample_rows(const float* x, int64_t n_rows, int64_t vocab, const uint8_t* pick,
                 const sampling::RowSampling* params, int32_t* out, cudaStream_t s);

// Programmatic dependent launch (backend/cuda/common.cuh): whether kernels are launched with it
// (the current device is sm_90 or later and the environment has no JINX_PDL=0), and a switch
// that turns it off for the rest of the process (a launch or a graph capture refused it).
bool pdl_enabled();
void pdl_disable();

// fp32 <-> 16-bit conversions (weights at upload, tests).
void convert_f32_to_bf16(const float* in, uint16_t* out, int64_t n, cudaStream_t s);

}  // namespace jinx::cuda
