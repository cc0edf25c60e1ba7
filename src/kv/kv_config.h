// KV cache sizing: how many blocks a memory budget (--kv-cache-memory GiB) or a token count
// (--kv-cache-tokens) buys.
//
// A block holds `block_size` tokens of K and V for every layer, so with the default layout
// (K and V of n_kv_heads * head_dim elements per layer per token)
//   bytes_per_token = n_layers * n_kv_heads * (head_dim_k + head_dim_v) * element_bytes
//   bytes_per_block = bytes_per_token * block_size
// and a budget of M bytes buys floor(M / bytes_per_block) blocks. Every input is validated:
// a size that is zero, negative or that overflows throws jinx::Error.
#pragma once

#include <cstdint>

namespace jinx::kv {

inline constexpr int32_t kDefaultBlockSize = 16;

struct KVCacheConfig {
  int32_t block_size = kDefaultBlockSize;  // tokens per block, >= 1
  int32_t n_blocks = 0;                    // >= 1
  bool enable_prefix_caching = true;
  uint64_t hash_seed = 0;  // 0: a random seed (std::random_device)
};

struct KVLayout {
  int64_t n_layers = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim_k = 0;
  int64_t head_dim_v = 0;
  int64_t element_bytes = 0;    // 2 for f16/bf16, 4 for f32, 1 for int8/fp8
  int64_t row_extra_bytes = 0;  // per token, head and K or V: 4 (the fp32 scale) for int8/fp8
};

// KV bytes one token takes across all layers. Throws on a non-positive field or overflow.
int64_t kv_bytes_per_token(const KVLayout& layout);

// Blocks a memory budget holds: floor(gib * 2^30 / (bytes_per_token * block_size)). Throws if
// that is less than one block, or more than 2^31-1.
int32_t kv_blocks_for_memory(double gib, const KVLayout& layout, int32_t block_size);

// Blocks needed to hold `n_tokens` tokens: ceil(n_tokens / block_size), at least 1.
int32_t kv_blocks_for_tokens(int64_t n_tokens, int32_t block_size);

// Throws jinx::Error naming the first bad field.
void validate(const KVCacheConfig& config);

}  // namespace jinx::kv
