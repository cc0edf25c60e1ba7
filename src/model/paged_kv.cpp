#include "model/paged_kv.h"

#include "core/check.h"

namespace jinx {

size_t PagedKvStorage::bytes_per_block(const ModelConfig& c, int64_t block_size, DType dtype) {
  return static_cast<size_t>(2 * c.n_layers * block_size * c.n_kv_heads) *
         cpu::kv_row_bytes(dtype, c.head_dim);
}

PagedKvStorage::PagedKvStorage(const ModelConfig& c, int64_t n_blocks, int64_t block_size,
                               DType dtype)
    : n_blocks_(n_blocks), block_size_(block_size), dtype_(dtype) {
  if (!cpu::is_kv_dtype(dtype))
    fail("KV cache dtype must be f32, f16, bf16, i8 or f8_e4m3, not ", name(dtype));
  JINX_CHECK(n_blocks > 0 && block_size > 0, "KV cache needs at least one block");
  const size_t per_layer_half = static_cast<size_t>(n_blocks * block_size * c.n_kv_heads) *
                                cpu::kv_row_bytes(dtype, c.head_dim);
  bytes_ = per_layer_half * 2 * static_cast<size_t>(c.n_layers);
  mem_.reset(static_cast<uint8_t*>(std::calloc(bytes_, 1)));
  if (!mem_) fail("cannot allocate ", bytes_ >> 20, " MiB for the KV cache");
  for (int64_t i = 0; i < c.n_layers; ++i) {
    cpu::PagedKv kv;
    kv.k = mem_.get() + per_layer_half * (2 * i);
    kv.v = mem_.get() + per_layer_half * (2 * i + 1);
    kv.dtype = dtype;
    kv.n_blocks = n_blocks;
    kv.block_size = block_size;
    kv.n_kv_heads = c.n_kv_heads;
    kv.head_dim = c.head_dim;
    layers_.push_back(kv);
  }
}

}  // namespace jinx
