// Fuzz target: SamplingParams::validate and Sampler::sample on arbitrary parameters and logits
// (NaN, infinities, denormals, ties, huge and tiny values).
// Input: parameter fields, then one byte per logit (a few byte values select a raw float, NaN
// or an infinity); logits past the end of the input follow a fixed pattern.
// Properties: validate() never crashes; with valid parameters sample() returns an id in range
// or throws jinx::Error; the token is not -inf after penalties, greedy picks the first argmax,
// top-k picks among the k best, and top logprobs are sorted, in range and of the asked count.
#include <cmath>
#include <limits>
#include <vector>

#include "engine/sampler.h"
#include "fuzz/fuzz_util.h"

namespace {

using jinx::fuzz::InputReader;

// A float in [lo, hi] most of the time; any bit pattern (NaN, inf) when the mode byte says so.
float pick_float(InputReader& in, float lo, float hi) {
  const uint8_t mode = in.take<uint8_t>();
  if (mode >= 0xF0) return in.take<float>();
  return lo + (hi - lo) * static_cast<float>(in.take<uint16_t>()) / 65535.0f;
}

jinx::SamplingParams read_params(InputReader& in, int32_t vocab) {
  jinx::SamplingParams p;
  if (in.flag()) p.temperature = pick_float(in, 0.0f, 2.0f);
  else p.temperature = in.flag() ? 0.0f : 1.0f;
  p.top_k = static_cast<int>(in.range(-2, vocab + 2));
  if (in.flag()) p.top_k = 0;
  p.top_p = in.flag() ? pick_float(in, 0.0f, 1.0f) : 1.0f;
  p.min_p = in.flag() ? pick_float(in, 0.0f, 1.0f) : 0.0f;
  p.repetition_penalty = in.flag() ? pick_float(in, 0.0f, 2.0f) : 1.0f;
  p.presence_penalty = in.flag() ? pick_float(in, -2.0f, 2.0f) : 0.0f;
  p.frequency_penalty = in.flag() ? pick_float(in, -2.0f, 2.0f) : 0.0f;
  const int n_bias = static_cast<int>(in.range(0, 4));
  for (int i = 0; i < n_bias; ++i) {
    auto id = static_cast<int32_t>(in.range(-1, vocab));
    p.logit_bias.emplace_back(id, pick_float(in, -101.0f, 101.0f));
  }
  p.seed = in.take<uint64_t>();
  p.logprobs = static_cast<int>(in.range(-2, jinx::kMaxLogprobs + 1));
  return p;
}

float read_logit(InputReader& in, int32_t i) {
  if (in.left() == 0) return static_cast<float>((i * 7919) % 97) / 10.0f;
  const uint8_t b = in.take<uint8_t>();
  switch (b) {
    case 0xFF: return in.take<float>();
    case 0xFE: return -std::numeric_limits<float>::infinity();
    case 0xFD: return std::numeric_limits<float>::infinity();
    case 0xFC: return std::numeric_limits<float>::quiet_NaN();
    case 0xFB: return std::numeric_limits<float>::max();
    case 0xFA: return std::numeric_limits<float>::denorm_min();
    default: return (static_cast<float>(b) - 128.0f) / 8.0f;
  }
}

void check_result(const jinx::SamplingParams& p, const jinx::SampleResult& r,
                  const std::vector<float>& after, int32_t vocab) {
  JINX_FUZZ_ASSERT(r.token >= 0 && r.token < vocab);
  JINX_FUZZ_ASSERT(after[r.token] > -std::numeric_limits<float>::infinity());
  if (p.temperature < jinx::kGreedyTemperature) {
    int32_t best = 0;
    for (int32_t i = 1; i < vocab; ++i)
      if (after[i] > after[best]) best = i;
    JINX_FUZZ_ASSERT(r.token == best);
  } else if (p.top_k > 0 && p.top_k < vocab) {
    int32_t better = 0;
    for (int32_t i = 0; i < vocab; ++i) better += after[i] > after[r.token];
    JINX_FUZZ_ASSERT(better < p.top_k);
  }
  if (p.logprobs < 0) {
    JINX_FUZZ_ASSERT(std::isnan(r.logprob) && r.top.empty());
    return;
  }
  JINX_FUZZ_ASSERT(!std::isnan(r.logprob) && r.logprob <= 0.0f);
  JINX_FUZZ_ASSERT(static_cast<int32_t>(r.top.size()) == std::min(p.logprobs, vocab));
  for (size_t i = 0; i < r.top.size(); ++i) {
    JINX_FUZZ_ASSERT(r.top[i].id >= 0 && r.top[i].id < vocab && r.top[i].logprob <= 0.0f);
    if (i > 0) JINX_FUZZ_ASSERT(r.top[i].logprob <= r.top[i - 1].logprob);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  InputReader in(data, size);
  const auto vocab = static_cast<int32_t>(in.flag() ? in.range(1, 300) : in.range(1, 5000));
  const jinx::SamplingParams p = read_params(in, vocab);
  std::vector<int32_t> prompt(static_cast<size_t>(in.range(0, 6)));
  for (int32_t& id : prompt) id = static_cast<int32_t>(in.range(-1, vocab));
  const int steps = static_cast<int>(in.range(1, 3));
  std::vector<float> logits(static_cast<size_t>(vocab));
  for (int32_t i = 0; i < vocab; ++i) logits[i] = read_logit(in, i);

  (void)p.validate(-static_cast<int>(in.range(0, 1)));  // a bad vocab size is reported
  if (!p.validate(vocab).empty()) return 0;
  jinx::fuzz::expect_ok_or_error([&] {
    jinx::Sampler sampler(p, prompt);
    for (int s = 0; s < steps; ++s) {
      std::vector<float> work = logits;
      jinx::SampleResult r = sampler.sample(work.data(), vocab);
      check_result(p, r, work, vocab);
      sampler.accept(r.token);
    }
  });
  return 0;
}
