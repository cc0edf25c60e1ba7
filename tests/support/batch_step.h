// Test helper: one step of a flat ("varlen") batch over several sequences, laid out as the
// engine's batch builder would, for tests that drive a forward pass by hand.
#pragma once

#include <cstdint>
#include <vector>

#include "model/paged_kv.h"

namespace jinx::test {

struct Seq {
  std::vector<int32_t> blocks;  // block table
  int32_t n_cached = 0;         // tokens already in the cache
};

// The arrays of one step and the ForwardBatch viewing them (moving a StepBatch keeps the views
// valid: they point into the vectors' heap buffers).
struct StepBatch {
  std::vector<int32_t> tokens, positions, qstart{0}, ctx, tables, rows;
  std::vector<int64_t> slots;
  ForwardBatch fb;
};

// Sequence i gets tokens ids[n_cached, n_cached + take[i]) (every row sampled); n_cached
// advances. Block tables are padded with -1 to max_blocks columns.
inline StepBatch make_step(std::vector<Seq>& seqs, const std::vector<int32_t>& ids,
                           const std::vector<int>& take, int64_t block_size,
                           int64_t max_blocks = 8) {
  StepBatch b;
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int i = 0; i < take[s]; ++i) {
      const int32_t pos = seqs[s].n_cached + i;
      b.tokens.push_back(ids[static_cast<size_t>(pos)]);
      b.positions.push_back(pos);
      b.slots.push_back(int64_t{seqs[s].blocks[static_cast<size_t>(pos / block_size)]} *
                            block_size + pos % block_size);
      b.rows.push_back(static_cast<int32_t>(b.tokens.size() - 1));
    }
    seqs[s].n_cached += take[s];
    b.qstart.push_back(static_cast<int32_t>(b.tokens.size()));
    b.ctx.push_back(seqs[s].n_cached);
    for (int64_t k = 0; k < max_blocks; ++k)
      b.tables.push_back(k < static_cast<int64_t>(seqs[s].blocks.size())
                             ? seqs[s].blocks[static_cast<size_t>(k)]
                             : -1);
  }
  b.fb.tokens = b.tokens;
  b.fb.positions = b.positions;
  b.fb.slot_mapping = b.slots;
  b.fb.attn = {static_cast<int64_t>(seqs.size()), b.qstart.data(), b.ctx.data(), b.tables.data(),
               max_blocks};
  b.fb.out_rows = b.rows;
  return b;
}

}  // namespace jinx::test
