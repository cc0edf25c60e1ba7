// The memory of a paged KV cache: for every layer a pool of blocks of `block_size` token slots
// holding K and V ([n_blocks, block_size, n_kv_heads, head_dim] each). Which block belongs to
// which sequence is bookkeeping in kv/ and engine/; this is only the storage.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <memory>
#include <span>
#include <vector>

#include "backend/cpu/attention.h"
#include "backend/sample_select.h"
#include "model/config.h"

namespace jinx {

class PagedKvStorage {
 public:
  // dtype: F32, F16, BF16, I8 or F8_E4M3 (see cpu::PagedKv for the row layout).
  PagedKvStorage(const ModelConfig& c, int64_t n_blocks, int64_t block_size, DType dtype);

  // Bytes one block takes over all layers, K and V.
  static size_t bytes_per_block(const ModelConfig& c, int64_t block_size, DType dtype);

  cpu::PagedKv& layer(int64_t i) { return layers_[static_cast<size_t>(i)]; }
  int64_t n_blocks() const { return n_blocks_; }
  int64_t block_size() const { return block_size_; }
  DType dtype() const { return dtype_; }
  size_t bytes() const { return bytes_; }

 private:
  int64_t n_blocks_, block_size_;
  DType dtype_;
  // calloc'd: the pages are zero and untouched until used, so a large pool costs nothing up
  // front.
  std::unique_ptr<uint8_t, void (*)(void*)> mem_{nullptr, std::free};
  size_t bytes_ = 0;
  std::vector<cpu::PagedKv> layers_;
};

// One step of a flat ("varlen") batch, as the batch builder lays it out.
struct ForwardBatch {
  std::span<const int32_t> tokens;        // [n_tokens]
  std::span<const int32_t> positions;     // [n_tokens]
  std::span<const int64_t> slot_mapping;  // [n_tokens]: block * block_size + offset
  cpu::AttnBatch attn;                    // sequence boundaries, context lengths, block tables
  std::span<const int32_t> out_rows;      // rows whose logits are needed
  // [out_rows.size()] or empty (all kPickLogits): what the caller needs of each output row, a
  // sampling::Pick. kPickArgmax: only the argmax (greedy, no penalties, no logprobs), and
  // kPickSample: only a token drawn by `sampling[k]` where the logits are, so a GPU can keep
  // those rows' logits on the device. kPickSample only where Executor::samples_on_device().
  std::span<const uint8_t> pick;
  std::span<const sampling::RowSampling> sampling;  // [out_rows.size()] if any kPickSample
  // [n_tokens] each token's LoRA adapter (Model::n_adapters), or empty: the model's default.
  std::span<const int32_t> adapters;
};

}  // namespace jinx
