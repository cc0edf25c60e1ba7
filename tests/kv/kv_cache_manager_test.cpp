// KV manager block tables (admit/grow/free, all-or-nothing) and KV cache sizing.
#include "kv/kv_cache_manager.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "core/check.h"
#include "kv/kv_config.h"

namespace jinx::kv {
namespace {

KVCacheConfig config(int32_t n_blocks, int32_t bs) {
  KVCacheConfig c;
  c.n_blocks = n_blocks;
  c.block_size = bs;
  c.hash_seed = 1;
  return c;
}

TEST(KVCacheManager, TablesGrowByWholeBlocks) {
  KVCacheManager kv(config(8, 4));
  EXPECT_EQ(kv.capacity_tokens(), 32);
  EXPECT_EQ(kv.blocks_for(0), 0);
  EXPECT_EQ(kv.blocks_for(1), 1);
  EXPECT_EQ(kv.blocks_for(4), 1);
  EXPECT_EQ(kv.blocks_for(5), 2);
  ASSERT_TRUE(kv.admit(7, {}, 5));
  EXPECT_EQ(kv.block_table(7).size(), 2u);
  EXPECT_TRUE(kv.grow(7, 8));  // still 2 blocks
  EXPECT_EQ(kv.block_table(7).size(), 2u);
  EXPECT_TRUE(kv.grow(7, 9));
  EXPECT_EQ(kv.block_table(7).size(), 3u);
  EXPECT_TRUE(kv.grow(7, 3));  // never shrinks
  EXPECT_EQ(kv.block_table(7).size(), 3u);
  EXPECT_EQ(kv.n_free_blocks(), 5);
  EXPECT_EQ(kv.max_tokens_fitting(7), 32);
  kv.check_invariants();
  kv.free(7);
  EXPECT_EQ(kv.n_free_blocks(), 8);
  EXPECT_FALSE(kv.contains(7));
  kv.check_invariants();
}

// Speculative decoding gives back the slots of rejected guesses: shrink releases the blocks
// past the tokens kept, never a registered one.
TEST(KVCacheManager, ShrinkReleasesTailBlocksOnly) {
  KVCacheManager kv(config(8, 4));
  ASSERT_TRUE(kv.admit(3, {}, 14));  // 4 blocks
  const std::vector<int32_t> before(kv.block_table(3).begin(), kv.block_table(3).end());
  std::vector<BlockHash> hashes;
  const std::vector<int32_t> toks = {1, 2, 3, 4, 5, 6, 7, 8};
  extend_block_hashes(toks, 4, kv.hash_seed(), &hashes);
  kv.commit(3, hashes, 8);  // blocks 0 and 1 registered
  kv.shrink(3, 9);          // keeps 3 blocks
  ASSERT_EQ(kv.block_table(3).size(), 3u);
  EXPECT_TRUE(std::equal(before.begin(), before.begin() + 3, kv.block_table(3).begin()));
  EXPECT_EQ(kv.n_free_blocks(), 5);
  kv.shrink(3, 12);  // nothing to release
  EXPECT_EQ(kv.block_table(3).size(), 3u);
  EXPECT_THROW(kv.shrink(3, 4), Error);  // would release registered block 1
  EXPECT_EQ(kv.block_table(3).size(), 3u);
  kv.check_invariants();
  EXPECT_THROW(kv.shrink(4, 1), Error);  // unknown sequence
}

TEST(KVCacheManager, AdmitAndGrowAreAllOrNothing) {
  KVCacheManager kv(config(4, 4));
  ASSERT_TRUE(kv.admit(0, {}, 12));  // 3 blocks
  EXPECT_FALSE(kv.admit(1, {}, 8));  // needs 2, 1 free
  EXPECT_FALSE(kv.contains(1));
  EXPECT_EQ(kv.n_free_blocks(), 1);
  EXPECT_FALSE(kv.grow(0, 20));
  EXPECT_EQ(kv.block_table(0).size(), 3u);
  EXPECT_TRUE(kv.grow(0, 16));
  EXPECT_EQ(kv.n_free_blocks(), 0);
  kv.check_invariants();
}

TEST(KVCacheManager, MisuseThrows) {
  KVCacheManager kv(config(4, 4));
  EXPECT_THROW(kv.free(3), Error);
  EXPECT_THROW(kv.grow(3, 1), Error);
  EXPECT_THROW(kv.block_table(3), Error);
  ASSERT_TRUE(kv.admit(3, {}, 1));
  EXPECT_THROW(kv.admit(3, {}, 1), Error);   // twice
  EXPECT_THROW(kv.commit(3, {}, 5), Error);  // more computed than slots
  const std::vector<int32_t> bogus = {0, 1};
  EXPECT_THROW(kv.admit(4, bogus, 4), Error);  // 2 prefix blocks for 4 tokens
  EXPECT_THROW(kv.blocks_for(-1), Error);
}

TEST(KVCacheManager, ConfigIsValidated) {
  EXPECT_THROW(KVCacheManager(config(0, 16)), Error);
  EXPECT_THROW(KVCacheManager(config(4, 0)), Error);
  EXPECT_THROW(KVCacheManager(config(4, -16)), Error);
  EXPECT_THROW(KVCacheManager(config(1 << 30, 16)), Error);  // > 2^31 tokens
}

TEST(KVConfig, BytesAndBlocksForAQwenLikeLayout) {
  // 28 layers, 4 KV heads of 128 dims, bf16: 28 * 4 * (128 + 128) * 2 = 57344 bytes per token.
  const KVLayout l{28, 4, 128, 128, 2};
  EXPECT_EQ(kv_bytes_per_token(l), 57344);
  // 1 GiB / (57344 * 16) = 1170.28... -> 1170 blocks.
  EXPECT_EQ(kv_blocks_for_memory(1.0, l, 16), 1170);
  EXPECT_EQ(kv_blocks_for_memory(0.5, l, 32), 292);
  EXPECT_EQ(kv_blocks_for_tokens(1, 16), 1);
  EXPECT_EQ(kv_blocks_for_tokens(16, 16), 1);
  EXPECT_EQ(kv_blocks_for_tokens(17, 16), 2);
  EXPECT_EQ(kv_blocks_for_tokens(32768, 16), 2048);
  // int8 / fp8 rows carry a 4-byte scale each: 28 * 4 * (128 + 4 + 128 + 4) = 29568 bytes.
  EXPECT_EQ(kv_bytes_per_token(KVLayout{28, 4, 128, 128, 1, 4}), 29568);
}

TEST(KVConfig, BadSizesThrow) {
  const KVLayout l{28, 4, 128, 128, 2};
  EXPECT_THROW(kv_blocks_for_memory(0.0, l, 16), Error);
  EXPECT_THROW(kv_blocks_for_memory(-1.0, l, 16), Error);
  EXPECT_THROW(kv_blocks_for_memory(1e-9, l, 16), Error);  // less than one block
  EXPECT_THROW(kv_blocks_for_memory(1.0 / 0.0, l, 16), Error);
  EXPECT_THROW(kv_blocks_for_memory(1.0, l, 0), Error);
  EXPECT_THROW(kv_bytes_per_token(KVLayout{0, 4, 128, 128, 2}), Error);
  EXPECT_THROW(kv_bytes_per_token(KVLayout{28, 4, -128, 128, 2}), Error);
  EXPECT_THROW(kv_bytes_per_token(KVLayout{28, 4, 128, 128, 1, -4}), Error);
  EXPECT_THROW(kv_bytes_per_token(KVLayout{1 << 30, 1 << 30, 1 << 30, 1, 2}), Error);
  EXPECT_THROW(kv_blocks_for_tokens(0, 16), Error);
  EXPECT_THROW(kv_blocks_for_tokens(-5, 16), Error);
  EXPECT_THROW(kv_blocks_for_tokens(int64_t{1} << 40, 16), Error);
}

}  // namespace
}  // namespace jinx::kv
