#include "rag/retriever.h"

#include <gtest/gtest.h>

#include "core/check.h"

namespace jinx::rag {
namespace {

using VecHits = std::vector<std::pair<int64_t, float>>;
using KeyHits = std::vector<std::pair<int64_t, double>>;

TEST(Fuse, HandWorkedExample) {
  // rrf_k = 60. Chunk 20 is 2nd by vector and 1st by keyword: 1/62 + 1/61.
  // 10: 1st by vector only: 1/61.  40: 2nd by keyword only: 1/62.  30: 3rd by vector: 1/63.
  const VecHits vec = {{10, 0.9f}, {20, 0.8f}, {30, 0.7f}};
  const KeyHits key = {{20, 5.5}, {40, 4.25}};
  const auto hits = fuse(vec, key, 10);
  ASSERT_EQ(hits.size(), 4u);
  EXPECT_EQ(hits[0].chunk_id, 20);
  EXPECT_DOUBLE_EQ(hits[0].score, 1.0 / 62 + 1.0 / 61);
  EXPECT_EQ(hits[0].vector_rank, 2);
  EXPECT_EQ(hits[0].keyword_rank, 1);
  EXPECT_FLOAT_EQ(hits[0].similarity, 0.8f);
  EXPECT_DOUBLE_EQ(hits[0].bm25, 5.5);

  EXPECT_EQ(hits[1].chunk_id, 10);
  EXPECT_DOUBLE_EQ(hits[1].score, 1.0 / 61);
  EXPECT_EQ(hits[1].vector_rank, 1);
  EXPECT_EQ(hits[1].keyword_rank, -1);
  EXPECT_DOUBLE_EQ(hits[1].bm25, 0);

  EXPECT_EQ(hits[2].chunk_id, 40);
  EXPECT_DOUBLE_EQ(hits[2].score, 1.0 / 62);
  EXPECT_EQ(hits[2].vector_rank, -1);
  EXPECT_EQ(hits[2].keyword_rank, 2);
  EXPECT_FLOAT_EQ(hits[2].similarity, 0);
  EXPECT_DOUBLE_EQ(hits[2].bm25, 4.25);

  EXPECT_EQ(hits[3].chunk_id, 30);
  EXPECT_DOUBLE_EQ(hits[3].score, 1.0 / 63);

  // A different rrf_k changes the arithmetic: k = 0 gives 1/rank.
  const auto raw = fuse(vec, key, 10, 0);
  EXPECT_EQ(raw[0].chunk_id, 20);
  EXPECT_DOUBLE_EQ(raw[0].score, 1.0 / 2 + 1.0 / 1);
}

TEST(Fuse, BothListsBeatOneListAtSimilarRanks) {
  // Chunk 7 is only 3rd in each list; 1 and 2 lead one list each.
  const VecHits vec = {{1, 0.99f}, {5, 0.9f}, {7, 0.8f}};
  const KeyHits key = {{2, 9.0}, {6, 8.0}, {7, 7.0}};
  const auto hits = fuse(vec, key, 3);
  ASSERT_EQ(hits.size(), 3u);
  EXPECT_EQ(hits[0].chunk_id, 7);
  EXPECT_DOUBLE_EQ(hits[0].score, 2.0 / 63);
  EXPECT_EQ(hits[1].chunk_id, 1) << "ties by chunk id";
  EXPECT_EQ(hits[2].chunk_id, 2);
  EXPECT_DOUBLE_EQ(hits[1].score, hits[2].score);
}

TEST(Fuse, TruncatesToK) {
  VecHits vec;
  KeyHits key;
  for (int i = 0; i < 30; ++i) vec.push_back({i, 1.0f - i * 0.01f});
  for (int i = 0; i < 30; ++i) key.push_back({100 + i, 30.0 - i});
  EXPECT_EQ(fuse(vec, key, 5).size(), 5u);
  EXPECT_EQ(fuse(vec, key, 60).size(), 60u);
  EXPECT_EQ(fuse(vec, key, 1000).size(), 60u);
  EXPECT_TRUE(fuse(vec, key, 0).empty());
  EXPECT_TRUE(fuse({}, {}, 5).empty());
  const auto top = fuse(vec, key, 4);  // ranks 1, 1, 2, 2: ids 0, 100, 1, 101
  ASSERT_EQ(top.size(), 4u);
  EXPECT_EQ(top[0].chunk_id, 0);
  EXPECT_EQ(top[1].chunk_id, 100);
  EXPECT_EQ(top[2].chunk_id, 1);
  EXPECT_EQ(top[3].chunk_id, 101);
}

TEST(Fuse, RepeatedIdCountsOnceAtItsBestRank) {
  const VecHits vec = {{3, 0.9f}, {3, 0.5f}, {4, 0.4f}};
  const auto hits = fuse(vec, {}, 5);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_DOUBLE_EQ(hits[0].score, 1.0 / 61);
  EXPECT_FLOAT_EQ(hits[0].similarity, 0.9f);
  EXPECT_EQ(hits[1].vector_rank, 3);
}

TEST(Fuse, RejectsBadArguments) {
  EXPECT_THROW(fuse({}, {}, -1), Error);
  EXPECT_THROW(fuse({}, {}, 5, -1), Error);
}

}  // namespace
}  // namespace jinx::rag
