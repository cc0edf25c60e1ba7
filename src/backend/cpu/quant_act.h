// Activations rounded to 8 bits for the integer matmul kernels (qdot_*.cpp).
//
// Each token row of `cols` floats (cols a multiple of 32) is cut into blocks of 32; a block
// stores 32 int8 values q = round(x / d) with d = max|x| / 127, so x ~= d * q. The kernels work
// on pairs of blocks (64 values, one AVX-512 register of bytes), so a row is padded with zeros
// to an even number of blocks. Next to the bytes, two float arrays are indexed by "lane" (4
// consecutive values, the reach of one vpdpbusd/pmaddwd int32 lane):
//   dl[lane] = d of the lane's block (the same value 8 times per block), and
//   sl[lane] = d * (sum of the lane's 4 int8 values): what a weight offset (a Q4_1 min, an MLX
//              bias, a zero point) multiplies.
// Storing them per lane costs 2 bytes per value but lets every kernel apply a block scale and
// an offset with one vector multiply-add each, whatever the weight format's layout. The same two
// per block (db[block] = d, sb[block] = d * sum of its 32 values) serve the kernels that sum a
// whole block in integers first (the AVX-512 row-panel GEMM), with sh = d * sum per 16 values
// for formats whose scales change every 16 (Q6_K).
//
// Quantized once per matmul call and per token, then reused by every weight row.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"

namespace jinx::cpu {

constexpr int64_t kActBlock = 32;                // values per scale
constexpr int64_t kActPair = 2 * kActBlock;      // values per kernel step
constexpr int64_t kLanesPerPair = kActPair / 4;  // int32 lanes per step

// A read-only view of quantized activations: n_tokens rows.
struct QuantActs {
  const int8_t* q = nullptr;  // [n_tokens, n_pairs * 64]
  const float* dl = nullptr;  // [n_tokens, n_pairs * 16]
  const float* sl = nullptr;  // [n_tokens, n_pairs * 16]
  const float* db = nullptr;  // [n_tokens, n_pairs * 2]
  const float* sb = nullptr;  // [n_tokens, n_pairs * 2]
  const float* sh = nullptr;  // [n_tokens, n_pairs * 4]: d * sum of each 16 values
  int64_t n_tokens = 0;
  int64_t cols = 0;     // logical values per row (a multiple of 32)
  int64_t n_pairs = 0;  // ceil(cols / 64)

  const int8_t* q_row(int64_t t) const { return q + t * n_pairs * kActPair; }
  const float* dl_row(int64_t t) const { return dl + t * n_pairs * kLanesPerPair; }
  const float* sl_row(int64_t t) const { return sl + t * n_pairs * kLanesPerPair; }
  const float* db_row(int64_t t) const { return db + t * n_pairs * 2; }
  const float* sb_row(int64_t t) const { return sb + t * n_pairs * 2; }
  const float* sh_row(int64_t t) const { return sh + t * n_pairs * 4; }
  // The value the kernels multiply in place of x[t, c]: d * q.
  float value(int64_t t, int64_t c) const { return dl_row(t)[c / 4] * q_row(t)[c]; }
};

// Owns the storage; reuse one buffer across calls to avoid allocation (capacity only grows).
class QuantActBuffer {
 public:
  // x: [n_tokens, cols] fp32, cols % 32 == 0. The view stays valid until the next call. With
  // a pool, the rows are split over its threads.
  QuantActs quantize(const float* x, int64_t n_tokens, int64_t cols, ThreadPool* pool = nullptr);

 private:
  std::vector<int8_t> q_;
  std::vector<float> dl_, sl_, db_, sb_, sh_;
};

// One row: x [cols] -> q [n_pairs * 64], dl and sl [n_pairs * 16], padding zeroed. Uses the
// active ISA level; every level gives bit-identical results.
void quantize_act_row(const float* x, int64_t cols, int8_t* q, float* dl, float* sl);

}  // namespace jinx::cpu
