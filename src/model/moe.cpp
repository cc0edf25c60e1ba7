// Mixture-of-experts MLP layers (Qwen3-MoE, Qwen2-MoE, gpt-oss), as transformers computes them:
//
//   p = softmax(router x (+ router bias))      over all n_experts, fp32
//   top = the n_experts_per_tok largest p      (ties: the lower expert id)
//   w = p[top] (/ sum p[top] when norm_topk_prob)
//   y = sum over e in top, by ascending id, of w_e * down_e(silu(gate_e x) * up_e x)
//   [Qwen2-MoE] y += sigmoid(shared_gate x) * shared(x)
//   [gpt-oss] experts with biases (gate, up, down), and act(g, u) = (clamp(u, -L, L) + 1) *
//   min(g, L) * sigmoid(alpha min(g, L)) instead of silu(g) * u; its weights are the softmax
//   of the k picked router logits, which is p[top] / sum p[top] (norm_topk_prob)
//
// The batch is grouped by expert: each expert's rows are gathered and go through its matrices
// once for all its tokens (a prefill chunk reads an expert's weights once), every expert's
// gate and up products in one grouped matmul (cpu::matmul_grouped: one parallel_for) and every
// down product in another; the outputs are added into the tokens' rows expert by expert, in
// ascending id. Every kernel computes a row the same way whatever the other rows
// (backend/cpu), so a token's result does not depend on the batch, and its sum runs in the
// same order.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "model/model.h"

namespace jinx {

namespace {

Mlp load_mlp(const WeightStore& s, const std::string& prefix, int64_t width, int64_t hidden) {
  Mlp m;
  m.gate.w = s.matrix(prefix + "gate_proj", width, hidden);
  m.up.w = s.matrix(prefix + "up_proj", width, hidden);
  m.down.w = s.matrix(prefix + "down_proj", hidden, width);
  return m;
}

// The experts each token uses and their weights: [n, k] each.
void route(const LayerWeights& L, const ModelConfig& c, const float* h, int64_t n,
           std::vector<int32_t>* expert, std::vector<float>* weight, ThreadPool& pool) {
  const int64_t E = c.n_experts, k = c.n_experts_per_tok;
  std::vector<float> p(static_cast<size_t>(n * E));
  cpu::matmul(L.router.w, h, n, p.data(), E, pool);
  if (!L.router.bias.empty())
    for (int64_t t = 0; t < n; ++t)
      for (int64_t e = 0; e < E; ++e) p[t * E + e] += L.router.bias[e];
  expert->resize(static_cast<size_t>(n * k));
  weight->resize(static_cast<size_t>(n * k));
  std::vector<int32_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < n; ++t) {
    float* row = &p[t * E];
    cpu::softmax(row, E);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return row[a] > row[b] || (row[a] == row[b] && a < b);
    });
    float sum = 0.0f;
    for (int64_t j = 0; j < k; ++j) sum += row[order[j]];
    for (int64_t j = 0; j < k; ++j) {
      (*expert)[t * k + j] = order[j];
      (*weight)[t * k + j] = c.norm_topk_prob ? row[order[j]] / sum : row[order[j]];
    }
  }
}

// gpt-oss's clamped SwiGLU, in place into g: (clamp(u, -limit, limit) + 1) * x * sigmoid(alpha
// x) with x = min(g, limit).
void swiglu_oai(float* g, const float* u, int64_t n, float alpha, float limit) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = std::min(g[i], limit);
    const float y = std::clamp(u[i], -limit, limit);
    g[i] = x / (1.0f + std::exp(-alpha * x)) * (y + 1.0f);
  }
}

}  // namespace

void load_moe_mlp(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l) {
  const std::string p = "model.layers." + std::to_string(i) + ".mlp.";
  const int64_t h = c.hidden_size;
  const int64_t E = c.n_experts, ff = c.moe_intermediate_size;
  l->router.w = s.matrix(p + "gate", E, h);
  l->experts.reserve(static_cast<size_t>(E));
  // mlx-lm stacks the experts (SwitchGLU: mlp.switch_mlp.{gate,up,down}_proj, [E, rows, ...]).
  const bool switch_mlp = !s.is_gguf() && s.has(p + "switch_mlp.gate_proj.weight");
  for (int64_t e = 0; e < E; ++e) {
    if (switch_mlp) {
      const std::string sw = p + "switch_mlp.";
      Mlp m;
      m.gate.w = s.stacked_st_matrix(sw + "gate_proj", e, E, ff, h);
      m.up.w = s.stacked_st_matrix(sw + "up_proj", e, E, ff, h);
      m.down.w = s.stacked_st_matrix(sw + "down_proj", e, E, h, ff);
      l->experts.push_back(m);
      continue;
    }
    if (!s.is_gguf()) {
      l->experts.push_back(load_mlp(s, p + "experts." + std::to_string(e) + ".", ff, h));
      continue;
    }
    // GGUF stacks each kind of expert matrix in one 3-D tensor: views of expert e's rows.
    const std::string b = "blk." + std::to_string(i) + ".";
    Mlp m;
    m.gate.w = s.stacked_matrix(b + "ffn_gate_exps.weight", e, E, ff, h);
    m.up.w = s.stacked_matrix(b + "ffn_up_exps.weight", e, E, ff, h);
    m.down.w = s.stacked_matrix(b + "ffn_down_exps.weight", e, E, h, ff);
    l->experts.push_back(m);
  }
  if (c.shared_expert_intermediate_size > 0) {
    l->shared = load_mlp(s, p + "shared_expert.", c.shared_expert_intermediate_size, h);
    l->shared_gate.w = s.matrix(p + "shared_expert_gate", 1, h);
  }
}

void moe_mlp(const LayerWeights& L, const ModelConfig& c, const float* h, int64_t n, float* out,
             ThreadPool& pool) {
  const int64_t E = c.n_experts, k = c.n_experts_per_tok, H = c.hidden_size;
  const int64_t ff = c.moe_intermediate_size;
  JINX_CHECK(static_cast<int64_t>(L.experts.size()) == E, "MoE layer without its experts");
  std::vector<int32_t> expert;
  std::vector<float> weight;
  route(L, c, h, n, &expert, &weight, pool);
  // Tokens of each expert, in token order: (token, weight).
  std::vector<std::vector<std::pair<int32_t, float>>> rows(static_cast<size_t>(E));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t j = 0; j < k; ++j)
      rows[expert[t * k + j]].emplace_back(static_cast<int32_t>(t), weight[t * k + j]);
  // Every expert hit, and the shared expert, in two grouped matmuls (gate and up, then down):
  // one parallel_for each instead of two per expert. An expert that takes every token in order
  // (all of them, at decode) reads h itself, so such inputs are quantized once.
  int64_t total = 0;
  for (const auto& r : rows) total += static_cast<int64_t>(r.size());
  const bool shared = L.shared.gate.w.rows > 0;
  const int64_t sff = shared ? c.shared_expert_intermediate_size : 0;
  std::vector<float> x, g(static_cast<size_t>(total * ff + n * sff)), u(g.size()),
      y(static_cast<size_t>(total * H + (shared ? n * H : 0))), gate(shared ? n : 0);
  std::vector<cpu::GroupedPart> up_parts, down_parts;
  std::vector<const float*> inputs(static_cast<size_t>(E), nullptr);
  int64_t off = 0;
  for (int64_t e = 0; e < E; ++e) {
    const auto& r = rows[e];
    const int64_t m = static_cast<int64_t>(r.size());
    if (m == 0) continue;
    bool identity = m == n;
    for (int64_t j = 0; identity && j < m; ++j) identity = r[j].first == j;
    const float* xe = h;
    if (!identity) {  // gathered (x is sized once, on the first such expert)
      x.resize(static_cast<size_t>(total * H));
      for (int64_t j = 0; j < m; ++j) std::copy_n(h + r[j].first * H, H, &x[(off + j) * H]);
      xe = &x[off * H];
    }
    const Mlp& M = L.experts[e];
    up_parts.push_back({&M.gate.w, xe, m, &g[off * ff], ff});
    up_parts.push_back({&M.up.w, xe, m, &u[off * ff], ff});
    down_parts.push_back({&M.down.w, &g[off * ff], m, &y[off * H], H});
    off += m;
  }
  if (shared) {
    float* gs = &g[total * ff];
    up_parts.push_back({&L.shared.gate.w, h, n, gs, sff});
    up_parts.push_back({&L.shared.up.w, h, n, &u[total * ff], sff});
    up_parts.push_back({&L.shared_gate.w, h, n, gate.data(), 1});
    down_parts.push_back({&L.shared.down.w, gs, n, &y[total * H], H});
  }
  cpu::matmul_grouped(up_parts, pool);
  // Expert biases (gpt-oss) over each expert's rows, in the order the rows were laid out.
  auto add_expert_biases = [&](float* buf, int64_t width, Linear Mlp::*proj) {
    for (int64_t e = 0, o = 0; e < E; o += static_cast<int64_t>(rows[e].size()), ++e)
      add_bias(buf + o * width, (L.experts[e].*proj).bias, static_cast<int64_t>(rows[e].size()));
  };
  const bool biased = !L.experts[0].gate.bias.empty();
  if (biased) {
    add_expert_biases(g.data(), ff, &Mlp::gate);
    add_expert_biases(u.data(), ff, &Mlp::up);
  }
  if (c.swiglu_limit > 0.0f) {
    swiglu_oai(g.data(), u.data(), static_cast<int64_t>(g.size()), c.swiglu_alpha,
               c.swiglu_limit);
  } else {
    cpu::silu_mul(g.data(), u.data(), static_cast<int64_t>(g.size()));
  }
  cpu::matmul_grouped(down_parts, pool);
  if (biased) add_expert_biases(y.data(), H, &Mlp::down);
  // Each token's experts added in ascending id, then the shared expert (transformers' order).
  std::fill(out, out + n * H, 0.0f);
  off = 0;
  for (int64_t e = 0; e < E; ++e) {
    for (const auto& [t, w] : rows[e]) {
      float* o = out + static_cast<int64_t>(t) * H;
      const float* ye = &y[off * H];
      for (int64_t i = 0; i < H; ++i) o[i] += w * ye[i];
      ++off;
    }
  }
  if (!shared) return;
  for (int64_t t = 0; t < n; ++t) {
    const float s = 1.0f / (1.0f + std::exp(-gate[t]));
    const float* ys = &y[(total + t) * H];
    for (int64_t i = 0; i < H; ++i) out[t * H + i] += s * ys[i];
  }
}

}  // namespace jinx
