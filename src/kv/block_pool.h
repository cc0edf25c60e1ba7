// BlockPool: the fixed set of KV blocks, their reference counts, and the prefix-cache index.
//
// A block is in exactly one of three states:
//   referenced  ref_count > 0: held by that many sequence block tables; never evicted.
//   cached      ref_count == 0 and a hash registered: its KV is a valid prefix block that a later
//               request may reuse (acquire() takes it back out of the free list). Evictable.
//   free        ref_count == 0, no hash.
// Every block with ref_count == 0 sits in one intrusive doubly linked free list, in eviction
// order: allocate() takes the head. release() puts a block without a hash at the head (it holds
// nothing worth keeping, so it is reused first) and a cached block at the tail (most recently
// used), so cached blocks are evicted least recently used first, and only when no plain free
// block is left. Evicting a cached block drops its hash from the index.
//
// All operations are O(1) (hash map lookups aside). The pool knows block ids only: which token
// a block holds is the KV manager's business, what the KV memory is the model runner's.
//
//   BlockPool pool(n_blocks);
//   int32_t b = pool.allocate();        // ref 1 (may evict the LRU cached block)
//   pool.register_hash(b, h);           // once b is full and its KV computed
//   pool.release(b);                    // ref 0: stays cached, evictable
//   int32_t hit = pool.find(h);         // b, until evicted
//   pool.acquire(hit);                  // ref 1 again, out of the free list
#pragma once

#include <cstdint>
#include <optional>
#include <unordered_map>
#include <vector>

#include "kv/block_hash.h"

namespace jinx::kv {

class BlockPool {
 public:
  explicit BlockPool(int32_t n_blocks);

  int32_t n_blocks() const { return n_blocks_; }
  // Blocks allocate() can hand out: plain free plus cached-and-unreferenced (evictable).
  int32_t n_free() const { return n_free_; }
  // Blocks with a hash registered, referenced or not.
  int32_t n_cached() const { return static_cast<int32_t>(index_.size()); }

  // Takes the head of the free list with ref_count 1, evicting its cached hash if it has one.
  // Throws jinx::Error if no block is free (check n_free() first).
  int32_t allocate();
  // One more holder of `block`. A block at ref 0 (a cache hit) leaves the free list.
  void acquire(int32_t block);
  // One holder fewer. At ref 0 the block joins the free list (see the order above).
  void release(int32_t block);

  int32_t ref_count(int32_t block) const;

  // Registers a referenced, full block under `hash`. Returns false and changes nothing when that
  // hash is already cached (another block holds the same prefix: first one wins) or the block
  // already has a hash.
  bool register_hash(int32_t block, const BlockHash& hash);
  // The block cached under `hash`, or -1.
  int32_t find(const BlockHash& hash) const;
  // The hash of a cached block, or nullopt.
  std::optional<BlockHash> hash_of(int32_t block) const;

  // The free list from head (next to be allocated) to tail. O(n_free); for tests and checks.
  std::vector<int32_t> free_list() const;
  // Drops every cached hash of unreferenced blocks (they become plain free blocks).
  void clear_cache();

  // Checks the pool's own consistency (free list <=> ref 0, counts, index <=> block hashes);
  // throws jinx::Error naming the first violation. O(n_blocks).
  void check() const;

 private:
  void check_id(int32_t block) const;
  void unlink(int32_t block);
  void push_front(int32_t block);
  void push_back(int32_t block);

  int32_t n_blocks_;
  int32_t n_free_ = 0;
  std::vector<int32_t> ref_;          // [n_blocks]
  std::vector<int32_t> prev_, next_;  // [n_blocks + 1]; index n_blocks is the list sentinel
  std::vector<uint8_t> in_free_;      // [n_blocks]
  std::vector<uint8_t> has_hash_;     // [n_blocks]
  std::vector<BlockHash> hash_;       // [n_blocks]; valid where has_hash_
  std::unordered_map<BlockHash, int32_t, BlockHashHasher> index_;
};

}  // namespace jinx::kv
