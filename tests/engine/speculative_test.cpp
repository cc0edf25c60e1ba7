// Speculative decoding by prompt lookup: the n-gram drafter's guesses, the scheduler's
// bookkeeping of guesses (kept, dropped, their KV slots given back), the batch's sample rows,
// and end to end: the engine's tokens with guesses are the tokens without them, greedy and with
// a seed, because the CPU forward pass is batch-invariant and the rows are sampled in order.
#include <gtest/gtest.h>

#include <vector>

#include "core/check.h"
#include "engine/batch.h"
#include "engine/drafter.h"
#include "engine/llm.h"
#include "engine/scheduler.h"
#include "../support/speculative_check.h"

namespace jinx {
namespace {

std::vector<int32_t> guesses(const NgramDrafter& d, std::vector<int32_t> tokens, int32_t k) {
  std::vector<int32_t> out = {99};  // replaced
  d.guess(tokens, k, &out);
  return out;
}

TEST(NgramDrafter, LatestOccurrenceOfTheLongestSuffix) {
  const NgramDrafter d(1, 3);
  // "1 2 3" occurs at 0 and 4 before the suffix: the latest (4) is followed by 7 5 1.
  EXPECT_EQ(guesses(d, {1, 2, 3, 9, 1, 2, 3, 7, 5, 1, 2, 3}, 3), (std::vector<int32_t>{7, 5, 1}));
  // Only the 1-gram "2" repeats; what followed it, then the guesses continue the copy.
  EXPECT_EQ(guesses(d, {5, 6, 7, 1, 2, 8, 2}, 3), (std::vector<int32_t>{8, 2, 8}));
  // A period-2 text keeps its period past the end of the sequence.
  EXPECT_EQ(guesses(d, {4, 1, 2, 1, 2}, 5), (std::vector<int32_t>{1, 2, 1, 2, 1}));
  EXPECT_EQ(guesses(d, {1, 2, 3, 1, 2}, 2), (std::vector<int32_t>{3, 1}));
  EXPECT_TRUE(guesses(d, {1, 2, 3, 4}, 3).empty());  // nothing repeats
  EXPECT_TRUE(guesses(d, {1, 2, 1}, 0).empty());
  EXPECT_TRUE(guesses(d, {}, 3).empty());
  EXPECT_TRUE(guesses(d, {7}, 3).empty());
  const NgramDrafter d2(2, 4);
  EXPECT_TRUE(guesses(d2, {5, 6, 7, 1, 2, 8, 2}, 3).empty());  // no 2-gram repeats
  EXPECT_EQ(guesses(d2, {5, 6, 7, 8, 5, 6}, 4), (std::vector<int32_t>{7, 8, 5, 6}));
  EXPECT_THROW(NgramDrafter(0, 2), Error);
  EXPECT_THROW(NgramDrafter(3, 2), Error);
}

// Guesses a fixed list (as many as asked for).
class FixedDrafter final : public StatelessDrafter {
 public:
  explicit FixedDrafter(std::vector<int32_t> g) : g_(std::move(g)) {}
  void guess(std::span<const int32_t>, int32_t max_tokens,
             std::vector<int32_t>* out) const override {
    out->assign(g_.begin(), g_.begin() + std::min<size_t>(g_.size(), max_tokens));
  }

 private:
  std::vector<int32_t> g_;
};

Scheduler make_scheduler(int32_t n_blocks, int32_t block_size, int32_t budget = 64) {
  SchedulerConfig sc;
  sc.max_num_seqs = 4;
  sc.max_num_batched_tokens = budget;
  kv::KVCacheConfig kc;
  kc.n_blocks = n_blocks;
  kc.block_size = block_size;
  return Scheduler(sc, kc);
}

TEST(SchedulerSpeculative, GuessesKeptDroppedAndTheirSlotsGivenBack) {
  Scheduler s = make_scheduler(32, 2);
  s.set_drafter(std::make_shared<FixedDrafter>(std::vector<int32_t>{7, 8, 9}), 3);
  const SeqId id = s.add({10, 11, 12, 13, 14, 15}, /*max_output=*/20);
  ScheduledStep st = s.schedule();  // the prompt: no guesses
  ASSERT_EQ(st.seqs.size(), 1u);
  EXPECT_EQ(st.seqs[0].n_draft, 0);
  s.on_step_done(std::vector<SampledToken>{{id, 7}});
  st = s.schedule();  // the decode of 7, then guesses 7 8 9
  ASSERT_EQ(st.seqs.size(), 1u);
  EXPECT_EQ(st.seqs[0].n_new, 4);
  EXPECT_EQ(st.seqs[0].n_draft, 3);
  EXPECT_TRUE(st.seqs[0].sample);
  const Batch b = build_batch(st, s);
  EXPECT_EQ(b.token_ids, (std::vector<int32_t>{7, 7, 8, 9}));
  EXPECT_EQ(b.sample_rows, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(b.sample_seqs, (std::vector<int32_t>{0, 0, 0, 0}));
  EXPECT_EQ(s.sequence(id).n_known(), 7);
  EXPECT_EQ(s.block_table(id).size(), 5u);  // 10 slots
  s.check_invariants();
  // More guesses kept than there were: refused, nothing changed.
  EXPECT_THROW(s.on_step_done(std::vector<SampledToken>{{id, 5, FinishReason::kNone, 4}}), Error);
  EXPECT_EQ(s.sequence(id).size(), 10);
  // The first guess (7) stood, the second did not: 5 follows it.
  s.on_step_done(std::vector<SampledToken>{{id, 5, FinishReason::kNone, 1}});
  const Sequence& q = s.sequence(id);
  EXPECT_EQ(q.tokens, (std::vector<int32_t>{10, 11, 12, 13, 14, 15, 7, 7, 5}));
  EXPECT_EQ(q.n_computed, 8);
  EXPECT_EQ(q.n_draft, 0);
  EXPECT_EQ(s.block_table(id).size(), 4u);  // the 5th block held only dropped guesses
  EXPECT_EQ(s.stats().n_draft_tokens, 3);
  EXPECT_EQ(s.stats().n_accepted_tokens, 1);
  s.check_invariants();
}

TEST(SchedulerSpeculative, GuessesStopAtTheOutputLimitAndTheBudget) {
  Scheduler s = make_scheduler(32, 4, /*budget=*/6);
  s.set_drafter(std::make_shared<FixedDrafter>(std::vector<int32_t>{1, 2, 3, 4, 5, 6, 7, 8}), 8);
  const SeqId a = s.add({10, 11}, /*max_output=*/3);
  const SeqId b = s.add({20, 21}, /*max_output=*/0);
  s.schedule();
  s.on_step_done(std::vector<SampledToken>{{a, 1}, {b, 1}});
  const ScheduledStep st = s.schedule();
  ASSERT_EQ(st.seqs.size(), 2u);
  // a: 1 generated, at most 3: one guess, then the token after it.
  EXPECT_EQ(st.seqs[0].n_draft, 1);
  // b: the budget of 6 less a's 2 tokens and b's own.
  EXPECT_EQ(st.seqs[1].n_draft, 3);
  EXPECT_EQ(st.n_tokens, 6);
  s.on_step_done(std::vector<SampledToken>{{a, 1, FinishReason::kNone, 1},
                                           {b, 9, FinishReason::kNone, 0}});
  EXPECT_FALSE(s.contains(a));  // 3 tokens: length
  s.check_invariants();
}

TEST(SchedulerSpeculative, OverlapSchedulingRefusesGuesses) {
  Scheduler s = make_scheduler(32, 4);
  s.set_drafter(std::make_shared<FixedDrafter>(std::vector<int32_t>{1}), 1);
  s.add({10, 11}, 4);
  s.schedule();
  EXPECT_THROW(s.schedule_ahead(), Error);
  EXPECT_THROW(s.set_drafter(nullptr, -1), Error);
}

const std::string kModels = std::string(JINX_FIXTURES) + "/models/";

void expect_same_outputs(const std::string& model_name, const SamplingParams& sp,
                         int32_t n_spec, int64_t kv_tokens) {
  const test::SpeculativeRuns runs = test::run_with_and_without(
      Model::load(kModels + model_name), sp, 3, kv_tokens, [&](EngineOptions* o) {
        o->num_speculative_tokens = n_spec;
        o->prompt_lookup_min = 1;
      });
  const auto& out = runs.out;
  const auto& stats = runs.stats;
  test::expect_same_tokens(out[0], out[1], model_name);
  std::printf("%s k=%d: %lld steps without guesses, %lld with; %lld of %lld guesses kept\n",
              model_name.c_str(), n_spec, static_cast<long long>(stats[0].steps),
              static_cast<long long>(stats[1].steps), static_cast<long long>(stats[1].accepted_tokens),
              static_cast<long long>(stats[1].draft_tokens));
  EXPECT_EQ(stats[0].draft_tokens, 0);
  EXPECT_GT(stats[1].draft_tokens, 0);
  EXPECT_GT(stats[1].accepted_tokens, 0);
  EXPECT_EQ(stats[1].generated_tokens, stats[0].generated_tokens);
  EXPECT_LT(stats[1].steps, stats[0].steps);  // each kept guess saved a step
}

TEST(LLMSpeculative, GreedyTokensAreThoseWithoutGuesses) {
  SamplingParams sp;
  sp.temperature = 0;
  sp.max_tokens = 40;
  sp.ignore_eos = true;
  sp.logprobs = 2;
  expect_same_outputs("tiny-qwen2", sp, 4, 4096);
  expect_same_outputs("tiny-llama-q8_0.gguf", sp, 3, 4096);
}

TEST(LLMSpeculative, SeededSamplingDrawsTheSameTokens) {
  SamplingParams sp;
  sp.temperature = 0.7f;
  sp.top_k = 20;
  sp.seed = 11;
  sp.max_tokens = 40;
  sp.ignore_eos = true;
  sp.repetition_penalty = 1.05f;
  expect_same_outputs("tiny-qwen3", sp, 5, 4096);
}

TEST(LLMSpeculative, UnderPreemption) {
  SamplingParams sp;
  sp.temperature = 0;
  sp.max_tokens = 30;
  sp.ignore_eos = true;
  expect_same_outputs("tiny-llama", sp, 4, /*kv_tokens=*/96);
}

}  // namespace
}  // namespace jinx
