#include "kv/kv_cache_manager.h"

#include <algorithm>
#include <random>

#include "core/check.h"

namespace jinx::kv {
namespace {

uint64_t pick_seed(uint64_t seed) {
  if (seed != 0) return seed;
  std::random_device rd;
  return (uint64_t{rd()} << 32) ^ rd() ^ 0x5bd1e9955bd1e995ULL;
}

const KVCacheConfig& validated(const KVCacheConfig& c) {
  validate(c);
  return c;
}

}  // namespace

KVCacheManager::KVCacheManager(const KVCacheConfig& config)
    : block_size_(validated(config).block_size),
      prefix_caching_(config.enable_prefix_caching),
      seed_(pick_seed(config.hash_seed)),
      pool_(config.n_blocks) {}

int32_t KVCacheManager::blocks_for(int64_t n_tokens) const {
  JINX_CHECK(n_tokens >= 0, "negative token count ", n_tokens);
  return static_cast<int32_t>((n_tokens + block_size_ - 1) / block_size_);
}

KVCacheManager::Table& KVCacheManager::table(SeqId seq) {
  auto it = tables_.find(seq);
  JINX_CHECK(it != tables_.end(), "sequence ", seq, " holds no KV blocks");
  return it->second;
}

const KVCacheManager::Table& KVCacheManager::table(SeqId seq) const {
  auto it = tables_.find(seq);
  JINX_CHECK(it != tables_.end(), "sequence ", seq, " holds no KV blocks");
  return it->second;
}

std::vector<int32_t> KVCacheManager::match_prefix(std::span<const BlockHash> hashes,
                                                  int32_t max_blocks) const {
  std::vector<int32_t> hit;
  if (!prefix_caching_) return hit;
  const size_t n = std::min(hashes.size(), static_cast<size_t>(std::max(max_blocks, 0)));
  for (size_t i = 0; i < n; ++i) {
    const int32_t b = pool_.find(hashes[i]);
    if (b < 0) break;
    hit.push_back(b);
  }
  return hit;
}

int32_t KVCacheManager::admit_cost(std::span<const int32_t> prefix, int64_t n_tokens) const {
  const int32_t n_prefix = static_cast<int32_t>(prefix.size());
  const int32_t need = blocks_for(n_tokens);
  JINX_CHECK(need >= n_prefix, "admitting ", n_prefix, " cached blocks with only ", n_tokens,
             " tokens");
  // Unreferenced hit blocks leave the free list, so they count against it like new ones.
  int32_t n_taken = need - n_prefix;
  for (int32_t b : prefix) n_taken += pool_.ref_count(b) == 0;
  return n_taken;
}

bool KVCacheManager::admit(SeqId seq, std::span<const int32_t> prefix, int64_t n_tokens) {
  JINX_CHECK(!contains(seq), "sequence ", seq, " admitted twice");
  const int32_t n_prefix = static_cast<int32_t>(prefix.size());
  const int32_t need = blocks_for(n_tokens);
  if (admit_cost(prefix, n_tokens) > pool_.n_free()) return false;
  Table t;
  t.blocks.reserve(need);
  // Hits are taken first so that the allocations below cannot evict them.
  for (int32_t b : prefix) {
    pool_.acquire(b);
    t.blocks.push_back(b);
  }
  while (static_cast<int32_t>(t.blocks.size()) < need) t.blocks.push_back(pool_.allocate());
  t.n_committed = n_prefix;
  tables_.emplace(seq, std::move(t));
  return true;
}

bool KVCacheManager::grow(SeqId seq, int64_t n_tokens) {
  Table& t = table(seq);
  const int32_t need = blocks_for(n_tokens) - static_cast<int32_t>(t.blocks.size());
  if (need <= 0) return true;
  if (need > pool_.n_free()) return false;
  for (int32_t i = 0; i < need; ++i) t.blocks.push_back(pool_.allocate());
  return true;
}

int64_t KVCacheManager::max_tokens_fitting(SeqId seq) const {
  return (static_cast<int64_t>(table(seq).blocks.size()) + pool_.n_free()) * block_size_;
}

void KVCacheManager::commit(SeqId seq, std::span<const BlockHash> hashes, int64_t n_computed) {
  Table& t = table(seq);
  JINX_CHECK(n_computed >= 0 && blocks_for(n_computed) <= static_cast<int64_t>(t.blocks.size()),
             "sequence ", seq, " computed ", n_computed, " tokens but holds ", t.blocks.size(),
             " blocks");
  const int32_t n_full = static_cast<int32_t>(n_computed / block_size_);
  if (!prefix_caching_) {
    t.n_committed = std::max(t.n_committed, n_full);
    return;
  }
  JINX_CHECK(static_cast<int64_t>(hashes.size()) >= n_full, "sequence ", seq, " has ",
             hashes.size(), " block hashes for ", n_full, " full blocks");
  for (int32_t i = t.n_committed; i < n_full; ++i) {
    // false: the same prefix is already cached in another block; this copy stays uncached.
    pool_.register_hash(t.blocks[i], hashes[i]);
  }
  t.n_committed = std::max(t.n_committed, n_full);
}

void KVCacheManager::shrink(SeqId seq, int64_t n_tokens) {
  Table& t = table(seq);
  const int32_t keep = blocks_for(n_tokens);
  JINX_CHECK(keep >= t.n_committed, "shrink of sequence ", seq, " to ", n_tokens,
             " tokens would release registered blocks");
  while (static_cast<int32_t>(t.blocks.size()) > keep) {
    pool_.release(t.blocks.back());
    t.blocks.pop_back();
  }
}

void KVCacheManager::free(SeqId seq) {
  auto it = tables_.find(seq);
  JINX_CHECK(it != tables_.end(), "free of sequence ", seq, " which holds no KV blocks");
  const std::vector<int32_t>& blocks = it->second.blocks;
  for (auto b = blocks.rbegin(); b != blocks.rend(); ++b) pool_.release(*b);
  tables_.erase(it);
}

std::span<const int32_t> KVCacheManager::block_table(SeqId seq) const {
  return table(seq).blocks;
}

void KVCacheManager::check_invariants() const {
  pool_.check();
  std::vector<int32_t> holders(pool_.n_blocks(), 0);
  for (const auto& [seq, t] : tables_) {
    JINX_CHECK(t.n_committed >= 0 && t.n_committed <= static_cast<int32_t>(t.blocks.size()),
               "sequence ", seq, " commit cursor ", t.n_committed, " past its ", t.blocks.size(),
               " blocks");
    for (int32_t b : t.blocks) {
      JINX_CHECK(b >= 0 && b < pool_.n_blocks(), "sequence ", seq, " holds bad block id ", b);
      ++holders[b];
    }
  }
  for (int32_t b = 0; b < pool_.n_blocks(); ++b) {
    JINX_CHECK(holders[b] == pool_.ref_count(b), "block ", b, " is held by ", holders[b],
               " sequences but has ref_count ", pool_.ref_count(b));
  }
}

}  // namespace jinx::kv
