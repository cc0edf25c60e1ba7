// Batch builder: flat metadata for a mixed step, checked against values worked out by hand.
#include "engine/batch.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

#include "core/check.h"
#include "engine/scheduler.h"

namespace jinx {
namespace {

std::vector<int32_t> tokens_from(int32_t n, int32_t first) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(Batch, MixedDecodeAndPrefillChunksMatchAHandComputation) {
  // Block size 4.
  //   A: decode of position 9 (10 tokens), table [7, 2, 5]: slot 5*4 + 1 = 21; samples.
  //   B: prefill chunk of positions 4..9 of 12 tokens, table [3, 0, 8]: positions 4-7 in
  //      block 0 (slots 0..3), 8-9 in block 8 (slots 32, 33); does not sample.
  //   C: first chunk, positions 0..2 of 3 tokens, table [1]: slots 4, 5, 6; samples.
  const auto ta = tokens_from(10, 100), tb = tokens_from(12, 200), tc = tokens_from(3, 300);
  const std::vector<int32_t> bta = {7, 2, 5}, btb = {3, 0, 8, 6}, btc = {1};
  const std::vector<BatchSeq> seqs = {
      {11, ta, bta, 9, 1, true},
      {12, tb, btb, 4, 6, false},
      {13, tc, btc, 0, 3, true},
  };
  const Batch b = build_batch(seqs, 4);
  EXPECT_EQ(b.block_size, 4);
  EXPECT_EQ(b.n_tokens, 10);
  EXPECT_EQ(b.n_seqs, 3);
  EXPECT_EQ(b.seq_ids, (std::vector<SeqId>{11, 12, 13}));
  EXPECT_EQ(b.token_ids, (std::vector<int32_t>{109, 204, 205, 206, 207, 208, 209, 300, 301, 302}));
  EXPECT_EQ(b.positions, (std::vector<int32_t>{9, 4, 5, 6, 7, 8, 9, 0, 1, 2}));
  EXPECT_EQ(b.slot_mapping, (std::vector<int64_t>{21, 0, 1, 2, 3, 32, 33, 4, 5, 6}));
  EXPECT_EQ(b.query_start, (std::vector<int32_t>{0, 1, 7, 10}));
  EXPECT_EQ(b.context_len, (std::vector<int32_t>{10, 10, 3}));
  EXPECT_EQ(b.max_blocks, 3);  // B's 4th block is not needed yet
  EXPECT_EQ(b.block_tables, (std::vector<int32_t>{7, 2, 5, 3, 0, 8, 1, -1, -1}));
  EXPECT_EQ(b.sample_rows, (std::vector<int32_t>{0, 9}));
  EXPECT_EQ(b.sample_seqs, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(b.max_query_len, 6);
  EXPECT_EQ(b.max_context_len, 10);
}

TEST(Batch, ReusingABatchClearsTheOldStep) {
  const auto t = tokens_from(5, 0);
  const std::vector<int32_t> bt = {9, 4};
  Batch b;
  const std::vector<BatchSeq> two = {{1, t, bt, 0, 5, true}, {2, t, bt, 4, 1, true}};
  build_batch(two, 4, &b);
  EXPECT_EQ(b.n_tokens, 6);
  const std::vector<BatchSeq> one = {{3, t, bt, 4, 1, false}};
  build_batch(one, 4, &b);
  EXPECT_EQ(b.n_tokens, 1);
  EXPECT_EQ(b.slot_mapping, (std::vector<int64_t>{16}));  // block 4, offset 0
  EXPECT_EQ(b.query_start, (std::vector<int32_t>{0, 1}));
  EXPECT_EQ(b.block_tables, (std::vector<int32_t>{9, 4}));
  EXPECT_TRUE(b.sample_rows.empty());
  const Batch empty = build_batch(std::span<const BatchSeq>{}, 4);
  EXPECT_EQ(empty.n_tokens, 0);
  EXPECT_EQ(empty.query_start, (std::vector<int32_t>{0}));
}

TEST(Batch, BadInputsThrow) {
  const auto t = tokens_from(8, 0);
  const std::vector<int32_t> bt = {0, 1}, short_bt = {0}, bad_bt = {0, -1};
  auto build = [&](BatchSeq s) {
    const std::vector<BatchSeq> v = {s};
    return build_batch(v, 4);
  };
  EXPECT_THROW(build({1, t, bt, -1, 1, false}), Error);
  EXPECT_THROW(build({1, t, bt, 0, 0, false}), Error);
  EXPECT_THROW(build({1, t, bt, 5, 4, false}), Error);        // past the tokens
  EXPECT_THROW(build({1, t, short_bt, 2, 3, false}), Error);  // needs 2 blocks
  EXPECT_THROW(build({1, t, bad_bt, 2, 3, false}), Error);
  EXPECT_NO_THROW(build({1, t, bt, 2, 6, true}));
  const std::vector<BatchSeq> v = {{1, t, bt, 0, 1, false}};
  EXPECT_THROW(build_batch(v, 0), Error);
}

TEST(Batch, FromASchedulerStep) {
  // Block size 4, budget 8. Step 1 admits A (6 tokens, whole) and B's first 2 of 5 tokens.
  // Fresh pool: A gets blocks 0, 1; B gets block 2.
  SchedulerConfig sc;
  sc.max_num_seqs = 4;
  sc.max_num_batched_tokens = 8;
  kv::KVCacheConfig kc;
  kc.n_blocks = 8;
  kc.block_size = 4;
  kc.hash_seed = 5;
  Scheduler s(sc, kc);
  const SeqId a = s.add(tokens_from(6, 10));
  const SeqId b = s.add(tokens_from(5, 20));
  ScheduledStep st = s.schedule();
  Batch bt = build_batch(st, s);
  EXPECT_EQ(bt.seq_ids, (std::vector<SeqId>{a, b}));
  EXPECT_EQ(bt.positions, (std::vector<int32_t>{0, 1, 2, 3, 4, 5, 0, 1}));
  EXPECT_EQ(bt.slot_mapping, (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 8, 9}));
  EXPECT_EQ(bt.block_tables, (std::vector<int32_t>{0, 1, 2, -1}));
  EXPECT_EQ(bt.sample_rows, (std::vector<int32_t>{5}));
  const std::vector<SampledToken> t1 = {{a, 77}};
  s.on_step_done(t1);
  // Step 2: A decodes position 6 (token 77, block 1 offset 2 -> slot 6); B takes the remaining
  // 3 tokens, positions 2..4: slots 10, 11, then a new block (3) for position 4 -> slot 12.
  st = s.schedule();
  build_batch(st, s, &bt);
  EXPECT_EQ(bt.token_ids, (std::vector<int32_t>{77, 22, 23, 24}));
  EXPECT_EQ(bt.positions, (std::vector<int32_t>{6, 2, 3, 4}));
  EXPECT_EQ(bt.slot_mapping, (std::vector<int64_t>{6, 10, 11, 12}));
  EXPECT_EQ(bt.query_start, (std::vector<int32_t>{0, 1, 4}));
  EXPECT_EQ(bt.context_len, (std::vector<int32_t>{7, 5}));
  EXPECT_EQ(bt.block_tables, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(bt.sample_rows, (std::vector<int32_t>{0, 3}));
}

}  // namespace
}  // namespace jinx
