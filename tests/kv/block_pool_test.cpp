// BlockPool: allocation, reference counts, free-list order, hash index, LRU eviction.
#include "kv/block_pool.h"

#include <gtest/gtest.h>

#include <vector>

#include "core/check.h"

namespace jinx::kv {
namespace {

BlockHash h(uint64_t v) {
  return BlockHash{v, ~v};
}

TEST(BlockPool, FreshPoolHandsOutBlocksInOrder) {
  BlockPool pool(4);
  EXPECT_EQ(pool.n_blocks(), 4);
  EXPECT_EQ(pool.n_free(), 4);
  EXPECT_EQ(pool.free_list(), (std::vector<int32_t>{0, 1, 2, 3}));
  for (int32_t b = 0; b < 4; ++b) {
    EXPECT_EQ(pool.allocate(), b);
    EXPECT_EQ(pool.ref_count(b), 1);
  }
  EXPECT_EQ(pool.n_free(), 0);
  EXPECT_THROW(pool.allocate(), Error);
  pool.check();
}

TEST(BlockPool, RefCountsAcquireRelease) {
  BlockPool pool(3);
  const int32_t b = pool.allocate();
  pool.acquire(b);
  pool.acquire(b);
  EXPECT_EQ(pool.ref_count(b), 3);
  EXPECT_EQ(pool.n_free(), 2);
  pool.release(b);
  pool.release(b);
  EXPECT_EQ(pool.ref_count(b), 1);
  EXPECT_EQ(pool.n_free(), 2);
  pool.release(b);
  EXPECT_EQ(pool.ref_count(b), 0);
  EXPECT_EQ(pool.n_free(), 3);
  EXPECT_THROW(pool.release(b), Error);  // nobody holds it
  pool.check();
}

TEST(BlockPool, BadIdsAndSizesThrow) {
  EXPECT_THROW(BlockPool(0), Error);
  EXPECT_THROW(BlockPool(-3), Error);
  BlockPool pool(2);
  EXPECT_THROW(pool.acquire(2), Error);
  EXPECT_THROW(pool.acquire(-1), Error);
  EXPECT_THROW(pool.release(5), Error);
  EXPECT_THROW(pool.ref_count(2), Error);
  EXPECT_THROW(pool.hash_of(-1), Error);
  // Only a referenced block may be registered.
  EXPECT_THROW(pool.register_hash(0, h(1)), Error);
}

TEST(BlockPool, PlainFreedBlocksAreReusedFirst) {
  BlockPool pool(4);
  const int32_t a = pool.allocate(), b = pool.allocate();  // 0, 1
  pool.release(b);
  EXPECT_EQ(pool.free_list(), (std::vector<int32_t>{1, 2, 3}));
  pool.release(a);
  EXPECT_EQ(pool.free_list(), (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(pool.allocate(), a);
}

TEST(BlockPool, CachedBlocksGoToTheTailAndSurviveUntilEvicted) {
  BlockPool pool(4);
  const int32_t a = pool.allocate(), b = pool.allocate();
  ASSERT_TRUE(pool.register_hash(a, h(10)));
  pool.release(a);
  pool.release(b);  // plain: to the head
  EXPECT_EQ(pool.free_list(), (std::vector<int32_t>{b, 2, 3, a}));
  EXPECT_EQ(pool.find(h(10)), a);
  EXPECT_EQ(pool.n_cached(), 1);
  // Three allocations use the plain blocks; the cached one is untouched.
  for (int i = 0; i < 3; ++i) EXPECT_NE(pool.allocate(), a);
  EXPECT_EQ(pool.find(h(10)), a);
  // The fourth must evict it.
  EXPECT_EQ(pool.allocate(), a);
  EXPECT_EQ(pool.find(h(10)), -1);
  EXPECT_FALSE(pool.hash_of(a).has_value());
  EXPECT_EQ(pool.n_cached(), 0);
  pool.check();
}

TEST(BlockPool, EvictionIsLeastRecentlyUsedFirst) {
  BlockPool pool(4);
  std::vector<int32_t> blocks;
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(pool.allocate());
    ASSERT_TRUE(pool.register_hash(blocks[i], h(100 + i)));
  }
  // Released (last used) in the order 2, 0, 3, 1.
  for (int i : {2, 0, 3, 1}) pool.release(blocks[i]);
  // A cache hit on block 0 makes it the most recently used once released again.
  ASSERT_EQ(pool.find(h(100)), blocks[0]);
  pool.acquire(blocks[0]);
  EXPECT_EQ(pool.n_free(), 3);
  pool.release(blocks[0]);
  EXPECT_EQ(pool.free_list(), (std::vector<int32_t>{2, 3, 1, 0}));
  for (int want : {2, 3, 1, 0}) {
    EXPECT_EQ(pool.allocate(), blocks[want]);
    EXPECT_EQ(pool.find(h(100 + want)), -1) << "block " << want << " should be evicted";
    pool.check();
  }
}

TEST(BlockPool, EvictionNeverTouchesReferencedBlocks) {
  BlockPool pool(6);
  std::vector<int32_t> held, cached;
  for (int i = 0; i < 6; ++i) {
    const int32_t b = pool.allocate();
    ASSERT_TRUE(pool.register_hash(b, h(i)));
    (i % 2 ? held : cached).push_back(b);
  }
  for (int32_t b : cached) pool.release(b);
  EXPECT_EQ(pool.n_free(), 3);
  std::vector<int32_t> got;
  for (int i = 0; i < 3; ++i) got.push_back(pool.allocate());
  EXPECT_EQ(got, cached);  // exactly the unreferenced ones, in LRU order
  EXPECT_THROW(pool.allocate(), Error);
  for (size_t i = 0; i < held.size(); ++i) {
    EXPECT_EQ(pool.ref_count(held[i]), 1);
    EXPECT_EQ(pool.find(h(2 * i + 1)), held[i]);  // still cached, still findable
  }
  pool.check();
}

TEST(BlockPool, RegisterDeduplicates) {
  BlockPool pool(3);
  const int32_t a = pool.allocate(), b = pool.allocate();
  EXPECT_TRUE(pool.register_hash(a, h(7)));
  EXPECT_FALSE(pool.register_hash(b, h(7)));  // same prefix already cached in a
  EXPECT_FALSE(pool.register_hash(a, h(8)));  // a already has a hash
  EXPECT_EQ(pool.find(h(7)), a);
  EXPECT_EQ(pool.find(h(8)), -1);
  EXPECT_FALSE(pool.hash_of(b).has_value());
  ASSERT_TRUE(pool.hash_of(a).has_value());
  EXPECT_EQ(*pool.hash_of(a), h(7));
  pool.release(b);
  EXPECT_EQ(pool.free_list().front(), b);  // uncached duplicate is plain free
  pool.check();
}

TEST(BlockPool, AcquireOfCachedFreeBlockTakesItOffTheFreeList) {
  BlockPool pool(3);
  const int32_t a = pool.allocate();
  ASSERT_TRUE(pool.register_hash(a, h(1)));
  pool.release(a);
  EXPECT_EQ(pool.n_free(), 3);
  pool.acquire(a);
  EXPECT_EQ(pool.n_free(), 2);
  EXPECT_EQ(pool.ref_count(a), 1);
  EXPECT_EQ(pool.find(h(1)), a);
  // The other two can be allocated; a is never handed out while held.
  EXPECT_NE(pool.allocate(), a);
  EXPECT_NE(pool.allocate(), a);
  EXPECT_THROW(pool.allocate(), Error);
  pool.check();
}

TEST(BlockPool, ClearCacheDropsOnlyUnreferencedHashes) {
  BlockPool pool(3);
  const int32_t a = pool.allocate(), b = pool.allocate();
  ASSERT_TRUE(pool.register_hash(a, h(1)));
  ASSERT_TRUE(pool.register_hash(b, h(2)));
  pool.release(a);
  pool.clear_cache();
  EXPECT_EQ(pool.find(h(1)), -1);
  EXPECT_EQ(pool.find(h(2)), b);
  EXPECT_EQ(pool.n_cached(), 1);
  pool.check();
}

}  // namespace
}  // namespace jinx::kv
