// Weight × activation products for every weight format, parallel over output rows.
//
// Quantized weights (default mode): the activations are rounded to int8 blocks once per call
// (quant_act.h) and the integer-dot kernels (qdot_*.cpp) take over: GEMV straight off the
// stored rows for up to 4 tokens, GEMM over rows decoded once per block for more.
// Exact mode and dense weights: small batches (decode) run the fused fp32 row-dot kernels
// straight off the stored format; larger batches (prefill chunks) dequantize a block of rows
// to fp32 once into a per-thread buffer and reuse it for every token, tiling tokens so the
// activations stay in L2.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <vector>

#include "backend/cpu/dequant.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/quant_act.h"
#include "backend/cpu/simd.h"
#include "core/check.h"

namespace jinx::cpu {

using detail::kMaxNx;
using detail::RowDotFn;

namespace {

constexpr int64_t kRowBlock = 18;    // rows dequantized together (a multiple of kTileRows)
constexpr int64_t kTokenBlock = 64;  // tokens per L2 tile
constexpr int64_t kFusedMaxTokens = 16;  // dense weights: matmul_fused up to this many tokens
constexpr int64_t kQRowBlock = 16;   // rows per task of the integer GEMM

std::atomic<bool>& exact_flag() {
  static std::atomic<bool> f{false};
  return f;
}

detail::QKernels pick_qkernels(const WeightMatrix& w) {
  const detail::QFormat f = detail::qformat(w);
  if (f == detail::QFormat::kNone) return {};
  switch (active_isa()) {
    case Isa::kAvx512: {
      detail::QKernels k = detail::qdot_avx512(f);
      return k.gemv ? k : detail::qdot_avx2(f);  // AVX-512 without VNNI
    }
    case Isa::kAvx2:
      return detail::qdot_avx2(f);
    case Isa::kScalar:
      return detail::qdot_scalar(f);
  }
  return {};
}

// Integer path: activations quantized once on the calling thread, shared by every task.
void matmul_quantized(const WeightMatrix& w, const detail::QKernels& k, const float* x, int64_t n,
                      float* y, int64_t ldy, ThreadPool& pool) {
  thread_local QuantActBuffer buf;
  const QuantActs a = buf.quantize(x, n, w.cols, n > kMaxNx ? &pool : nullptr);
  if (n <= kMaxNx) {
    // Small dynamic ranges keep both cores busy to the end of the matrix; whole groups of 16
    // rows (the AVX-512 GEMV's unit).
    const int64_t grain = std::max<int64_t>(1, w.rows / (pool.size() * 8 * 16)) * 16;
    pool.parallel_for(w.rows, grain, [&](int64_t b, int64_t e) { k.gemv(w, b, e, a, y, ldy); });
    return;
  }
  const int64_t n_blocks = (w.rows + kQRowBlock - 1) / kQRowBlock;
  pool.parallel_for(n_blocks, 1, [&](int64_t b, int64_t e) {
    k.gemm(w, b * kQRowBlock, std::min(w.rows, e * kQRowBlock), a, y, ldy);
  });
}

RowDotFn pick_kernel(DType t) {
  switch (active_isa()) {
    case Isa::kAvx512:
      return detail::row_dot_avx512(t);
    case Isa::kAvx2:
      return detail::row_dot_avx2(t);
    case Isa::kScalar:
      return detail::row_dot_scalar(t);
  }
  return nullptr;
}

const uint8_t* row_ptr(const WeightMatrix& w, int64_t r) {
  return static_cast<const uint8_t*>(w.data) + static_cast<size_t>(r) * w.row_bytes;
}

void check_matrix(const WeightMatrix& w) {
  JINX_CHECK(w.data != nullptr && w.rows > 0 && w.cols > 0, "matmul: empty weight");
  if (!w.is_mlx()) {
    auto rb = bytes_for(w.dtype, w.cols);
    JINX_CHECK(rb && *rb <= w.row_bytes, "matmul: row_bytes too small for ", w.cols, " ",
               name(w.dtype));
  }
}

// Decode-sized batches: one fused pass over each weight row for every token, kMaxNx at a time
// (a row read from memory once, then from L1 for the next group: up to kFusedMaxTokens tokens,
// e.g. a decode step with speculative guesses, this beats converting the rows to fp32 first).
void matmul_fused(const WeightMatrix& w, RowDotFn k, const float* x, int64_t n, float* y,
                  int64_t ldy, ThreadPool& pool) {
  const int64_t grain = std::max<int64_t>(1, w.rows / (pool.size() * 8));
  pool.parallel_for(w.rows, grain, [&](int64_t b, int64_t e) {
    const float* xs[kMaxNx];
    float out[kMaxNx];
    for (int64_t r = b; r < e; ++r) {
      for (int64_t t = 0; t < n; t += kMaxNx) {
        const int nx = static_cast<int>(std::min<int64_t>(kMaxNx, n - t));
        for (int j = 0; j < nx; ++j) xs[j] = x + (t + j) * w.cols;
        k(row_ptr(w, r), xs, nx, w.cols, out);
        for (int j = 0; j < nx; ++j) y[(t + j) * ldy + r] = out[j];
      }
    }
  });
}

// One block of rows [r0, r1) against all tokens, rows already fp32 in `rows`: kTileRows x
// kTileTokens register tiles where the ISA has them, row-dots for the rest (the same sums
// either way).
void block_times_tokens(const float* rows, int64_t n_rows, int64_t r0, int64_t cols, const float* x,
                        int64_t n, float* y, int64_t ldy, RowDotFn f32, detail::TileFn tile) {
  constexpr int NR = detail::kTileRows;
  const int64_t tiled_rows = tile ? n_rows - n_rows % NR : 0;
  for (int64_t t0 = 0; t0 < n; t0 += kTokenBlock) {
    const int64_t t1 = std::min(n, t0 + kTokenBlock);
    constexpr int NT = detail::kTileTokens;
    const int64_t tiled_end = t0 + (t1 - t0) / NT * NT;
    for (int64_t i = 0; i < tiled_rows; i += NR) {
      for (int64_t t = t0; t < tiled_end; t += NT) {
        const float* xs[NT];
        for (int j = 0; j < NT; ++j) xs[j] = x + (t + j) * cols;
        float out[NR * NT];
        tile(rows + i * cols, cols, xs, cols, out);
        for (int a = 0; a < NR; ++a)
          for (int j = 0; j < NT; ++j) y[(t + j) * ldy + r0 + i + a] = out[a * NT + j];
      }
    }
    for (int64_t i = 0; i < n_rows; ++i) {
      const float* wr = rows + i * cols;
      // Tiled rows still need the tokens past the last full tile; the others need them all.
      for (int64_t t = i < tiled_rows ? tiled_end : t0; t < t1; t += kMaxNx) {
        const int nx = static_cast<int>(std::min<int64_t>(kMaxNx, t1 - t));
        const float* xs[kMaxNx];
        float out[kMaxNx];
        for (int j = 0; j < nx; ++j) xs[j] = x + (t + j) * cols;
        f32(wr, xs, nx, cols, out);
        for (int j = 0; j < nx; ++j) y[(t + j) * ldy + r0 + i] = out[j];
      }
    }
  }
}

void matmul_blocked(const WeightMatrix& w, const float* x, int64_t n, float* y, int64_t ldy,
                    ThreadPool& pool) {
  RowDotFn f32 = pick_kernel(DType::F32);
  const detail::TileFn tile = active_isa() == Isa::kAvx512 ? detail::tile_f32_avx512() : nullptr;
  const int64_t n_blocks = (w.rows + kRowBlock - 1) / kRowBlock;
  pool.parallel_for(n_blocks, 1, [&](int64_t b, int64_t e) {
    thread_local std::vector<float> buf;
    for (int64_t blk = b; blk < e; ++blk) {
      const int64_t r0 = blk * kRowBlock;
      const int64_t nr = std::min(kRowBlock, w.rows - r0);
      const float* rows;
      const uint8_t* first = row_ptr(w, r0);
      // fp32 rows are used in place only where they are contiguous and float-aligned.
      if (w.dtype == DType::F32 && !w.is_mlx() && w.row_bytes == w.cols * sizeof(float) &&
          reinterpret_cast<uintptr_t>(first) % alignof(float) == 0) {
        rows = reinterpret_cast<const float*>(first);
      } else {
        buf.resize(static_cast<size_t>(nr * w.cols));
        for (int64_t i = 0; i < nr; ++i) weight_row(w, r0 + i, buf.data() + i * w.cols);
        rows = buf.data();
      }
      block_times_tokens(rows, nr, r0, w.cols, x, n, y, ldy, f32, tile);
    }
  });
}

}  // namespace

void set_exact_activations(bool exact) {
  exact_flag().store(exact);
}
bool exact_activations() {
  return exact_flag().load(std::memory_order_relaxed);
}

void weight_row(const WeightMatrix& w, int64_t row, float* out) {
  JINX_CHECK(row >= 0 && row < w.rows, "weight_row: row ", row, " out of range ", w.rows);
  if (w.is_mlx()) {
    detail::mlx_dequant_row(w, row, out);
    return;
  }
  dequantize_row(w.dtype, row_ptr(w, row), out, w.cols);
}

void matmul_many(std::span<const MatmulPart> parts, const float* x, int64_t n, ThreadPool& pool) {
  if (parts.empty() || n == 0) return;
  // matmul_grouped with one x: it is quantized once and every matrix's rows share a parallel_for.
  thread_local std::vector<GroupedPart> grouped;
  grouped.clear();
  for (const MatmulPart& p : parts) {
    JINX_CHECK(p.w->cols == parts[0].w->cols, "matmul_many: the matrices' column counts differ");
    grouped.push_back({p.w, x, n, p.y, p.ldy});
  }
  matmul_grouped(grouped, pool);
}

void matmul_grouped(std::span<const GroupedPart> parts, ThreadPool& pool) {
  bool integer = !exact_activations();
  std::vector<detail::QKernels> ks;
  for (const GroupedPart& p : parts) {
    check_matrix(*p.w);
    JINX_CHECK(p.n_tokens >= 0 && p.ldy >= p.w->rows, "matmul: bad output stride");
    if (integer) ks.push_back(pick_qkernels(*p.w));
    integer = integer && ks.back().gemv;
  }
  if (!integer) {  // fp32 activations: one call each
    for (const GroupedPart& p : parts) matmul(*p.w, p.x, p.n_tokens, p.y, p.ldy, pool);
    return;
  }
  // Each distinct input quantized once (as matmul_quantized does it: the same codes), then one
  // parallel_for over every part's rows in matmul_quantized's tasks.
  thread_local std::vector<QuantActBuffer> bufs;
  std::vector<QuantActs> acts(parts.size());
  size_t n_bufs = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const GroupedPart& p = parts[i];
    size_t same = i;
    for (size_t j = 0; j < i && same == i; ++j)
      if (parts[j].x == p.x && parts[j].n_tokens == p.n_tokens && parts[j].w->cols == p.w->cols)
        same = j;
    if (same != i) {
      acts[i] = acts[same];
      continue;
    }
    if (n_bufs == bufs.size()) bufs.emplace_back();
    acts[i] =
        bufs[n_bufs++].quantize(p.x, p.n_tokens, p.w->cols, p.n_tokens > kMaxNx ? &pool : nullptr);
  }
  struct Task {
    int32_t part;
    int64_t r0, r1;
  };
  thread_local std::vector<Task> task_buf;
  std::vector<Task>& tasks = task_buf;
  tasks.clear();
  int64_t total = 0;
  for (const GroupedPart& p : parts) total += p.n_tokens > 0 ? p.w->rows : 0;
  const int64_t gemv_step = std::max<int64_t>(1, total / (pool.size() * 8 * 16)) * 16;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (parts[i].n_tokens == 0) continue;
    const int64_t step = parts[i].n_tokens <= kMaxNx ? gemv_step : kQRowBlock;
    for (int64_t r = 0; r < parts[i].w->rows; r += step)
      tasks.push_back({static_cast<int32_t>(i), r, std::min(parts[i].w->rows, r + step)});
  }
  pool.parallel_for(static_cast<int64_t>(tasks.size()), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const Task& t = tasks[i];
      const GroupedPart& p = parts[t.part];
      if (p.n_tokens <= kMaxNx)
        ks[t.part].gemv(*p.w, t.r0, t.r1, acts[t.part], p.y, p.ldy);
      else
        ks[t.part].gemm(*p.w, t.r0, t.r1, acts[t.part], p.y, p.ldy);
    }
  });
}

void matmul(const WeightMatrix& w, const float* x, int64_t n, float* y, int64_t ldy,
            ThreadPool& pool) {
  check_matrix(w);
  JINX_CHECK(n >= 0 && ldy >= w.rows, "matmul: bad output stride");
  if (n == 0) return;
  if (!exact_activations()) {
    const detail::QKernels qk = pick_qkernels(w);
    if (qk.gemv) {
      matmul_quantized(w, qk, x, n, y, ldy, pool);
      return;
    }
  }
  RowDotFn fused = w.is_mlx() ? nullptr : pick_kernel(w.dtype);
  if (fused && n <= kFusedMaxTokens) {
    matmul_fused(w, fused, x, n, y, ldy, pool);
    return;
  }
  matmul_blocked(w, x, n, y, ldy, pool);
}

}  // namespace jinx::cpu
