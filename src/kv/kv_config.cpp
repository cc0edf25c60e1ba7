#include "kv/kv_config.h"

#include <cmath>
#include <limits>

#include "core/check.h"

namespace jinx::kv {
namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) fail("KV cache size overflows computing ", what);
  return r;
}

}  // namespace

int64_t kv_bytes_per_token(const KVLayout& l) {
  if (l.n_layers <= 0 || l.n_kv_heads <= 0 || l.head_dim_k <= 0 || l.head_dim_v <= 0 ||
      l.element_bytes <= 0) {
    fail("bad KV layout: n_layers=", l.n_layers, " n_kv_heads=", l.n_kv_heads,
         " head_dim_k=", l.head_dim_k, " head_dim_v=", l.head_dim_v,
         " element_bytes=", l.element_bytes, " (all must be positive)");
  }
  if (l.row_extra_bytes < 0) fail("bad KV layout: negative row_extra_bytes");
  int64_t dims = 0;
  if (__builtin_add_overflow(l.head_dim_k, l.head_dim_v, &dims)) fail("KV head dims overflow");
  int64_t row = checked_mul(dims, l.element_bytes, "bytes per token");  // K row + V row
  if (__builtin_add_overflow(row, 2 * l.row_extra_bytes, &row)) fail("KV row bytes overflow");
  const int64_t r = checked_mul(l.n_layers, l.n_kv_heads, "bytes per token");
  return checked_mul(r, row, "bytes per token");
}

int32_t kv_blocks_for_memory(double gib, const KVLayout& layout, int32_t block_size) {
  if (!(gib > 0.0) || !std::isfinite(gib))
    fail("--kv-cache-memory must be a positive GiB count, got ", gib);
  JINX_CHECK(block_size > 0, "KV block size must be positive, got ", block_size);
  const int64_t per_block = checked_mul(kv_bytes_per_token(layout), block_size, "bytes per block");
  const double n = std::floor(gib * 1073741824.0 / static_cast<double>(per_block));
  if (n < 1.0) {
    fail("--kv-cache-memory ", gib, " GiB holds no KV block (one block of ", block_size,
         " tokens takes ", per_block, " bytes)");
  }
  if (n > static_cast<double>(kInt32Max)) fail("--kv-cache-memory ", gib, " GiB: too many blocks");
  return static_cast<int32_t>(n);
}

int32_t kv_blocks_for_tokens(int64_t n_tokens, int32_t block_size) {
  JINX_CHECK(block_size > 0, "KV block size must be positive, got ", block_size);
  if (n_tokens <= 0) fail("KV cache token count must be positive, got ", n_tokens);
  const int64_t n = n_tokens / block_size + (n_tokens % block_size != 0);
  if (n > kInt32Max) fail("KV cache of ", n_tokens, " tokens: too many blocks");
  return static_cast<int32_t>(n);
}

void validate(const KVCacheConfig& c) {
  if (c.block_size <= 0 || c.block_size > 4096) {
    fail("KV block size must be in [1, 4096], got ", c.block_size);
  }
  if (c.n_blocks <= 0) fail("KV cache needs at least one block, got ", c.n_blocks);
  if (static_cast<int64_t>(c.n_blocks) * c.block_size > kInt32Max) {
    fail("KV cache of ", c.n_blocks, " blocks of ", c.block_size, " tokens: too many tokens");
  }
}

}  // namespace jinx::kv
