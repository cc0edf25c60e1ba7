#include "engine/sampler.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/check.h"

// The helpers below pass 64-byte vectors by value; they are all internal to this file, so the
// ABI note GCC gives for targets without AVX-512 does not matter.
#pragma GCC diagnostic ignored "-Wpsabi"

namespace jinx {
namespace {

// GCC/Clang vector extensions: one AVX-512 register, two AVX2 ones, four SSE ones. Plain loops
// over arrays did not vectorize (the exp and the max/NaN reductions stayed scalar, ~0.5 ms per
// pass over 150k logits); these compile to straight SIMD on every x86 level.
constexpr int kLanes = 16;
using VecF = float __attribute__((vector_size(64)));
using VecI = int32_t __attribute__((vector_size(64)));

constexpr int32_t kBlock = 256;  // logits per partial sum kept for the weighted draw
constexpr int32_t kFirstNucleusGuess = 256;
constexpr float kBinsPerUnit = 16.0f;  // histogram bins per unit of (max - logit) / T
constexpr float kExpUnderflow = -87.0f;
constexpr int32_t kBins = static_cast<int32_t>(-kExpUnderflow * kBinsPerUnit) + 2;
constexpr float kInf = std::numeric_limits<float>::infinity();

// Lane-by-lane loops here compile to one masked insert per lane: broadcast with a scalar
// operand instead (GCC and Clang widen it).
inline VecF splat(float v) {
  return VecF{} + v;
}
inline VecI splat_i(int32_t v) {
  return VecI{} + v;
}
constexpr VecI kIota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
inline VecF load(const float* p) {
  VecF v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
// min(n, 16) floats from p, the other lanes `fill`.
inline VecF load_partial(const float* p, int32_t n, float fill) {
  float buf[kLanes];
  std::fill(buf, buf + kLanes, fill);
  std::copy(p, p + std::min<int32_t>(n, kLanes), buf);
  return load(buf);
}
// The 16 floats at x + i, padded with -inf past n.
inline VecF load_at(const float* x, int32_t i, int32_t n) {
  return i + kLanes <= n ? load(x + i) : load_partial(x + i, n - i, -kInf);
}
inline VecF select(VecI mask, VecF a, VecF b) {
  return std::bit_cast<VecF>((mask & std::bit_cast<VecI>(a)) | (~mask & std::bit_cast<VecI>(b)));
}
inline bool any(VecI mask) {
  int32_t r = 0;
  for (int l = 0; l < kLanes; ++l) r |= mask[l];
  return r != 0;
}
inline float sum_lanes(VecF v) {
  float s = 0.0f;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

// exp(x) to ~2 ulp for x <= 88, exactly 0 for x < -87 (-inf included), exp(0) == 1 exactly.
// Cody-Waite reduction x = n*ln2 + r, a degree-7 Taylor polynomial of exp(r) on |r| <= ln2/2
// (truncation error < 6e-9 relative), 2^n built in the exponent bits.
inline VecF exp16(VecF x) {
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kLn2Hi = 0.693145751953125f;  // 15 significant bits: n * kLn2Hi is exact
  constexpr float kLn2Lo = 1.42860682030941723e-6f;
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  const VecI under = x < splat(kExpUnderflow);
  VecF xc = select(under, splat(kExpUnderflow), x);
  xc = select(xc > splat(88.0f), splat(88.0f), xc);
  const VecF t = xc * kLog2e + kRound;
  const VecF n = t - kRound;
  const VecF r = (xc - n * kLn2Hi) - n * kLn2Lo;
  VecF p = splat(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const VecI e = (std::bit_cast<VecI>(t) - std::bit_cast<int32_t>(kRound) + 127) << 23;
  return select(under, splat(0.0f), p * std::bit_cast<VecF>(e));
}

struct Cand {
  float logit;
  int32_t id;
};

// Strict order: higher logit first, then lower id (the tie rule everywhere in this file).
inline bool better(const Cand& a, const Cand& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}

// Which logits count and how much: weight = exp((x - shift) * scale) for tokens at least as
// good as the cutoff (x > tau, or x == tau and id <= id_cut) with weight >= floor, else 0.
struct Filter {
  float shift;
  float scale;
  float floor = 0.0f;
  float tau = -kInf;  // the default cutoff excludes only -inf logits, whose weight is 0 anyway
  int32_t id_cut = -1;
};

// Weights of x[base, base + 16) (x: that chunk, already loaded). kFilter = false skips the
// cutoff and floor tests, for a filter that has neither (same result, a third fewer ops).
template <bool kFilter = true>
inline VecF weights16(VecF x, int32_t base, const Filter& f) {
  const VecF w = exp16((x - f.shift) * f.scale);
  if constexpr (!kFilter) return w;
  const VecI idx = kIota + base;
  const VecI keep = ((x > f.tau) | ((x == f.tau) & (idx <= f.id_cut))) & (w >= splat(f.floor));
  return select(keep, w, splat(0.0f));
}

// Weights of x[begin, end) into out[0, end - begin); end - begin <= kBlock.
void block_weights(const float* x, int32_t begin, int32_t end, const Filter& f, float* out) {
  for (int32_t i = begin; i < end; i += kLanes) {
    const VecF w = weights16(load_at(x, i, end), i, f);
    std::memcpy(out + (i - begin), &w, sizeof(float) * std::min<int32_t>(kLanes, end - i));
  }
}

struct MaxScan {
  float max;
  bool has_nan;
};

MaxScan scan_max(const float* x, int32_t n) {  // x: [n]
  VecF m = splat(-kInf);
  VecI nan = splat_i(0);
  for (int32_t i = 0; i < n; i += kLanes) {
    const VecF v = load_at(x, i, n);
    nan |= v != v;
    m = select(v > m, v, m);
  }
  MaxScan r{-kInf, any(nan)};
  for (int l = 0; l < kLanes; ++l) r.max = std::max(r.max, m[l]);
  return r;
}

// First index of `v` in x (v must occur): the greedy token, ties to the lowest id.
int32_t first_index_of(const float* x, int32_t n, float v) {
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    if (any(load(x + i) == splat(v))) break;
  for (; i < n; ++i)
    if (x[i] == v) return i;
  fail("sampler: max logit not found");
}

// Sum of the weights of x[0, n); the per-block sums (kBlock logits each) go to *blocks.
template <bool kFilter>
double weight_sum_impl(const float* x, int32_t n, const Filter& f, std::vector<double>* blocks) {
  double total = 0.0;
  for (int32_t b = 0; b < n; b += kBlock) {
    const int32_t end = std::min(n, b + kBlock);
    VecF acc = splat(0.0f);
    for (int32_t i = b; i < end; i += kLanes) {
      const VecF v = load_at(x, i, end);
      acc += weights16<kFilter>(v, i, f);
    }
    const double s = sum_lanes(acc);
    if (blocks != nullptr) blocks->push_back(s);
    total += s;
  }
  return total;
}

double weight_sum(const float* x, int32_t n, const Filter& f, std::vector<double>* blocks) {
  const bool filtered = f.floor > 0.0f || f.tau > -kInf;
  return filtered ? weight_sum_impl<true>(x, n, f, blocks)
                  : weight_sum_impl<false>(x, n, f, blocks);
}

// One draw over the whole vocabulary, proportional to the filtered weights. Pass 1 keeps the
// per-block sums; the draw then walks the blocks and recomputes the weights of one block.
int32_t draw_filtered(const float* x, int32_t n, const Filter& f, double u) {
  std::vector<double> blocks;
  blocks.reserve(n / kBlock + 1);
  const double target = u * weight_sum(x, n, f, &blocks);
  double cum = 0.0;
  size_t b = 0;
  for (; b < blocks.size() && cum + blocks[b] <= target; ++b) cum += blocks[b];
  if (b == blocks.size()) {  // rounding: take the last token with any weight
    do --b;
    while (blocks[b] <= 0.0);
    cum = -std::numeric_limits<double>::infinity();
  }
  const int32_t begin = static_cast<int32_t>(b) * kBlock;
  const int32_t end = std::min(n, begin + kBlock);
  float w[kBlock];
  block_weights(x, begin, end, f, w);
  int32_t last = -1;
  for (int32_t i = begin; i < end; ++i) {
    if (w[i - begin] <= 0.0f) continue;
    cum += w[i - begin];
    last = i;
    if (cum > target) return i;
  }
  JINX_CHECK(last >= 0, "sampler: no token with positive probability");
  return last;
}

// The min(k, n) best of x[0, n), sorted by better(). One pass keeps only values above the
// current k-th best (one vector compare per 64 logits rejects almost everything); the buffer
// is cut back to k with nth_element whenever it reaches 2k + 64. O(n) for the usual k << n.
void select_top(const float* x, int32_t n, int32_t k, std::vector<Cand>* out) {
  out->clear();
  k = std::min(k, n);
  const size_t cap = 2 * static_cast<size_t>(k) + 64;
  out->reserve(cap);
  float thr = -kInf;
  bool full = false;
  auto push = [&](int32_t i) {
    out->push_back({x[i], i});
    if (out->size() < cap) return;
    std::nth_element(out->begin(), out->begin() + (k - 1), out->end(), better);
    out->resize(k);
    thr = out->back().logit;  // a later equal value has a higher id, so it loses: reject it
    full = true;
  };
  int32_t i = 0;
  for (; i < n && !full; ++i) push(i);
  constexpr int32_t kGroup = 4 * kLanes;
  for (; i + kGroup <= n; i += kGroup) {
    const VecF t = splat(thr);
    const VecI hit = (load(x + i) > t) | (load(x + i + 16) > t) | (load(x + i + 32) > t) |
                     (load(x + i + 48) > t);
    if (!any(hit)) continue;
    for (int32_t j = i; j < i + kGroup; ++j)
      if (x[j] > thr) push(j);
  }
  for (; i < n; ++i)
    if (x[i] > thr) push(i);
  if (out->size() > static_cast<size_t>(k)) {
    std::nth_element(out->begin(), out->begin() + (k - 1), out->end(), better);
    out->resize(k);
  }
  std::sort(out->begin(), out->end(), better);
}

// Weights (unfiltered, shift/scale of f) of the candidates, by the same exp16 as every pass.
void cand_weights(const std::vector<Cand>& c, const Filter& f, std::vector<double>* w) {
  w->resize(c.size());
  for (size_t i = 0; i < c.size(); i += kLanes) {
    float buf[kLanes];
    std::fill(buf, buf + kLanes, -kInf);
    const size_t m = std::min<size_t>(kLanes, c.size() - i);
    for (size_t j = 0; j < m; ++j) buf[j] = c[i + j].logit;
    const VecF e = exp16((load(buf) - f.shift) * f.scale);
    for (size_t j = 0; j < m; ++j) (*w)[i + j] = e[j];
  }
}

// How many of the sorted candidates survive top-p (against total weight z) and min-p (weights
// are relative to the max, w[0] == 1). `decided` is false when neither cut fell inside the
// candidates, so a longer candidate list could still change the answer.
struct Cut {
  size_t n_keep;
  bool decided;
};

Cut cut(const std::vector<double>& w, double z, float top_p, float min_p) {
  const double target = static_cast<double>(top_p) * z;
  double cum = 0.0;
  for (size_t i = 0; i < w.size(); ++i) {
    if (i > 0 && w[i] < min_p) return {i, true};
    cum += w[i];
    if (cum >= target) return {i + 1, true};
  }
  return {w.size(), false};
}

// One draw among the first n_keep candidates, proportional to w.
int32_t draw_from(const std::vector<Cand>& c, const std::vector<double>& w, size_t n_keep,
                  double u) {
  double total = 0.0;
  for (size_t i = 0; i < n_keep; ++i) total += w[i];
  const double target = u * total;
  double cum = 0.0;
  size_t last = 0;
  for (size_t i = 0; i < n_keep; ++i) {
    if (w[i] <= 0.0) continue;
    cum += w[i];
    last = i;
    if (cum > target) return c[i].id;
  }
  return c[last].id;  // rounding left target at the very top
}

// Histogram bin of each logit of a chunk: floor((max - x) / T * kBinsPerUnit), the last bin
// for weights that underflow to 0. Monotone in x, so bins never reorder tokens.
inline VecI bins16(VecF x, const Filter& f) {
  VecF b = (splat(f.shift) - x) * (f.scale * kBinsPerUnit);
  b = select(b > splat(kBins - 1), splat(kBins - 1), b);
  return __builtin_convertvector(b, VecI);
}

// The top-p cutoff over the whole vocabulary without sorting it: one pass sums the weights
// per histogram bin, the bin where the cumulative mass crosses top_p * total is the only one
// that needs sorting. Sets f->tau / f->id_cut to the last token of the nucleus.
void nucleus_cutoff(const float* x, int32_t n, float top_p, Filter* f) {
  // Four interleaved histograms: consecutive adds to one bin would wait on each other.
  constexpr int kWays = 4;
  std::vector<double> hists(kWays * kBins, 0.0);
  for (int32_t i = 0; i < n; i += kLanes) {
    const VecF v = load_at(x, i, n);
    float w[kLanes];
    int32_t b[kLanes];
    const VecF wv = weights16<false>(v, i, *f);  // padding lanes: weight 0
    const VecI bv = bins16(v, *f);
    std::memcpy(w, &wv, sizeof w);
    std::memcpy(b, &bv, sizeof b);
    for (int l = 0; l < kLanes; ++l) hists[(l % kWays) * kBins + b[l]] += w[l];
  }
  std::vector<double> hist(kBins, 0.0);
  double z = 0.0;
  for (int32_t b = 0; b < kBins; ++b) {
    for (int k = 0; k < kWays; ++k) hist[b] += hists[k * kBins + b];
    z += hist[b];
  }
  const double target = static_cast<double>(top_p) * z;
  double cum = 0.0;
  int32_t bin = 0;
  while (bin < kBins - 1 && (hist[bin] <= 0.0 || cum + hist[bin] < target)) cum += hist[bin++];
  std::vector<Cand> c;
  for (int32_t i = 0; i < n; i += kLanes) {
    const VecI b = bins16(load_at(x, i, n), *f);
    if (!any(b == splat_i(bin))) continue;
    for (int l = 0; l < std::min<int32_t>(kLanes, n - i); ++l)
      if (b[l] == bin) c.push_back({x[i + l], i + l});
  }
  JINX_CHECK(!c.empty(), "sampler: empty nucleus bin");
  std::sort(c.begin(), c.end(), better);
  std::vector<double> w;
  cand_weights(c, *f, &w);
  size_t last = 0;
  while (last + 1 < c.size() && (cum += w[last]) < target) ++last;
  f->tau = c[last].logit;
  f->id_cut = c[last].id;
}

}  // namespace

std::string SamplingParams::validate(int vocab_size) const {
  auto in = [](float v, float lo, float hi) { return v >= lo && v <= hi; };  // NaN fails
  if (vocab_size <= 0) return str("vocab size must be positive, got ", vocab_size);
  if (!in(temperature, 0.0f, 2.0f)) return str("temperature must be in [0, 2], got ", temperature);
  if (top_k < -1) return str("top_k must be -1, 0 (both: disabled) or positive, got ", top_k);
  if (!(top_p > 0.0f && top_p <= 1.0f)) return str("top_p must be in (0, 1], got ", top_p);
  if (!in(min_p, 0.0f, 1.0f)) return str("min_p must be in [0, 1], got ", min_p);
  if (!(repetition_penalty > 0.0f && repetition_penalty <= 2.0f))
    return str("repetition_penalty must be in (0, 2], got ", repetition_penalty);
  if (!in(presence_penalty, -2.0f, 2.0f))
    return str("presence_penalty must be in [-2, 2], got ", presence_penalty);
  if (!in(frequency_penalty, -2.0f, 2.0f))
    return str("frequency_penalty must be in [-2, 2], got ", frequency_penalty);
  for (const auto& [id, bias] : logit_bias) {
    if (id < 0 || id >= vocab_size)
      return str("logit_bias token id ", id, " is outside [0, ", vocab_size, ")");
    if (!in(bias, -100.0f, 100.0f))
      return str("logit_bias value for token ", id, " must be in [-100, 100], got ", bias);
  }
  if (max_tokens < 1) return str("max_tokens must be at least 1, got ", max_tokens);
  if (min_tokens < 0 || min_tokens > max_tokens)
    return str("min_tokens must be in [0, max_tokens = ", max_tokens, "], got ", min_tokens);
  for (int32_t id : allowed_token_ids)
    if (id < 0 || id >= vocab_size)
      return str("allowed_token_ids entry ", id, " is outside [0, ", vocab_size, ")");
  for (const auto& w : bad_words_ids) {
    if (w.empty()) return "bad_words entries must not be empty";
    for (int32_t id : w)
      if (id < 0 || id >= vocab_size)
        return str("bad_words token ", id, " is outside [0, ", vocab_size, ")");
  }
  for (int32_t id : stop_token_ids)
    if (id < 0 || id >= vocab_size)
      return str("stop_token_ids entry ", id, " is outside [0, ", vocab_size, ")");
  for (const std::string& s : stop)
    if (s.empty()) return "stop strings must not be empty";
  if (logprobs > kMaxLogprobs)
    return str("logprobs must be at most ", kMaxLogprobs, ", got ", logprobs);
  if (prompt_logprobs > kMaxLogprobs)
    return str("prompt_logprobs must be at most ", kMaxLogprobs, ", got ", prompt_logprobs);
  return "";
}

Sampler::Sampler(const SamplingParams& p, std::span<const int32_t> prompt_ids) : params_(p) {
  if (p.seed) {
    rng_.seed(*p.seed);
  } else {
    std::random_device rd;
    rng_.seed((static_cast<uint64_t>(rd()) << 32) ^ rd());
  }
  for (int32_t id : prompt_ids)
    if (id < 0) fail("sampler: negative prompt token id ", id);
  track_prompt_ = p.repetition_penalty != 1.0f;
  track_output_ = track_prompt_ || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
  if (track_prompt_) {
    prompt_ids_.assign(prompt_ids.begin(), prompt_ids.end());
    std::sort(prompt_ids_.begin(), prompt_ids_.end());
    prompt_ids_.erase(std::unique(prompt_ids_.begin(), prompt_ids_.end()), prompt_ids_.end());
  }
}

void Sampler::accept(int32_t token) {
  if (token < 0) fail("sampler: negative generated token id ", token);
  if (track_output_) ++output_counts_[token];
}

double Sampler::uniform() {
  return static_cast<double>(rng_() >> 11) * 0x1.0p-53;  // [0, 1), 53 random bits
}

void Sampler::apply_bias_and_penalties(float* logits, int32_t vocab_size,
                                       std::vector<Saved>* saved) {
  auto touch = [&](int32_t id, const char* what) -> float& {
    if (id < 0 || id >= vocab_size)
      fail("sampler: ", what, " token id ", id, " is outside [0, ", vocab_size, ")");
    saved->push_back({id, logits[id]});
    return logits[id];
  };
  for (const auto& [id, bias] : params_.logit_bias) touch(id, "logit_bias") += bias;
  if (track_prompt_) {
    const float rp = params_.repetition_penalty;
    auto penalize = [rp](float& l) { l = l > 0.0f ? l / rp : l * rp; };
    for (int32_t id : prompt_ids_) penalize(touch(id, "prompt"));
    for (const auto& [id, count] : output_counts_)
      if (!std::binary_search(prompt_ids_.begin(), prompt_ids_.end(), id))
        penalize(touch(id, "generated"));
  }
  const float freq = params_.frequency_penalty;
  const float pres = params_.presence_penalty;
  if (freq != 0.0f || pres != 0.0f)
    for (const auto& [id, count] : output_counts_)
      touch(id, "generated") -= static_cast<float>(count) * freq + pres;
}

int32_t Sampler::draw(const float* logits, int32_t vocab_size, float max_logit) {
  Filter f{max_logit, 1.0f / params_.temperature};
  const bool use_top_k = params_.top_k > 0 && params_.top_k < vocab_size;
  const float top_p = params_.top_p;
  const double u = uniform();
  std::vector<Cand> cands;
  std::vector<double> w;
  if (use_top_k) {
    select_top(logits, vocab_size, params_.top_k, &cands);
    cand_weights(cands, f, &w);
    double z = 0.0;
    for (double v : w) z += v;
    return draw_from(cands, w, cut(w, z, top_p, params_.min_p).n_keep, u);
  }
  if (top_p < 1.0f) {
    // A peaked distribution has its nucleus among the few best: one cheap selection. Else
    // the histogram finds the cutoff in O(vocab) and the draw below filters by it.
    select_top(logits, vocab_size, kFirstNucleusGuess, &cands);
    cand_weights(cands, f, &w);
    const Cut c = cut(w, weight_sum(logits, vocab_size, f, nullptr), top_p, params_.min_p);
    if (c.decided || cands.size() == static_cast<size_t>(vocab_size))
      return draw_from(cands, w, c.n_keep, u);
    nucleus_cutoff(logits, vocab_size, top_p, &f);
  }
  f.floor = params_.min_p;
  return draw_filtered(logits, vocab_size, f, u);
}

void sampling_probs(const float* logits, int32_t vocab_size, const SamplingParams& p,
                    std::vector<float>* probs) {
  JINX_CHECK(logits != nullptr && vocab_size > 0, "sampling_probs: no logits");
  const MaxScan m = scan_max(logits, vocab_size);
  if (m.has_nan) fail("sampler: logits contain NaN");
  if (!std::isfinite(m.max)) fail("sampler: max logit is ", m.max);
  probs->assign(static_cast<size_t>(vocab_size), 0.0f);
  if (p.temperature < kGreedyTemperature) {  // greedy: all mass on the first best
    (*probs)[static_cast<size_t>(first_index_of(logits, vocab_size, m.max))] = 1.0f;
    return;
  }
  const Filter f{m.max, 1.0f / p.temperature};
  std::vector<Cand> c;
  const bool use_top_k = p.top_k > 0 && p.top_k < vocab_size;
  if (use_top_k || p.top_p < 1.0f) {
    double z_all = -1.0;  // top-p alone: the whole vocabulary's weight
    // The kept tokens are a prefix of the vocabulary in better() order: top-k of it, then
    // top-p of those (the crossing token kept), cut at the first below min-p.
    if (use_top_k) {
      select_top(logits, vocab_size, p.top_k, &c);
    } else {
      // Top-p alone: only tokens of weight >= 1e-6 (the best has 1) need sorting when those
      // below hold less than the 1 - top_p share the nucleus leaves out (exact: they are the
      // sorted order's tail, past where the nucleus ends); else all of them.
      constexpr float kFloor = 1e-6f;
      std::vector<float> w(static_cast<size_t>(vocab_size));
      for (int32_t b = 0; b < vocab_size; b += kBlock)
        block_weights(logits, b, std::min(vocab_size, b + kBlock), f, w.data() + b);
      double z = 0.0, below = 0.0;
      for (float v : w) {
        z += v;
        if (v < kFloor) below += v;
      }
      z_all = z;
      const bool cut_tail = below < (1.0 - static_cast<double>(p.top_p)) * z * 0.999;
      for (int32_t i = 0; i < vocab_size; ++i)
        if (logits[i] > -kInf && (!cut_tail || w[static_cast<size_t>(i)] >= kFloor))
          c.push_back({logits[i], i});
      std::sort(c.begin(), c.end(), better);
    }
    std::vector<double> w;
    cand_weights(c, f, &w);
    double z = 0.0;
    for (double v : w) z += v;
    if (z_all >= 0.0) z = z_all;  // the tail left unsorted still counts in top-p's total
    const size_t n_keep = cut(w, z, p.top_p, p.min_p).n_keep;
    double total = 0.0;
    for (size_t i = 0; i < n_keep; ++i) total += w[i];
    for (size_t i = 0; i < n_keep; ++i)
      (*probs)[static_cast<size_t>(c[i].id)] = static_cast<float>(w[i] / total);
    return;
  }
  Filter kept = f;
  kept.floor = p.min_p;
  std::vector<float> w(static_cast<size_t>(vocab_size));
  double total = 0.0;
  for (int32_t b = 0; b < vocab_size; b += kBlock) {
    const int32_t end = std::min(vocab_size, b + kBlock);
    block_weights(logits, b, end, kept, w.data() + b);
  }
  for (float v : w) total += v;
  for (int32_t i = 0; i < vocab_size; ++i)
    (*probs)[static_cast<size_t>(i)] = static_cast<float>(w[static_cast<size_t>(i)] / total);
}

void Sampler::probs(float* logits, int32_t vocab_size, std::vector<float>* out) {
  JINX_CHECK(logits != nullptr && vocab_size > 0, "sampler: no logits");
  std::vector<Saved> saved;
  apply_bias_and_penalties(logits, vocab_size, &saved);
  sampling_probs(logits, vocab_size, params_, out);
}

PromptLogprob logprob_of(const float* logits, int32_t vocab_size, int32_t token, int n_top) {
  JINX_CHECK(logits != nullptr && vocab_size > 0 && token >= 0 && token < vocab_size,
             "logprob_of: bad arguments");
  const MaxScan raw = scan_max(logits, vocab_size);
  if (raw.has_nan) fail("sampler: logits contain NaN");
  if (!std::isfinite(raw.max)) fail("sampler: max logit is ", raw.max);
  const double lse = raw.max + std::log(weight_sum(logits, vocab_size, Filter{raw.max, 1.0f}, nullptr));
  PromptLogprob r;
  r.token = token;
  r.logprob = static_cast<float>(logits[token] - lse);
  const float mine = logits[token];
  int32_t higher = 0;
  for (int32_t i = 0; i < vocab_size; ++i) higher += logits[i] > mine;
  r.rank = higher + 1;
  if (n_top > 0) {
    std::vector<Cand> top;
    select_top(logits, vocab_size, n_top, &top);
    for (const Cand& c : top) r.top.push_back({c.id, static_cast<float>(c.logit - lse)});
  }
  return r;
}

SampleResult Sampler::sample(float* logits, int32_t vocab_size) {
  JINX_CHECK(logits != nullptr && vocab_size > 0, "sampler: no logits");
  const MaxScan raw = scan_max(logits, vocab_size);
  if (raw.has_nan) fail("sampler: logits contain NaN");
  if (!std::isfinite(raw.max)) fail("sampler: max logit is ", raw.max);
  SampleResult result{};
  result.logprob = std::numeric_limits<float>::quiet_NaN();
  double raw_lse = 0.0;
  if (params_.logprobs >= 0) {  // one exp pass over the vocabulary, only when asked for
    raw_lse = raw.max + std::log(weight_sum(logits, vocab_size, Filter{raw.max, 1.0f}, nullptr));
    std::vector<Cand> top;
    if (params_.logprobs > 0) select_top(logits, vocab_size, params_.logprobs, &top);
    for (const Cand& c : top) result.top.push_back({c.id, static_cast<float>(c.logit - raw_lse)});
  }
  std::vector<Saved> saved;
  apply_bias_and_penalties(logits, vocab_size, &saved);
  float max_logit = raw.max;
  if (!saved.empty()) {
    const MaxScan m = scan_max(logits, vocab_size);
    if (m.has_nan || !std::isfinite(m.max))
      fail("sampler: logits after bias and penalties are not finite (max ", m.max, ")");
    max_logit = m.max;
  }
  const bool greedy = params_.temperature < kGreedyTemperature;
  result.token =
      greedy ? first_index_of(logits, vocab_size, max_logit) : draw(logits, vocab_size, max_logit);
  if (params_.logprobs < 0) return result;
  float raw_logit = logits[result.token];
  for (const Saved& s : saved) {
    if (s.id == result.token) {
      raw_logit = s.raw;  // the first save of an id is its value before any change
      break;
    }
  }
  result.logprob = static_cast<float>(raw_logit - raw_lse);
  return result;
}

}  // namespace jinx
