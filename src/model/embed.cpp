// Sentence embeddings from a decoder: the layers' forward pass over packed sequences, each
// attending causally within itself (as in generation, so a sequence's hidden states do not
// depend on what it is packed with), then pooling of the final-norm hidden states.
//
// No KV cache is kept: a sequence's keys and values are needed only during its own forward
// pass, so attention reads them straight from the layer's k / v rows.
#include <algorithm>
#include <climits>
#include <cmath>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "model/model.h"

namespace jinx {

namespace {

// Causal attention within each packed sequence. q: [n, n_heads, head_dim], k, v: [n, kv_dim]
// (RoPE applied), seq_start[t]: the first row of t's sequence. out: [n, n_heads, head_dim].
void packed_attention(const float* q, const float* k, const float* v,
                      const std::vector<int32_t>& seq_start, const ModelConfig& c, int64_t window,
                      const float* sinks, float* out, ThreadPool& pool) {
  const int64_t n = static_cast<int64_t>(seq_start.size());
  const int64_t hd = c.head_dim, group = c.n_heads / c.n_kv_heads, kv_dim = c.n_kv_heads * hd;
  const float scale = c.attn_scale();
  pool.parallel_for(n * c.n_heads, 1, [&](int64_t b, int64_t e) {
    std::vector<float> scores;
    for (int64_t job = b; job < e; ++job) {
      const int64_t t = job / c.n_heads, h = job % c.n_heads, kvh = h / group;
      int64_t p0 = seq_start[t];
      if (window > 0) p0 = std::max(p0, t + 1 - window);
      scores.resize(static_cast<size_t>(t + 1 - p0));
      const float* qv = q + (t * c.n_heads + h) * hd;
      for (int64_t p = p0; p <= t; ++p)
        scores[p - p0] = cpu::dot_f32(qv, k + p * kv_dim + kvh * hd, hd) * scale;
      if (sinks) {
        cpu::softmax_with_sink(scores.data(), t + 1 - p0, sinks[h]);
      } else {
        cpu::softmax(scores.data(), t + 1 - p0);
      }
      float* o = out + (t * c.n_heads + h) * hd;
      std::fill(o, o + hd, 0.0f);
      for (int64_t p = p0; p <= t; ++p) cpu::axpy_f32(scores[p - p0], v + p * kv_dim + kvh * hd, o, hd);
    }
  });
}

}  // namespace

void Model::embed(std::span<const std::vector<int32_t>> seqs, Pooling pooling, bool normalize,
                  float* out, ThreadPool& pool, int64_t max_batch_tokens) const {
  const ModelConfig& c = cfg_;
  const int64_t H = c.hidden_size;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (seqs[i].empty()) fail("input ", i, " to embed is empty");
    if (static_cast<int64_t>(seqs[i].size()) > INT32_MAX) fail("input ", i, " is too long");
  }
  size_t first = 0;
  while (first < seqs.size()) {
    // Pack sequences [first, last) into one forward pass.
    size_t last = first;
    int64_t n = 0;
    while (last < seqs.size() &&
           (last == first || n + static_cast<int64_t>(seqs[last].size()) <= max_batch_tokens))
      n += static_cast<int64_t>(seqs[last++].size());
    std::vector<int32_t> tokens, positions, seq_start, out_rows;
    tokens.reserve(n);
    for (size_t s = first; s < last; ++s) {
      const int32_t start = static_cast<int32_t>(tokens.size());
      const int32_t len = static_cast<int32_t>(seqs[s].size());
      tokens.insert(tokens.end(), seqs[s].begin(), seqs[s].end());
      for (int32_t p = 0; p < len; ++p) {
        positions.push_back(p);
        seq_start.push_back(start);
        const bool wanted = pooling == Pooling::kMean || (pooling == Pooling::kCls && p == 0) ||
                            (pooling == Pooling::kLast && p == len - 1);
        if (wanted) out_rows.push_back(start + p);
      }
    }
    auto attend = [&](int64_t li, const float* q, const float* k, const float* v, float* o) {
      packed_attention(q, k, v, seq_start, c, c.is_sliding_layer(li) ? c.sliding_window : 0,
                       sinks_of(li), o, pool);
    };
    std::vector<float> hidden(out_rows.size() * H);
    run(tokens, positions, attend, out_rows, nullptr, pool, hidden.data());
    // Pool: out_rows are in sequence order, one (cls, last) or len (mean) per sequence.
    size_t row = 0;
    for (size_t s = first; s < last; ++s) {
      const size_t rows = pooling == Pooling::kMean ? seqs[s].size() : 1;
      float* e = out + s * H;
      std::vector<double> acc(H, 0.0);
      for (size_t r = 0; r < rows; ++r, ++row)
        for (int64_t i = 0; i < H; ++i) acc[i] += hidden[row * H + i];
      double norm2 = 0.0;
      for (int64_t i = 0; i < H; ++i) {
        acc[i] /= static_cast<double>(rows);
        norm2 += acc[i] * acc[i];
      }
      const double inv = normalize && norm2 > 0.0 ? 1.0 / std::sqrt(norm2) : 1.0;
      for (int64_t i = 0; i < H; ++i) e[i] = static_cast<float>(acc[i] * inv);
    }
    first = last;
  }
}

}  // namespace jinx
