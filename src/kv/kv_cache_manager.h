// KVCacheManager: per-sequence block tables over one BlockPool, with prefix caching.
//
// A sequence's block table maps its token positions to KV slots: token p lives in block
// table[p / block_size] at offset p % block_size, flat slot table[p / B] * B + p % B. The
// manager knows sequence ids, block ids and block hashes; the tokens themselves stay with the
// caller, which keeps each sequence's chained full-block hashes (block_hash.h) current.
//
// Lifecycle of one sequence:
//   auto hit = kv.match_prefix(hashes, max_blocks);    // cached leading blocks, no side effect
//   kv.admit(id, hit, n_tokens)                        // shares hit (ref++), allocates the rest
//   kv.grow(id, n_tokens)                              // more slots before each later step
//   kv.commit(id, hashes, n_computed)                  // after a step: caches newly full blocks
//   kv.free(id)                                        // finish, abort, preempt
// admit() and grow() are all-or-nothing: false means too few free blocks, nothing changed.
//
// Sharing: a block's ref_count equals the number of tables holding it. Full blocks whose KV is
// computed are registered under their chained hash at commit(); when their last holder frees
// them they stay cached (evictable, LRU) until allocate() needs the space. Blocks are freed
// last-to-first so that a chain's tail is evicted before its head (the head is the part other
// prompts are likely to share). A block is registered only after the step that computed it, so
// two requests with the same new prefix admitted in the same step both compute it; the second
// one's duplicate block is simply not cached.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "kv/block_hash.h"
#include "kv/block_pool.h"
#include "kv/kv_config.h"

namespace jinx::kv {

using SeqId = int64_t;

class KVCacheManager {
 public:
  explicit KVCacheManager(const KVCacheConfig& config);

  int32_t block_size() const { return block_size_; }
  int32_t n_blocks() const { return pool_.n_blocks(); }
  int64_t capacity_tokens() const { return int64_t{pool_.n_blocks()} * block_size_; }
  bool prefix_caching() const { return prefix_caching_; }
  uint64_t hash_seed() const { return seed_; }
  // Blocks available to admit()/grow(): free plus cached-and-unreferenced.
  int32_t n_free_blocks() const { return pool_.n_free(); }
  int32_t blocks_for(int64_t n_tokens) const;

  // The blocks cached for the leading full blocks of a sequence whose chained hashes are
  // `hashes`, at most `max_blocks` of them, stopping at the first miss. Empty when prefix
  // caching is off.
  std::vector<int32_t> match_prefix(std::span<const BlockHash> hashes, int32_t max_blocks) const;

  // Starts a table for new sequence `seq` holding the `prefix` blocks (from match_prefix,
  // called just before, with no allocation in between) and enough new blocks for `n_tokens`
  // slots (n_tokens >= prefix.size() * block_size). Returns false, changing nothing, if the pool
  // is short. The prefix blocks count as committed.
  bool admit(SeqId seq, std::span<const int32_t> prefix, int64_t n_tokens);
  // Free blocks such an admit() would take (new ones, and unreferenced cached hits).
  int32_t admit_cost(std::span<const int32_t> prefix, int64_t n_tokens) const;
  // Extends the table of `seq` to cover `n_tokens` slots. False, changing nothing, if short.
  bool grow(SeqId seq, int64_t n_tokens);
  // Releases the table's blocks past the first blocks_for(n_tokens) (last to first), e.g. the
  // slots of rejected speculative tokens. Registered blocks are never released this way.
  void shrink(SeqId seq, int64_t n_tokens);
  // Most slots `seq`'s table could cover if it took every free block now.
  int64_t max_tokens_fitting(SeqId seq) const;

  // Registers the full blocks of `seq` among its first `n_computed` tokens that are not
  // registered yet. hashes[i] is the chained hash of block i (at least n_computed / B of them).
  void commit(SeqId seq, std::span<const BlockHash> hashes, int64_t n_computed);

  // Releases every block of `seq` (last to first) and forgets it. Unknown ids are an error.
  void free(SeqId seq);

  bool contains(SeqId seq) const { return tables_.count(seq) != 0; }
  std::span<const int32_t> block_table(SeqId seq) const;
  int64_t n_sequences() const { return static_cast<int64_t>(tables_.size()); }

  const BlockPool& pool() const { return pool_; }
  // Forgets every cached block nobody holds (e.g. after a weight reload).
  void clear_cache() { pool_.clear_cache(); }

  // The accounting invariant, O(n_blocks + table entries); throws jinx::Error on a violation:
  // every block is free, cached-and-unreferenced, or referenced by exactly as many tables as
  // its ref_count says (no table holds a block at ref 0). Plus the pool's own check().
  void check_invariants() const;

 private:
  struct Table {
    std::vector<int32_t> blocks;
    int32_t n_committed = 0;  // leading blocks already registered (or shared from the cache)
  };
  Table& table(SeqId seq);
  const Table& table(SeqId seq) const;

  int32_t block_size_;
  bool prefix_caching_;
  uint64_t seed_;
  BlockPool pool_;
  std::unordered_map<SeqId, Table> tables_;
};

}  // namespace jinx::kv
