// Paged attention on the CPU: a flash-attention style kernel that reads K/V straight from a paged
// cache, for prefill chunks and decode alike.
//
// The cache of one layer is a pool of blocks; a sequence owns a list of blocks (its block table)
// and token position p lives in block block_table[p / block_size] at offset p % block_size.
// The kernel knows nothing of models or schedulers: it takes views and sizes.
//
// Work is split into (sequence, kv head, query tile, kv range) items. Each item streams its KV
// positions in tiles, reading every K/V row once for all the query heads of its GQA group and all
// query rows of its tile, with an online softmax (running max and sum) and fp32 accumulation.
// Long sequences are split over KV ranges and merged at the end ("flash decoding"), so that one
// long decode next to short ones still keeps every thread busy.
#pragma once

#include <cstdint>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace jinx::cpu {

// One layer's paged cache. k and v: [n_blocks, block_size, n_kv_heads] rows each. A row (one
// token, one kv head) is head_dim elements of dtype F32, F16 or BF16, or, quantized, head_dim
// codes of I8 (x = scale * q) or F8_E4M3 (x = scale * fp8(q)) followed by the row's fp32 scale
// (amax / 127 or amax / 448, 4 bytes, unaligned): a scale per token per head.
struct PagedKv {
  void* k = nullptr;
  void* v = nullptr;
  DType dtype = DType::F32;
  int64_t n_blocks = 0, block_size = 0, n_kv_heads = 0, head_dim = 0;
};

// True for the dtypes a paged cache can hold: F32, F16, BF16, I8, F8_E4M3.
bool is_kv_dtype(DType t);
// Bytes of one cache row of head_dim elements in t (the scale included). Assumes is_kv_dtype(t).
size_t kv_row_bytes(DType t, int64_t head_dim);

// Writes k/v rows into cache slots (slot = block * block_size + offset; -1 = skip this token),
// converting from fp32 to kv.dtype (round to nearest even; I8 rounds half away from zero). k, v: [n_tokens, n_kv_heads *
// head_dim]. Throws jinx::Error on a slot out of range.
void kv_store(PagedKv& kv, const float* k, const float* v, const int64_t* slot_mapping,
              int64_t n_tokens, ThreadPool& pool);

// A varlen batch of sequences s = 0..n_seqs-1.
struct AttnBatch {
  int64_t n_seqs = 0;
  const int32_t* query_start = nullptr;   // [n_seqs + 1]: q rows [query_start[s], query_start[s+1])
  const int32_t* context_len = nullptr;   // [n_seqs]: cached tokens of s, this step's included
  const int32_t* block_tables = nullptr;  // [n_seqs, max_blocks_per_seq], -1 padded
  int64_t max_blocks_per_seq = 0;
};

// Causal attention over the paged cache. The query at row query_start[s] + i sits at absolute
// position context_len[s] - n_new + i (n_new = query rows of s) and attends to positions
// [0, that position]; its K/V must already be stored (kv_store). Query head h reads kv head
// h / (n_heads / n_kv_heads).
// q, out: [query_start[n_seqs], n_heads, head_dim] fp32. scale <= 0 means 1/sqrt(head_dim).
// window > 0 (sliding-window attention): the query at position p attends to positions
// [p - window + 1, p] only. sinks (gpt-oss; null: none): one logit per query head that joins
// every softmax of that head and carries no value (the outputs' weights add up to less than 1).
// Throws jinx::Error on inconsistent sizes or a block table entry out of range.
void paged_attention(const float* q, float* out, int64_t n_heads, const PagedKv& kv,
                     const AttnBatch& b, float scale, ThreadPool& pool, int64_t window = 0,
                     const float* sinks = nullptr);

}  // namespace jinx::cpu
