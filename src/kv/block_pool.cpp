#include "kv/block_pool.h"

#include "core/check.h"

namespace jinx::kv {

BlockPool::BlockPool(int32_t n_blocks) : n_blocks_(n_blocks) {
  JINX_CHECK(n_blocks > 0, "a KV block pool needs at least one block, got ", n_blocks);
  ref_.assign(n_blocks, 0);
  prev_.assign(n_blocks + 1, n_blocks);
  next_.assign(n_blocks + 1, n_blocks);
  in_free_.assign(n_blocks, 0);
  has_hash_.assign(n_blocks, 0);
  hash_.resize(n_blocks);
  for (int32_t b = 0; b < n_blocks; ++b) push_back(b);
}

void BlockPool::check_id(int32_t block) const {
  JINX_CHECK(block >= 0 && block < n_blocks_, "block id ", block, " out of range [0, ", n_blocks_,
             ")");
}

void BlockPool::unlink(int32_t block) {
  next_[prev_[block]] = next_[block];
  prev_[next_[block]] = prev_[block];
  in_free_[block] = 0;
  --n_free_;
}

void BlockPool::push_front(int32_t block) {
  const int32_t s = n_blocks_;
  prev_[block] = s;
  next_[block] = next_[s];
  prev_[next_[s]] = block;
  next_[s] = block;
  in_free_[block] = 1;
  ++n_free_;
}

void BlockPool::push_back(int32_t block) {
  const int32_t s = n_blocks_;
  next_[block] = s;
  prev_[block] = prev_[s];
  next_[prev_[s]] = block;
  prev_[s] = block;
  in_free_[block] = 1;
  ++n_free_;
}

int32_t BlockPool::allocate() {
  JINX_CHECK(n_free_ > 0, "KV block pool exhausted (", n_blocks_, " blocks, all referenced)");
  const int32_t b = next_[n_blocks_];
  unlink(b);
  if (has_hash_[b]) {
    index_.erase(hash_[b]);
    has_hash_[b] = 0;
  }
  ref_[b] = 1;
  return b;
}

void BlockPool::acquire(int32_t block) {
  check_id(block);
  if (ref_[block] == 0) {
    JINX_CHECK(in_free_[block], "unreferenced block ", block, " missing from the free list");
    unlink(block);
  }
  ++ref_[block];
}

void BlockPool::release(int32_t block) {
  check_id(block);
  JINX_CHECK(ref_[block] > 0, "release of block ", block, " which nobody holds");
  if (--ref_[block] > 0) return;
  if (has_hash_[block]) {
    push_back(block);
  } else {
    push_front(block);
  }
}

int32_t BlockPool::ref_count(int32_t block) const {
  check_id(block);
  return ref_[block];
}

bool BlockPool::register_hash(int32_t block, const BlockHash& hash) {
  check_id(block);
  JINX_CHECK(ref_[block] > 0, "only a referenced block can be registered, block ", block);
  if (has_hash_[block]) return false;
  if (!index_.emplace(hash, block).second) return false;
  has_hash_[block] = 1;
  hash_[block] = hash;
  return true;
}

int32_t BlockPool::find(const BlockHash& hash) const {
  auto it = index_.find(hash);
  return it == index_.end() ? -1 : it->second;
}

std::optional<BlockHash> BlockPool::hash_of(int32_t block) const {
  check_id(block);
  if (!has_hash_[block]) return std::nullopt;
  return hash_[block];
}

std::vector<int32_t> BlockPool::free_list() const {
  std::vector<int32_t> out;
  out.reserve(n_free_);
  for (int32_t b = next_[n_blocks_]; b != n_blocks_; b = next_[b]) out.push_back(b);
  return out;
}

void BlockPool::clear_cache() {
  for (int32_t b = next_[n_blocks_]; b != n_blocks_; b = next_[b]) {
    if (has_hash_[b]) {
      index_.erase(hash_[b]);
      has_hash_[b] = 0;
    }
  }
}

void BlockPool::check() const {
  int32_t n_listed = 0;
  int32_t prev = n_blocks_;
  for (int32_t b = next_[n_blocks_]; b != n_blocks_; b = next_[b]) {
    JINX_CHECK(b >= 0 && b < n_blocks_ && n_listed < n_blocks_, "free list corrupt at ", b);
    JINX_CHECK(prev_[b] == prev, "free list back link of block ", b, " is wrong");
    JINX_CHECK(ref_[b] == 0, "block ", b, " is in the free list with ref_count ", ref_[b]);
    JINX_CHECK(in_free_[b], "block ", b, " listed free but not marked free");
    prev = b;
    ++n_listed;
  }
  JINX_CHECK(n_listed == n_free_, "free list holds ", n_listed, " blocks, n_free says ", n_free_);
  int32_t n_hashed = 0;
  for (int32_t b = 0; b < n_blocks_; ++b) {
    JINX_CHECK(ref_[b] >= 0, "block ", b, " has negative ref_count ", ref_[b]);
    JINX_CHECK((ref_[b] == 0) == (in_free_[b] != 0), "block ", b, " has ref_count ", ref_[b],
               " but free flag ", int(in_free_[b]));
    if (has_hash_[b]) {
      ++n_hashed;
      auto it = index_.find(hash_[b]);
      JINX_CHECK(it != index_.end() && it->second == b, "cached block ", b,
                 " missing from the hash index");
    }
  }
  JINX_CHECK(n_hashed == static_cast<int32_t>(index_.size()), "hash index has ", index_.size(),
             " entries for ", n_hashed, " cached blocks");
}

}  // namespace jinx::kv
