// Internal: the inner step of paged_attention, one set per ISA level.
//
// A tile step takes up to kAttnTileKv KV positions (as row pointers into the paged cache, so the
// block size does not matter) and updates the online-softmax state of n_rows query rows: the
// query heads of one GQA group times the query tokens of one tile, all reading the same kv head.
#pragma once

#include <cstdint>

#include "core/dtype.h"

namespace jinx::cpu::detail {

constexpr int64_t kAttnTileKv = 64;    // KV positions per tile step (a multiple of 16)
constexpr int64_t kAttnTileRows = 32;  // target query rows (tokens x group heads) per item

struct AttnTile {
  const float* q;            // [n_rows, head_dim] queries, already multiplied by the scale
  float* o;                  // [n_rows, head_dim] running sum of p * v (not yet divided by l)
  float* m;                  // [n_rows] running max of the scores (-inf before any)
  float* l;                  // [n_rows] running sum of exp(score - m)
  float* s;                  // [n_rows, kAttnTileKv] scratch for scores and probabilities
  const int64_t* n_visible;  // [n_rows] leading tile positions row r may see, in [0, n_kv]
  const void* const* k;      // [n_kv] K rows (see PagedKv: head_dim elements, + a scale if quantized)
  const void* const* v;      // [n_kv] V rows
  float* kv_scratch;         // [2, kAttnTileKv, head_dim] for kernels that convert rows first
  int64_t n_rows, n_kv, head_dim;
  DType dtype;  // F32, F16, BF16, I8 or F8_E4M3
};

using AttendTileFn = void (*)(const AttnTile& t);

// nullptr when this level has no kernel for the head_dim (the caller falls back one level).
AttendTileFn attend_tile_avx512(int64_t head_dim);
AttendTileFn attend_tile_avx2(int64_t head_dim);
AttendTileFn attend_tile_scalar(int64_t head_dim);

// fp32 -> f16 of n values, round to nearest even (the store side of the cache).
void f32_to_f16_row_avx512(const float* x, uint16_t* y, int64_t n);
void f32_to_f16_row_avx2(const float* x, uint16_t* y, int64_t n);

}  // namespace jinx::cpu::detail
