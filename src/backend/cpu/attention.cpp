// Paged attention driver: checks the batch, plans work items, runs the ISA's tile step over each
// item's KV range and merges the items that were split over KV ranges.
#include "backend/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "backend/cpu/attention_tile.h"
#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "core/half.h"

namespace jinx::cpu {
namespace {

using detail::AttendTileFn;
using detail::AttnTile;
using detail::kAttnTileKv;

// Items are split over KV ranges at fixed positions (multiples of kSplitKv), whatever the batch
// and the thread count: a query row's KV is always cut at the same places and merged in the same
// order, so its output is bit-identical alone or batched (batch invariance; splitting by load,
// as before, cut a long sequence decoded alone but not in a busy batch). A part past a row's
// causal limit leaves it untouched (the merge skips it), so rows of one tile agree with the same
// rows in another tiling.
constexpr int64_t kSplitKv = 512;
static_assert(kSplitKv % kAttnTileKv == 0);

void check_kv(const PagedKv& kv) {
  JINX_CHECK(is_kv_dtype(kv.dtype), "paged kv: dtype ", name(kv.dtype),
             " is not F32, F16, BF16, I8 or F8_E4M3");
  JINX_CHECK(kv.k != nullptr && kv.v != nullptr, "paged kv: null cache");
  JINX_CHECK(kv.n_blocks > 0 && kv.block_size > 0 && kv.n_kv_heads > 0 && kv.head_dim > 0,
             "paged kv: bad sizes ", kv.n_blocks, "x", kv.block_size, "x", kv.n_kv_heads, "x",
             kv.head_dim);
  int64_t n = 0;
  const bool overflow = __builtin_mul_overflow(kv.n_blocks, kv.block_size, &n) ||
                        __builtin_mul_overflow(n, kv.n_kv_heads, &n) ||
                        __builtin_mul_overflow(n, kv.head_dim, &n) ||
                        __builtin_mul_overflow(n, int64_t{4}, &n);
  JINX_CHECK(!overflow, "paged kv: cache size overflows");
}

void check_batch(const PagedKv& kv, const AttnBatch& b, int64_t n_heads) {
  check_kv(kv);
  JINX_CHECK(n_heads > 0 && n_heads % kv.n_kv_heads == 0, "attention: ", n_heads,
             " query heads are not a multiple of ", kv.n_kv_heads, " kv heads");
  JINX_CHECK(b.n_seqs >= 0, "attention: negative n_seqs");
  if (b.n_seqs == 0) return;
  JINX_CHECK(b.query_start && b.context_len && b.block_tables, "attention: null batch array");
  JINX_CHECK(b.max_blocks_per_seq > 0, "attention: max_blocks_per_seq must be positive");
  JINX_CHECK(b.query_start[0] >= 0, "attention: negative query_start");
  for (int64_t s = 0; s < b.n_seqs; ++s) {
    const int64_t n_new = int64_t{b.query_start[s + 1]} - b.query_start[s];
    const int64_t ctx = b.context_len[s];
    JINX_CHECK(n_new >= 0, "attention: query_start decreases at sequence ", s);
    JINX_CHECK(ctx >= n_new, "attention: sequence ", s, " has context ", ctx, " < ", n_new,
               " new tokens");
    JINX_CHECK(ctx <= b.max_blocks_per_seq * kv.block_size, "attention: sequence ", s, " context ",
               ctx, " exceeds its block table");
    const int32_t* bt = b.block_tables + s * b.max_blocks_per_seq;
    for (int64_t i = 0; i < (ctx + kv.block_size - 1) / kv.block_size; ++i)
      JINX_CHECK(bt[i] >= 0 && bt[i] < kv.n_blocks, "attention: sequence ", s, " block ", i, " is ",
                 bt[i], ", not in [0, ", kv.n_blocks, ")");
  }
}

AttendTileFn pick_tile_fn(int64_t head_dim) {
  const Isa isa = active_isa();
  AttendTileFn fn = nullptr;
  if (isa == Isa::kAvx512) fn = detail::attend_tile_avx512(head_dim);
  if (!fn && isa != Isa::kScalar) fn = detail::attend_tile_avx2(head_dim);
  return fn ? fn : detail::attend_tile_scalar(head_dim);
}

// Query tokens [tok0, tok0 + n_tok) of sequence seq against kv head kvh, over KV positions
// [kv0, kv1). part >= 0: the item is one of several over the KV range; its state goes to
// partial slot `part` instead of the output.
struct Item {
  int64_t seq, kvh, tok0, n_tok, kv0, kv1, part, cost;
};

// The parts of one split (sequence, kv head, query tile), merged into the output at the end.
struct Split {
  int64_t seq, kvh, tok0, n_tok, first_part, n_parts;
};

struct Plan {
  int64_t tile_tokens = 1, rows_cap = 1, group = 1, head_dim = 0;
  std::vector<Item> items;
  std::vector<Split> splits;
  int64_t n_parts = 0;
  size_t part_floats() const { return static_cast<size_t>(rows_cap * (head_dim + 2)); }
};

// Splits the items whose KV range reaches past kSplitKv at every multiple of it.
void split_items(Plan& p) {
  std::vector<Item> whole = std::move(p.items);
  p.items.clear();
  for (const Item& it : whole) {
    const int64_t first = it.kv0 / kSplitKv;  // (a sliding window starts past 0)
    const int64_t parts = (it.kv1 + kSplitKv - 1) / kSplitKv - first;
    if (parts <= 1) {
      p.items.push_back(it);
      continue;
    }
    p.splits.push_back({it.seq, it.kvh, it.tok0, it.n_tok, p.n_parts, parts});
    for (int64_t i = first; i < first + parts; ++i) {
      Item part = it;
      part.kv0 = std::max(it.kv0, i * kSplitKv);
      part.kv1 = std::min(it.kv1, (i + 1) * kSplitKv);
      part.part = p.n_parts++;
      part.cost = it.n_tok * p.group * (part.kv1 - part.kv0);
      p.items.push_back(part);
    }
  }
}

// window > 0: each query sees its last `window` positions only. A query past the first window
// gets an item of its own (the rows of an item share one KV range), starting at its window;
// those before it are tiled as without a window (their range starts at 0 all the same, so
// their tiles, and sums, are the same either way).
Plan make_plan(const PagedKv& kv, const AttnBatch& b, int64_t n_heads, int64_t window) {
  Plan p;
  p.group = n_heads / kv.n_kv_heads;
  p.head_dim = kv.head_dim;
  p.tile_tokens = std::max<int64_t>(1, detail::kAttnTileRows / p.group);
  p.rows_cap = p.tile_tokens * p.group;
  for (int64_t s = 0; s < b.n_seqs; ++s) {
    const int64_t n_new = int64_t{b.query_start[s + 1]} - b.query_start[s];
    const int64_t past = b.context_len[s] - n_new;
    // Tokens t < unbounded see from position 0.
    const int64_t unbounded = window > 0 ? std::max<int64_t>(0, window - past) : n_new;
    for (int64_t t0 = 0, n_tok = 0; t0 < n_new; t0 += n_tok) {
      n_tok = t0 < unbounded ? std::min({p.tile_tokens, n_new - t0, unbounded - t0}) : 1;
      const int64_t kv_end = past + t0 + n_tok;
      const int64_t kv_begin = t0 < unbounded ? 0 : kv_end - window;
      for (int64_t h = 0; h < kv.n_kv_heads; ++h) {
        p.items.push_back(
            {s, h, t0, n_tok, kv_begin, kv_end, -1, n_tok * p.group * (kv_end - kv_begin)});
      }
    }
  }
  split_items(p);
  // Longest first, so that the short items fill in the gaps at the end.
  std::stable_sort(p.items.begin(), p.items.end(),
                   [](const Item& a, const Item& c) { return a.cost > c.cost; });
  return p;
}

// Per-thread buffers of one item, grown on demand and kept between calls.
struct Scratch {
  std::vector<float> q, o, m, l, s, kv;
  std::vector<int64_t> limit, n_visible;
  void reserve(int64_t rows, int64_t head_dim) {
    const auto grow = [](auto& v, int64_t n) {
      if (static_cast<int64_t>(v.size()) < n) v.resize(n);
    };
    grow(q, rows * head_dim);
    grow(o, rows * head_dim);
    grow(m, rows);
    grow(l, rows);
    grow(s, rows * kAttnTileKv);
    grow(kv, 2 * kAttnTileKv * head_dim);
    grow(limit, rows);
    grow(n_visible, rows);
  }
};

Scratch& thread_scratch() {
  thread_local Scratch s;
  return s;
}

struct Context {
  const float* q;
  float* out;
  int64_t n_heads;
  float scale;
  const PagedKv* kv;
  const AttnBatch* b;
  const Plan* plan;
  AttendTileFn tile_fn;
  float* partials;  // [n_parts, part_floats]: m [rows_cap], l [rows_cap], o [rows_cap, head_dim]
  const float* sinks;  // [n_heads] or null
};

// The softmax denominator of a row whose scores have maximum m and sum of e^(s - m) l, with
// query head h's sink (if any) counted: l + e^(sink - m).
float denominator(const Context& c, int64_t h, float m, float l) {
  if (c.sinks == nullptr) return l;
  if (m == -std::numeric_limits<float>::infinity()) return 1.0f;  // nothing seen: output 0
  return l + std::exp(c.sinks[h] - m);
}

// Loads the item's scaled query rows (row r = token i * group + head g) and their causal limits.
void load_queries(const Context& c, const Item& it, Scratch& sc) {
  const int64_t d_n = c.kv->head_dim, g_n = c.plan->group;
  const int64_t q0 = c.b->query_start[it.seq];
  const int64_t past = c.b->context_len[it.seq] - (c.b->query_start[it.seq + 1] - q0);
  for (int64_t i = 0; i < it.n_tok; ++i) {
    for (int64_t g = 0; g < g_n; ++g) {
      const int64_t r = i * g_n + g;
      const float* src = c.q + ((q0 + it.tok0 + i) * c.n_heads + it.kvh * g_n + g) * d_n;
      for (int64_t d = 0; d < d_n; ++d) sc.q[r * d_n + d] = src[d] * c.scale;
      sc.limit[r] = past + it.tok0 + i + 1;
    }
  }
  const int64_t rows = it.n_tok * g_n;
  std::fill_n(sc.o.begin(), rows * d_n, 0.0f);
  std::fill_n(sc.m.begin(), rows, -std::numeric_limits<float>::infinity());
  std::fill_n(sc.l.begin(), rows, 0.0f);
}

// Row pointers of KV positions [j0, j0 + n) of the item's sequence and kv head.
void gather_rows(const Context& c, const Item& it, int64_t j0, int64_t n, const void** k,
                 const void** v) {
  const PagedKv& kv = *c.kv;
  const int32_t* bt = c.b->block_tables + it.seq * c.b->max_blocks_per_seq;
  const size_t row_bytes = kv_row_bytes(kv.dtype, kv.head_dim);
  int64_t blk = j0 / kv.block_size, off = j0 % kv.block_size;
  for (int64_t j = 0; j < n; ++j) {
    const size_t row =
        static_cast<size_t>((bt[blk] * kv.block_size + off) * kv.n_kv_heads + it.kvh);
    k[j] = static_cast<const char*>(kv.k) + row * row_bytes;
    v[j] = static_cast<const char*>(kv.v) + row * row_bytes;
    if (++off == kv.block_size) {
      off = 0;
      ++blk;
    }
  }
}

void store_result(const Context& c, const Item& it, const Scratch& sc) {
  const int64_t d_n = c.kv->head_dim, g_n = c.plan->group, rows = it.n_tok * g_n;
  if (it.part >= 0) {
    float* dst = c.partials + it.part * c.plan->part_floats();
    const int64_t cap = c.plan->rows_cap;
    std::copy_n(sc.m.begin(), rows, dst);
    std::copy_n(sc.l.begin(), rows, dst + cap);
    std::copy_n(sc.o.begin(), rows * d_n, dst + 2 * cap);
    return;
  }
  const int64_t q0 = c.b->query_start[it.seq];
  for (int64_t r = 0; r < rows; ++r) {
    float* dst = c.out + ((q0 + it.tok0 + r / g_n) * c.n_heads + it.kvh * g_n + r % g_n) * d_n;
    const float l = denominator(c, it.kvh * g_n + r % g_n, sc.m[r], sc.l[r]);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    for (int64_t d = 0; d < d_n; ++d) dst[d] = sc.o[r * d_n + d] * inv;
  }
}

// One work item: load its queries, step through its KV range a tile at a time, store the result
// (or its partial state).
void run_item(const Context& c, const Item& it) {
  Scratch& sc = thread_scratch();
  const int64_t rows = it.n_tok * c.plan->group, d_n = c.kv->head_dim;
  sc.reserve(c.plan->rows_cap, d_n);
  load_queries(c, it, sc);
  const void* k[kAttnTileKv];
  const void* v[kAttnTileKv];
  AttnTile t{sc.q.data(), sc.o.data(), sc.m.data(),  sc.l.data(), sc.s.data(), sc.n_visible.data(),
             k,           v,           sc.kv.data(), rows,        0,           d_n,
             c.kv->dtype};
  const int64_t kv_end = std::min(it.kv1, sc.limit[rows - 1]);
  const size_t row_bytes = kv_row_bytes(c.kv->dtype, d_n);
  const void* nk[kAttnTileKv];
  const void* nv[kAttnTileKv];
  for (int64_t j0 = it.kv0; j0 < kv_end; j0 += kAttnTileKv) {
    t.n_kv = std::min(kAttnTileKv, kv_end - j0);
    gather_rows(c, it, j0, t.n_kv, k, v);
    // The next tile's K/V rows into the cache while this one computes: the blocks sit anywhere
    // in the pool, so the hardware prefetcher cannot run ahead of a block boundary.
    if (j0 + kAttnTileKv < kv_end) {
      const int64_t n_next = std::min(kAttnTileKv, kv_end - j0 - kAttnTileKv);
      gather_rows(c, it, j0 + kAttnTileKv, n_next, nk, nv);
      for (int64_t j = 0; j < n_next; ++j)
        for (size_t off = 0; off < row_bytes; off += 64) {
          __builtin_prefetch(static_cast<const char*>(nk[j]) + off);
          __builtin_prefetch(static_cast<const char*>(nv[j]) + off);
        }
    }
    for (int64_t r = 0; r < rows; ++r)
      sc.n_visible[r] = std::clamp<int64_t>(sc.limit[r] - j0, 0, t.n_kv);
    c.tile_fn(t);
  }
  store_result(c, it, sc);
}

// Combines the partial states of a split: o = sum_p o_p e^(m_p - M) / sum_p l_p e^(m_p - M).
void merge_split(const Context& c, const Split& sp) {
  const int64_t d_n = c.kv->head_dim, g_n = c.plan->group, cap = c.plan->rows_cap;
  const size_t stride = c.plan->part_floats();
  const float* base = c.partials + sp.first_part * stride;
  const int64_t q0 = c.b->query_start[sp.seq];
  for (int64_t r = 0; r < sp.n_tok * g_n; ++r) {
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t p = 0; p < sp.n_parts; ++p) mx = std::max(mx, base[p * stride + r]);
    float* dst = c.out + ((q0 + sp.tok0 + r / g_n) * c.n_heads + sp.kvh * g_n + r % g_n) * d_n;
    std::fill_n(dst, d_n, 0.0f);
    float sum = 0.0f;
    for (int64_t p = 0; p < sp.n_parts; ++p) {
      const float* part = base + p * stride;
      if (part[r] == -std::numeric_limits<float>::infinity()) continue;  // saw no position
      const float w = std::exp(part[r] - mx);
      sum += part[cap + r] * w;
      const float* o = part + 2 * cap + r * d_n;
      for (int64_t d = 0; d < d_n; ++d) dst[d] += o[d] * w;
    }
    sum = denominator(c, sp.kvh * g_n + r % g_n, mx, sum);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int64_t d = 0; d < d_n; ++d) dst[d] *= inv;
  }
}

void store_f16(const float* x, uint16_t* y, int64_t n, Isa isa) {
  if (isa == Isa::kAvx512) return detail::f32_to_f16_row_avx512(x, y, n);
  if (isa == Isa::kAvx2) return detail::f32_to_f16_row_avx2(x, y, n);
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_f16(x[i]);
}

// One quantized row: codes, then the fp32 scale (amax / qmax; 0 for an all-zero row).
void store_quantized(const float* x, uint8_t* dst, int64_t n, DType t) {
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  const bool i8 = t == DType::I8;
  const float scale = amax / (i8 ? 127.0f : 448.0f);
  const float inv = scale > 0.0f ? 1.0f / scale : 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    const float y = x[i] * inv;
    dst[i] =
        i8 ? static_cast<uint8_t>(static_cast<int8_t>(std::clamp(std::round(y), -127.0f, 127.0f)))
           : f32_to_fp8_e4m3(y);
  }
  std::memcpy(dst + n, &scale, sizeof scale);
}

void store_row(const float* x, void* dst, int64_t n, DType t, Isa isa) {
  if (t == DType::I8 || t == DType::F8_E4M3) {
    store_quantized(x, static_cast<uint8_t*>(dst), n, t);
  } else if (t == DType::F32) {
    std::memcpy(dst, x, n * sizeof(float));
  } else if (t == DType::F16) {
    store_f16(x, static_cast<uint16_t*>(dst), n, isa);
  } else {
    uint16_t* y = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
  }
}

}  // namespace

bool is_kv_dtype(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::I8 ||
         t == DType::F8_E4M3;
}

size_t kv_row_bytes(DType t, int64_t head_dim) {
  const auto n = static_cast<size_t>(head_dim);
  switch (t) {
    case DType::F32:
      return 4 * n;
    case DType::F16:
    case DType::BF16:
      return 2 * n;
    default:
      return n + sizeof(float);  // I8 / F8_E4M3 codes + the row's scale
  }
}

void kv_store(PagedKv& kv, const float* k, const float* v, const int64_t* slot_mapping,
              int64_t n_tokens, ThreadPool& pool) {
  check_kv(kv);
  JINX_CHECK(n_tokens >= 0, "kv_store: negative n_tokens");
  if (n_tokens == 0) return;
  JINX_CHECK(k && v && slot_mapping, "kv_store: null input");
  const int64_t n_slots = kv.n_blocks * kv.block_size;
  for (int64_t t = 0; t < n_tokens; ++t)
    JINX_CHECK(slot_mapping[t] >= -1 && slot_mapping[t] < n_slots, "kv_store: token ", t, " slot ",
               slot_mapping[t], " not in [-1, ", n_slots, ")");
  const int64_t row = kv.n_kv_heads * kv.head_dim, d_n = kv.head_dim;
  const size_t head_bytes = kv_row_bytes(kv.dtype, d_n);
  const Isa isa = active_isa();
  const int64_t grain = std::max<int64_t>(1, 16384 / row);
  pool.parallel_for(n_tokens, grain, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      if (slot_mapping[t] < 0) continue;
      const size_t off = static_cast<size_t>(slot_mapping[t]) * kv.n_kv_heads * head_bytes;
      // Row by row (head by head): a quantized row carries its own scale.
      for (int64_t h = 0; h < kv.n_kv_heads; ++h) {
        const size_t o = off + h * head_bytes;
        store_row(k + t * row + h * d_n, static_cast<char*>(kv.k) + o, d_n, kv.dtype, isa);
        store_row(v + t * row + h * d_n, static_cast<char*>(kv.v) + o, d_n, kv.dtype, isa);
      }
    }
  });
}

void paged_attention(const float* q, float* out, int64_t n_heads, const PagedKv& kv,
                     const AttnBatch& b, float scale, ThreadPool& pool, int64_t window,
                     const float* sinks) {
  JINX_CHECK(window >= 0, "attention: negative window");
  check_batch(kv, b, n_heads);
  JINX_CHECK(std::isfinite(scale), "attention: scale is not finite");
  if (b.n_seqs == 0 || b.query_start[b.n_seqs] == b.query_start[0]) return;
  JINX_CHECK(q && out, "attention: null q or out");
  if (scale <= 0.0f) scale = 1.0f / std::sqrt(static_cast<float>(kv.head_dim));
  const Plan plan = make_plan(kv, b, n_heads, window);
  // Partial states of split items: every slot is written before the merge reads it, so the
  // buffer is kept between calls (no zeroing, no fresh pages each layer).
  thread_local std::vector<float> partials;
  const size_t need = static_cast<size_t>(plan.n_parts) * plan.part_floats();
  if (partials.size() < need) partials.resize(need);
  const Context c{q,     out,   n_heads, scale, &kv, &b, &plan, pick_tile_fn(kv.head_dim),
                  partials.data(), sinks};
  pool.parallel_for(static_cast<int64_t>(plan.items.size()), 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) run_item(c, plan.items[i]);
  });
  pool.parallel_for(static_cast<int64_t>(plan.splits.size()), 1, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) merge_split(c, plan.splits[i]);
  });
}

}  // namespace jinx::cpu
