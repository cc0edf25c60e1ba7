// Chained block hashes and prefix caching through the KV manager.
#include <gtest/gtest.h>

#include <numeric>
#include <random>
#include <unordered_set>
#include <vector>

#include "core/check.h"
#include "kv/block_hash.h"
#include "kv/kv_cache_manager.h"

namespace jinx::kv {
namespace {

constexpr uint64_t kSeed = 12345;

std::vector<BlockHash> hashes_of(const std::vector<int32_t>& tokens, int32_t bs,
                                 uint64_t seed = kSeed) {
  std::vector<BlockHash> out;
  extend_block_hashes(tokens, bs, seed, &out);
  return out;
}

std::vector<int32_t> iota_tokens(int32_t n, int32_t first) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(BlockHash, DeterministicAndSeeded) {
  const std::vector<int32_t> t = {1, 2, 3, 4};
  EXPECT_EQ(hash_block(kRootHash, 1, t), hash_block(kRootHash, 1, t));
  EXPECT_NE(hash_block(kRootHash, 1, t), hash_block(kRootHash, 2, t));
  EXPECT_NE(hash_block(kRootHash, 1, t),
            hash_block(kRootHash, 1, std::vector<int32_t>{1, 2, 4, 3}));
  EXPECT_NE(hash_block(kRootHash, 1, t), hash_block(kRootHash, 1, std::vector<int32_t>{1, 2, 3}));
}

TEST(BlockHash, ChainDistinguishesPrefixesWithTheSameBlockContent) {
  // Block 1 holds the same tokens in both prompts; block 0 differs.
  const std::vector<int32_t> a = {1, 2, 3, 4, 9, 9, 9, 9};
  const std::vector<int32_t> b = {1, 2, 3, 5, 9, 9, 9, 9};
  const auto ha = hashes_of(a, 4), hb = hashes_of(b, 4);
  ASSERT_EQ(ha.size(), 2u);
  EXPECT_NE(ha[0], hb[0]);
  EXPECT_NE(ha[1], hb[1]);
  // Same content at a different depth: different key too.
  const std::vector<int32_t> c = {9, 9, 9, 9, 9, 9, 9, 9};
  const auto hc = hashes_of(c, 4);
  EXPECT_NE(hc[0], hc[1]);
  // And the keys are exactly the chain of hash_block.
  EXPECT_EQ(ha[1], hash_block(hash_block(kRootHash, kSeed, std::span(a).first(4)), kSeed,
                              std::span(a).subspan(4)));
}

TEST(BlockHash, IncrementalEqualsAllAtOnceAndSkipsPartialBlocks) {
  std::mt19937 gen(3);
  std::vector<int32_t> tokens;
  std::vector<BlockHash> inc;
  for (int i = 0; i < 103; ++i) {
    tokens.push_back(static_cast<int32_t>(gen() % 1000));
    extend_block_hashes(tokens, 8, kSeed, &inc);
    EXPECT_EQ(inc.size(), tokens.size() / 8);
  }
  EXPECT_EQ(inc, hashes_of(tokens, 8));
  std::vector<BlockHash> too_many(20);
  EXPECT_THROW(extend_block_hashes(tokens, 8, kSeed, &too_many), Error);
  EXPECT_THROW(extend_block_hashes(tokens, 0, kSeed, &inc), Error);
}

TEST(BlockHash, NoCollisionsAmongManyBlocks) {
  std::unordered_set<uint64_t> lo, hi;
  std::mt19937 gen(7);
  BlockHash parent = kRootHash;
  for (int i = 0; i < 200000; ++i) {
    const std::vector<int32_t> t = {static_cast<int32_t>(gen() % 4), static_cast<int32_t>(i)};
    const BlockHash hb = hash_block(i % 3 ? parent : kRootHash, kSeed, t);
    EXPECT_TRUE(lo.insert(hb.lo).second);
    EXPECT_TRUE(hi.insert(hb.hi).second);
    parent = hb;
  }
}

KVCacheConfig config(int32_t n_blocks, int32_t bs, bool caching = true) {
  KVCacheConfig c;
  c.n_blocks = n_blocks;
  c.block_size = bs;
  c.enable_prefix_caching = caching;
  c.hash_seed = kSeed;
  return c;
}

// Runs a whole sequence through the manager: admit with its hit, compute all, commit, free.
int32_t run_once(KVCacheManager& kv, SeqId id, const std::vector<int32_t>& tokens) {
  const auto hs = hashes_of(tokens, kv.block_size());
  const auto hit = kv.match_prefix(hs, (static_cast<int32_t>(tokens.size()) - 1) / kv.block_size());
  EXPECT_TRUE(kv.admit(id, hit, static_cast<int64_t>(tokens.size())));
  kv.commit(id, hs, static_cast<int64_t>(tokens.size()));
  kv.check_invariants();
  kv.free(id);
  kv.check_invariants();
  return static_cast<int32_t>(hit.size());
}

TEST(PrefixCache, HitAfterCommitAndMissOtherwise) {
  KVCacheManager kv(config(16, 4));
  const auto sys = iota_tokens(12, 100);  // 3 full blocks
  auto a = sys;
  a.insert(a.end(), {1, 2, 3});
  auto b = sys;
  b.insert(b.end(), {7, 8});
  EXPECT_EQ(run_once(kv, 0, a), 0);  // cold
  EXPECT_EQ(run_once(kv, 1, b), 3);  // the 3 system-prompt blocks
  // A different first block misses everything, even with the later blocks equal.
  auto c = b;
  c[0] = 999;
  EXPECT_EQ(run_once(kv, 2, c), 0);
  // A prompt of exactly the cached blocks leaves its last block to compute.
  EXPECT_EQ(run_once(kv, 3, sys), 2);
}

TEST(PrefixCache, MatchStopsAtFirstMissAndRespectsTheCap) {
  KVCacheManager kv(config(16, 2));
  const auto t = iota_tokens(10, 0);  // 5 blocks
  const auto hs = hashes_of(t, 2);
  ASSERT_TRUE(kv.admit(0, {}, 10));
  kv.commit(0, hs, 10);
  EXPECT_EQ(kv.match_prefix(hs, 100).size(), 5u);
  EXPECT_EQ(kv.match_prefix(hs, 3).size(), 3u);
  EXPECT_EQ(kv.match_prefix(hs, 0).size(), 0u);
  auto t2 = t;
  t2[5] = 77;  // block 2 differs
  EXPECT_EQ(kv.match_prefix(hashes_of(t2, 2), 100).size(), 2u);
  // Another seed (another cache) never matches.
  EXPECT_EQ(kv.match_prefix(hashes_of(t, 2, kSeed + 1), 100).size(), 0u);
}

TEST(PrefixCache, DisabledNeverHits) {
  KVCacheManager kv(config(16, 4, false));
  const auto t = iota_tokens(20, 0);
  EXPECT_EQ(run_once(kv, 0, t), 0);
  EXPECT_EQ(run_once(kv, 1, t), 0);
  EXPECT_EQ(kv.pool().n_cached(), 0);
}

TEST(PrefixCache, SharedBlocksAreRefCountedAcrossSequences) {
  KVCacheManager kv(config(16, 4));
  const auto t = iota_tokens(9, 0);  // 2 full blocks + 1
  const auto hs = hashes_of(t, 4);
  ASSERT_TRUE(kv.admit(0, {}, 9));
  kv.commit(0, hs, 9);
  const auto hit = kv.match_prefix(hs, 2);
  ASSERT_EQ(hit.size(), 2u);
  ASSERT_TRUE(kv.admit(1, hit, 9));
  const auto t0 = kv.block_table(0), t1 = kv.block_table(1);
  EXPECT_EQ(t0[0], t1[0]);
  EXPECT_EQ(t0[1], t1[1]);
  EXPECT_NE(t0[2], t1[2]);  // the partial block is private
  EXPECT_EQ(kv.pool().ref_count(t0[0]), 2);
  EXPECT_EQ(kv.pool().ref_count(t0[2]), 1);
  kv.check_invariants();
  kv.free(0);
  EXPECT_EQ(kv.pool().ref_count(t1[0]), 1);
  kv.check_invariants();
  kv.free(1);
  EXPECT_EQ(kv.n_free_blocks(), 16);
  EXPECT_EQ(kv.pool().n_cached(), 2);
  kv.check_invariants();
}

TEST(PrefixCache, FreeingLastToFirstEvictsTheTailOfAChainFirst) {
  KVCacheManager kv(config(4, 2));
  const auto t = iota_tokens(8, 0);  // 4 blocks, the whole pool
  EXPECT_EQ(run_once(kv, 0, t), 0);
  EXPECT_EQ(kv.pool().n_cached(), 4);
  // A 2-block newcomer evicts the last two blocks of the chain, keeping its head reusable.
  const auto other = iota_tokens(4, 50);
  EXPECT_EQ(run_once(kv, 1, other), 0);
  EXPECT_EQ(kv.match_prefix(hashes_of(t, 2), 4).size(), 2u);
}

TEST(PrefixCache, DuplicatePrefixComputedTwiceIsCachedOnce) {
  KVCacheManager kv(config(8, 4));
  const auto t = iota_tokens(8, 0);
  const auto hs = hashes_of(t, 4);
  ASSERT_TRUE(kv.admit(0, {}, 8));
  ASSERT_TRUE(kv.admit(1, {}, 8));  // same step: nothing cached yet
  kv.commit(0, hs, 8);
  kv.commit(1, hs, 8);
  EXPECT_EQ(kv.pool().n_cached(), 2);
  const auto hit = kv.match_prefix(hs, 2);
  EXPECT_EQ(hit, std::vector<int32_t>(kv.block_table(0).begin(), kv.block_table(0).end()));
  kv.check_invariants();
  kv.free(0);
  kv.free(1);
  kv.check_invariants();
  EXPECT_EQ(kv.n_free_blocks(), 8);
}

TEST(PrefixCache, AdmitCountsUnreferencedHitsAgainstTheFreeBlocks) {
  KVCacheManager kv(config(4, 2));
  const auto t = iota_tokens(5, 0);  // 2 full blocks + 1
  const auto hs = hashes_of(t, 2);
  EXPECT_EQ(run_once(kv, 0, t), 0);
  // Hold 2 of the 4 blocks elsewhere: the 2 cached ones are the only free blocks left.
  ASSERT_TRUE(kv.admit(9, {}, 3));
  EXPECT_EQ(kv.n_free_blocks(), 2);
  const auto hit = kv.match_prefix(hs, 2);
  ASSERT_EQ(hit.size(), 2u);
  // Reusing both hits needs them plus one block for token 4: 3 > 2 free. Nothing changes.
  EXPECT_FALSE(kv.admit(1, hit, 5));
  EXPECT_FALSE(kv.contains(1));
  EXPECT_EQ(kv.n_free_blocks(), 2);
  EXPECT_EQ(kv.match_prefix(hs, 2), hit);
  // With the hits only (the new token's block later) it fits.
  EXPECT_TRUE(kv.admit(1, hit, 4));
  EXPECT_FALSE(kv.grow(1, 5));
  kv.check_invariants();
  kv.free(9);
  EXPECT_TRUE(kv.grow(1, 5));
  kv.check_invariants();
}

}  // namespace
}  // namespace jinx::kv
