// Temperature / top-k / top-p / min-p sampling of one row of logits by one thread block, with
// no sort. Written once for two executors: backend/cuda/sample.cu runs it on the GPU (one block
// per row, so only token ids leave the device), and the host runs the very same code thread by
// thread (HostBlock below), which is how the logic is tested on a machine without a GPU.
//
// Semantics (those of jinx::Sampler, engine/sampler.h, steps 4-7): the tokens are ordered by
// logit, highest first, ties to the lowest id. Kept: the first top_k of that order (top_k <= 0
// or >= n: all), then the shortest prefix of those whose weight reaches top_p of their total
// (top_p >= 1: all), then of those the tokens whose weight is >= min_p times the largest.
// Weights are exp((logit - max) / temperature). One token is drawn from the kept ones in
// proportion to their weights, by inverse CDF over ids in increasing order at the host-drawn
// uniform u. (The CPU Sampler draws from the same distribution but walks candidates in its own
// order, so a seed gives different tokens on the two devices.)
//
// How, without sorting: each token's place in the order is one 64-bit number, ord = (order-
// preserving bits of the logit) << 32 | (2^32 - 1 - id), unique per token and larger = earlier.
// A kept prefix is then "ord >= cut", and the cut is found by a radix descent over ord, 8 bits
// per pass: a 256-bin histogram of the tokens still in play (counts for top-k, weights for top-p),
// walked from the top bin down to the bin where the count or weight runs out; usually 3-4 passes.
// Weights are summed as integers (w * 2^40, rounded), so every sum is exact and the same in any
// order: a row's token does not depend on thread timing, block size or batch. Weights below
// 2^-41 of the largest count as zero (they can then never be drawn; at most n * 2^-41 of mass).
//
// Rules for the block-level code (sample_row): per-thread work happens only inside
// blk.phase(f), which runs f(t) for every thread t and then synchronizes; shared state written in
// a phase is read outside phases only through blk.uniform(v), which synchronizes again after the
// read, so no thread can overwrite a value another thread has yet to read.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define JINX_HD __host__ __device__
#else
#define JINX_HD
#endif

namespace jinx::sampling {

// What the caller needs of one output row of a step (ForwardBatch::pick).
enum Pick : uint8_t {
  kPickLogits = 0,  // the logits, to sample on the host
  kPickArgmax = 1,  // only the argmax (greedy with nothing that needs the logits)
  kPickSample = 2,  // only a token drawn where the logits are, with RowSampling
};

struct RowSampling {
  float temperature = 1.0f;  // > 0 (greedy rows are kPickArgmax)
  int32_t top_k = 0;         // <= 0 or >= n: off
  float top_p = 1.0f;        // (0, 1]; 1: off
  float min_p = 0.0f;        // [0, 1]
  double u = 0.0;            // uniform in [0, 1), from the row's own host random generator
};

constexpr int kThreads = 512;
constexpr int kBins = 256;
constexpr double kFixedOne = 1099511627776.0;  // 2^40: a weight of 1 as an integer

using u64 = unsigned long long;

struct Shared {
  u64 mass[kBins];
  unsigned int count[kBins];
  u64 a[kThreads];  // per-thread partials; reductions and scans
  u64 b[kThreads];
  u64 prefix, need, cut;  // radix descent state (written by thread 0)
  int done;
};

JINX_HD inline uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
#endif
}

JINX_HD inline float bits_float(uint32_t b) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(b);
#else
  float x;
  std::memcpy(&x, &b, 4);
  return x;
#endif
}

// Monotone: a < b (as floats, no NaN) iff key(a) < key(b).
JINX_HD inline uint32_t float_key(float x) {
  const uint32_t b = float_bits(x);
  return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

JINX_HD inline float key_float(uint32_t k) {
  return bits_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

JINX_HD inline u64 token_ord(float logit, int32_t id) {
  return (static_cast<u64>(float_key(logit)) << 32) | (0xffffffffu - static_cast<uint32_t>(id));
}

JINX_HD inline float exp_f(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return std::exp(x);
#endif
}

JINX_HD inline void add_to(u64* p, u64 v) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, v);
#else
  *p += v;
#endif
}

JINX_HD inline void add_to(unsigned int* p, unsigned int v) {
#if defined(__CUDA_ARCH__)
  atomicAdd(p, v);
#else
  *p += v;
#endif
}

// The weight of a logit as an integer: exp((x - max) * inv_t) * 2^40, rounded.
struct Weigher {
  float max, inv_t, min_p;
  JINX_HD float weight(float x) const { return exp_f((x - max) * inv_t); }
  JINX_HD u64 fixed(float x) const {
    return static_cast<u64>(static_cast<double>(weight(x)) * kFixedOne + 0.5);
  }
};

// Runs block-level code on the GPU: every thread of the block executes it.
struct DeviceBlock {
  template <class F>
  JINX_HD void phase(F&& f) {
#if defined(__CUDA_ARCH__)
    f(static_cast<int>(threadIdx.x));
    __syncthreads();
#else
    (void)f;
#endif
  }
  template <class T>
  JINX_HD T uniform(const T& v) {
    T r = v;
#if defined(__CUDA_ARCH__)
    __syncthreads();
#endif
    return r;
  }
};

// Runs block-level code on the host: each phase as a loop over the threads.
struct HostBlock {
  template <class F>
  void phase(F&& f) {
    for (int t = 0; t < kThreads; ++t) f(t);
  }
  template <class T>
  T uniform(const T& v) {
    return v;
  }
};

// In-place tree reduction of s.a[0, kThreads) with op; the result in s.a[0].
template <class Block, class Op>
JINX_HD u64 block_reduce(Block& blk, Shared& s, Op op) {
  for (int half = kThreads / 2; half > 0; half /= 2)
    blk.phase([&](int t) {
      if (t < half) s.a[t] = op(s.a[t], s.a[t + half]);
    });
  return blk.uniform(s.a[0]);
}

// Inclusive prefix sums of s.a (Hillis-Steele, ping-pong with s.b); returns the array holding
// them (s.a or s.b).
template <class Block>
JINX_HD u64* block_scan(Block& blk, Shared& s) {
  u64* src = s.a;
  u64* dst = s.b;
  for (int off = 1; off < kThreads; off *= 2) {
    blk.phase([&](int t) { dst[t] = src[t] + (t >= off ? src[t - off] : 0); });
    u64* tmp = src;
    src = dst;
    dst = tmp;
  }
  return src;
}

// Radix descent over ord among the tokens with ord >= floor: the cut c >= floor such that the
// tokens with ord >= c are the shortest prefix holding `need` tokens (by_mass false) or `need`
// fixed-point weight (by_mass true). need >= 1. If the tokens in play hold less than need, all of
// them (c = floor).
template <class Block>
JINX_HD u64 radix_cut(Block& blk, Shared& s, const float* x, int32_t n, const Weigher& w,
                      bool by_mass, u64 need, u64 floor) {
  blk.phase([&](int t) {
    if (t == 0) {
      s.prefix = 0;
      s.need = need;
      s.done = 0;
      s.cut = floor;
    }
  });
  for (int pass = 0; pass < 8; ++pass) {
    const int shift = 56 - 8 * pass;
    const u64 mask = pass == 0 ? 0 : ~0ull << (64 - 8 * pass);
    const u64 prefix = blk.uniform(s.prefix);
    blk.phase([&](int t) {
      if (t < kBins) {
        s.count[t] = 0;
        s.mass[t] = 0;
      }
    });
    blk.phase([&](int t) {
      // Runs of tokens in one bin (common in the first passes, where most logits share their
      // top bits) are added once, not token by token.
      int bin = -1;
      unsigned int c = 0;
      u64 m = 0;
      for (int32_t i = t; i < n; i += kThreads) {
        const u64 o = token_ord(x[i], i);
        if (o < floor || (o & mask) != prefix) continue;
        const int d = static_cast<int>((o >> shift) & 0xff);
        if (d != bin) {
          if (bin >= 0) {
            add_to(&s.count[bin], c);
            if (by_mass) add_to(&s.mass[bin], m);
          }
          bin = d;
          c = 0;
          m = 0;
        }
        ++c;
        if (by_mass) m += w.fixed(x[i]);
      }
      if (bin >= 0) {
        add_to(&s.count[bin], c);
        if (by_mass) add_to(&s.mass[bin], m);
      }
    });
    blk.phase([&](int t) {
      if (t != 0) return;
      u64 left = s.need;
      for (int d = kBins - 1; d >= 0; --d) {
        const u64 v = by_mass ? s.mass[d] : s.count[d];
        if (s.count[d] == 0) continue;
        if (v < left) {
          left -= v;
          continue;
        }
        s.prefix |= static_cast<u64>(d) << shift;
        s.need = left;
        // The whole bin is needed (or holds one token): the cut is the bin's lowest ord.
        if (v == left || s.count[d] == 1 || pass == 7) {
          s.cut = s.prefix > floor ? s.prefix : floor;
          s.done = 1;
        }
        return;
      }
      s.done = 1;  // less than `need` in play: keep all of it (cut stays floor)
    });
    if (blk.uniform(s.done)) break;
  }
  return blk.uniform(s.cut);
}

// Draws the token of row x[0, n) into *out (-1 when the logits hold a NaN or their max is not
// finite: the host reports the error).
template <class Block>
JINX_HD void sample_row(Block& blk, Shared& s, const float* x, int32_t n, const RowSampling& p,
                        int32_t* out) {
  // The largest logit, and whether any is NaN (a NaN's key is never counted as the max).
  blk.phase([&](int t) {
    uint32_t mk = 0;
    u64 nan = 0;
    for (int32_t i = t; i < n; i += kThreads) {
      const float v = x[i];
      if (v != v) {
        nan = 1;
      } else {
        const uint32_t k = float_key(v);
        mk = k > mk ? k : mk;
      }
    }
    s.a[t] = (nan << 32) | mk;
  });
  const u64 r = block_reduce(blk, s, [](u64 a, u64 b) {
    const u64 nan = (a | b) & (1ull << 32);
    const uint32_t ka = static_cast<uint32_t>(a), kb = static_cast<uint32_t>(b);
    return nan | (ka > kb ? ka : kb);
  });
  const float max = key_float(static_cast<uint32_t>(r));
  if ((r >> 32) != 0 || !std::isfinite(max)) {
    blk.phase([&](int t) {
      if (t == 0) *out = -1;
    });
    return;
  }
  const Weigher w{max, 1.0f / p.temperature, p.min_p};
  u64 cut = 0;  // kept so far: ord >= cut
  if (p.top_k > 0 && p.top_k < n) cut = radix_cut(blk, s, x, n, w, false, p.top_k, cut);
  if (p.top_p < 1.0f) {
    blk.phase([&](int t) {
      u64 m = 0;
      for (int32_t i = t; i < n; i += kThreads)
        if (token_ord(x[i], i) >= cut) m += w.fixed(x[i]);
      s.a[t] = m;
    });
    const u64 total = block_reduce(blk, s, [](u64 a, u64 b) { return a + b; });
    u64 target = static_cast<u64>(std::ceil(static_cast<double>(p.top_p) * total));
    if (target < 1) target = 1;
    cut = radix_cut(blk, s, x, n, w, true, target, cut);
  }
  // The draw: thread t owns ids [t * chunk, (t + 1) * chunk); an exclusive scan of the kept
  // weights per chunk finds the one chunk where the cumulative weight passes u * total.
  const int32_t chunk = (n + kThreads - 1) / kThreads;
  auto kept = [&](int32_t i) {
    const float v = x[i];
    return token_ord(v, i) >= cut && w.weight(v) >= w.min_p;
  };
  blk.phase([&](int t) {
    u64 m = 0;
    const int32_t lo = t * chunk, hi = lo + chunk < n ? lo + chunk : n;
    for (int32_t i = lo; i < hi; ++i)
      if (kept(i)) m += w.fixed(x[i]);
    s.a[t] = m;
  });
  const u64* incl = block_scan(blk, s);
  const u64 total = blk.uniform(incl[kThreads - 1]);  // >= the max's 2^40: it is always kept
  u64 target = static_cast<u64>(p.u * static_cast<double>(total));
  if (target >= total) target = total - 1;
  blk.phase([&](int t) {
    const u64 lo_sum = t == 0 ? 0 : incl[t - 1];
    if (!(lo_sum <= target && target < incl[t])) return;
    u64 cum = lo_sum;
    const int32_t lo = t * chunk, hi = lo + chunk < n ? lo + chunk : n;
    for (int32_t i = lo; i < hi; ++i) {
      if (!kept(i)) continue;
      cum += w.fixed(x[i]);
      if (cum > target) {
        *out = i;
        return;
      }
    }
  });
}

}  // namespace jinx::sampling
