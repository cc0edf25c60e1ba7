// The decoder-only transformer forward pass, shared by the architectures in model/arch/:
//
//   x = embed(tokens)                       [Gemma 3: * sqrt(hidden)]
//   for each layer:
//     h = rmsnorm(x);  q, k, v = h Wq (+bq), h Wk (+bk), h Wv (+bv)
//     [Qwen3, Gemma 3] q, k = rmsnorm_per_head(q), rmsnorm_per_head(k)
//     q, k = rope(q, k, positions);  cache k, v
//     x += attention(q, cache, causal) Wo     [Gemma 3: rmsnorm'd first; sliding-window layers
//                                              see the last sliding_window positions]
//     h = rmsnorm(x);  x += (silu(h Wgate) * (h Wup)) Wdown   [MoE layers: x += moe(h), moe.cpp;
//                                              Gemma 3: gelu_tanh for silu, rmsnorm'd first]
//   logits = rmsnorm(x) Wlm_head
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>

#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "model/model.h"

namespace jinx {

void add_bias(float* y, const std::vector<float>& bias, int64_t n_tokens) {
  if (bias.empty()) return;
  const int64_t n = static_cast<int64_t>(bias.size());
  for (int64_t t = 0; t < n_tokens; ++t)
    for (int64_t i = 0; i < n; ++i) y[t * n + i] += bias[i];
}

namespace {

// Rotates each head of x [n_tokens, n_heads, head_dim] by its token's position.
void rope(float* x, int64_t n_tokens, int64_t n_heads, int64_t head_dim, const int32_t* positions,
          const std::vector<float>& inv_freq, bool interleaved) {
  const int64_t half = head_dim / 2;
  std::vector<float> cs(half), sn(half);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float pos = static_cast<float>(positions[t]);
    for (int64_t i = 0; i < half; ++i) {
      const float a = pos * inv_freq[i];
      cs[i] = std::cos(a);
      sn[i] = std::sin(a);
    }
    for (int64_t h = 0; h < n_heads; ++h) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        // Pairs (i, i + half) in Hugging Face layout, (2i, 2i + 1) in GGUF llama layout.
        const int64_t a = interleaved ? 2 * i : i, b = interleaved ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        v[a] = x0 * cs[i] - x1 * sn[i];
        v[b] = x1 * cs[i] + x0 * sn[i];
      }
    }
  }
}

// Causal attention of n_tokens queries at positions pos0.. over cache positions [0, pos0+t].
// q: [n_tokens, n_heads, head_dim], out: same shape.
// sinks: [n_heads] (gpt-oss) or null.
void attention(const float* q, KvCache& cache, int64_t layer, int64_t n_tokens, int64_t pos0,
               const ModelConfig& c, const float* sinks, float* out, ThreadPool& pool) {
  const int64_t hd = c.head_dim, group = c.n_heads / c.n_kv_heads;
  const int64_t window = c.is_sliding_layer(layer) ? c.sliding_window : 0;
  const float scale = c.attn_scale();
  pool.parallel_for(n_tokens * c.n_heads, 1, [&](int64_t b, int64_t e) {
    std::vector<float> scores(static_cast<size_t>(pos0 + n_tokens));
    for (int64_t job = b; job < e; ++job) {
      const int64_t t = job / c.n_heads, h = job % c.n_heads, kvh = h / group;
      const int64_t n_ctx = pos0 + t + 1;
      const int64_t p0 = window > 0 ? std::max<int64_t>(0, n_ctx - window) : 0;
      const float* qv = q + (t * c.n_heads + h) * hd;
      for (int64_t p = p0; p < n_ctx; ++p)
        scores[p - p0] = cpu::dot_f32(qv, cache.k_at(layer, p) + kvh * hd, hd) * scale;
      if (sinks) {
        cpu::softmax_with_sink(scores.data(), n_ctx - p0, sinks[h]);
      } else {
        cpu::softmax(scores.data(), n_ctx - p0);
      }
      float* o = out + (t * c.n_heads + h) * hd;
      std::fill(o, o + hd, 0.0f);
      for (int64_t p = p0; p < n_ctx; ++p)
        cpu::axpy_f32(scores[p - p0], cache.v_at(layer, p) + kvh * hd, o, hd);
    }
  });
}

// y = l(x), LoRA updates included (token t's adapter: adapters[t], or `fallback`).
void linear(const Linear& l, const float* x, int64_t n, float* y, ThreadPool& pool,
            std::span<const int32_t> adapters, int32_t fallback) {
  cpu::matmul(l.w, x, n, y, l.w.rows, pool);
  add_lora(l, x, n, y, pool, adapters, fallback);
  add_bias(y, l.bias, n);
}

}  // namespace

std::unique_ptr<Model> Model::load(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<Model> m(new Model());
  m->store_ = WeightStore::open(path);
  m->cfg_ = m->store_->config();
  const ModelConfig& c = m->cfg_;
  const WeightStore& s = *m->store_;
  m->w_.embed = s.matrix("model.embed_tokens", c.vocab_size, c.hidden_size);
  m->w_.final_norm = s.vector("model.norm.weight", c.hidden_size);
  // GGUF files without output.weight are tied (config_from_gguf sets the flag).
  const bool tied = c.tie_word_embeddings;
  m->w_.lm_head = tied ? m->w_.embed : s.matrix("lm_head", c.vocab_size, c.hidden_size);
  m->w_.layers.resize(static_cast<size_t>(c.n_layers));
  for (int64_t i = 0; i < c.n_layers; ++i) {
    LayerWeights* l = &m->w_.layers[static_cast<size_t>(i)];
    switch (c.arch) {
      case Arch::kLlama:
        load_llama_layer(s, c, i, l);
        break;
      case Arch::kQwen2:
        load_qwen2_layer(s, c, i, l);
        break;
      case Arch::kQwen3:
        load_qwen3_layer(s, c, i, l);
        break;
      case Arch::kGemma3:
        load_gemma3_layer(s, c, i, l);
        break;
      case Arch::kGptOss:
        load_gpt_oss_layer(s, c, i, l, &m->quant_storage_);
        break;
    }
  }
  if (c.norm_weight_offset != 0.0f) {  // Hugging Face Gemma: x * (1 + w)
    auto shift = [&](std::vector<float>& v) {
      for (float& x : v) x += c.norm_weight_offset;
    };
    shift(m->w_.final_norm);
    for (LayerWeights& l : m->w_.layers)
      for (auto* v : {&l.attn_norm, &l.ffn_norm, &l.post_attn_norm, &l.post_ffn_norm, &l.q_norm,
                      &l.k_norm})
        shift(*v);
  }
  m->inv_freq_ = c.rope_inv_freq();
  m->local_inv_freq_ = c.rope_local_inv_freq();
  m->path_ = path;
  if (!options.lora.empty() || !options.loras.empty()) {
    if (options.comm && options.comm->size() > 1)
      fail("a LoRA adapter does not run under tensor parallelism yet");
    if (!options.lora.empty() && !options.loras.empty())
      fail("a LoRA adapter for every token and adapters per request do not go together");
    if (!options.lora.empty()) {
      m->load_lora(options.lora);
      m->default_adapter_ = 1;
    }
    for (const std::string& dir : options.loras) m->load_lora(dir);
  }
  if (options.quantize != WeightQuant::kNone) m->quantize_weights(options);
  if (options.comm && options.comm->size() > 1) m->shard(options.comm);
  return m;
}

KvCache Model::new_cache(int64_t capacity) const {
  JINX_CHECK(capacity > 0, "KV cache capacity must be positive");
  KvCache kv;
  kv.capacity = capacity;
  kv.n_layers = cfg_.n_layers;
  kv.kv_dim = cfg_.n_kv_heads * cfg_.head_dim;
  const size_t n = static_cast<size_t>(kv.n_layers * capacity * kv.kv_dim);
  kv.k.assign(n, 0.0f);
  kv.v.assign(n, 0.0f);
  return kv;
}

void Model::run(std::span<const int32_t> tokens, std::span<const int32_t> positions,
                const AttendFn& attend, std::span<const int32_t> out_rows, float* logits,
                ThreadPool& pool, float* hidden, std::span<const int32_t> adapters) const {
  const ModelConfig& c = cfg_;
  const int64_t n = static_cast<int64_t>(tokens.size()), H = c.hidden_size, hd = c.head_dim;
  const int64_t q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd, ff = c.intermediate_size;
  JINX_CHECK(static_cast<int64_t>(positions.size()) == n, "one position per token");
  JINX_CHECK(adapters.empty() || static_cast<int64_t>(adapters.size()) == n,
             "one adapter per token or none");
  std::vector<float> x(n * H), h(n * H), q(n * q_dim), k(n * kv_dim), v(n * kv_dim), att(n * q_dim),
      g(n * ff), u(n * ff), moe_out(c.n_experts > 0 ? n * H : 0);
  for (int64_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= c.vocab_size)
      fail("token id ", tokens[t], " is outside the vocabulary (", c.vocab_size, ")");
    cpu::weight_row(w_.embed, tokens[t], &x[t * H]);
    if (c.embed_scale != 1.0f)
      for (int64_t i = 0; i < H; ++i) x[t * H + i] *= c.embed_scale;
  }
  for (int64_t li = 0; li < c.n_layers; ++li) {
    const LayerWeights& L = w_.layers[li];
    cpu::rmsnorm(x.data(), L.attn_norm.data(), h.data(), n, H, c.rms_norm_eps);
    {
      const cpu::MatmulPart parts[] = {{&L.q.w, q.data(), L.q.w.rows},
                                       {&L.k.w, k.data(), L.k.w.rows},
                                       {&L.v.w, v.data(), L.v.w.rows}};
      cpu::matmul_many(parts, h.data(), n, pool);
      add_lora(L.q, h.data(), n, q.data(), pool, adapters, default_adapter_);
      add_lora(L.k, h.data(), n, k.data(), pool, adapters, default_adapter_);
      add_lora(L.v, h.data(), n, v.data(), pool, adapters, default_adapter_);
      add_bias(q.data(), L.q.bias, n);
      add_bias(k.data(), L.k.bias, n);
      add_bias(v.data(), L.v.bias, n);
    }
    if (!L.q_norm.empty()) {
      cpu::rmsnorm(q.data(), L.q_norm.data(), q.data(), n * c.n_heads, hd, c.rms_norm_eps);
      cpu::rmsnorm(k.data(), L.k_norm.data(), k.data(), n * c.n_kv_heads, hd, c.rms_norm_eps);
    }
    const std::vector<float>& freq = c.is_sliding_layer(li) ? local_inv_freq_ : inv_freq_;
    rope(q.data(), n, c.n_heads, hd, positions.data(), freq, c.rope_interleaved);
    rope(k.data(), n, c.n_kv_heads, hd, positions.data(), freq, c.rope_interleaved);
    attend(li, q.data(), k.data(), v.data(), att.data());
    linear(L.o, att.data(), n, h.data(), pool, adapters, default_adapter_);
    if (comm_) comm_->all_reduce_sum(h.data(), static_cast<size_t>(n * H));  // row-parallel
    if (!L.post_attn_norm.empty())
      cpu::rmsnorm(h.data(), L.post_attn_norm.data(), h.data(), n, H, c.rms_norm_eps);
    for (int64_t i = 0; i < n * H; ++i) x[i] += h[i];
    cpu::rmsnorm(x.data(), L.ffn_norm.data(), h.data(), n, H, c.rms_norm_eps);
    if (!L.experts.empty()) {
      moe_mlp(L, c, h.data(), n, moe_out.data(), pool);
      if (comm_) comm_->all_reduce_sum(moe_out.data(), static_cast<size_t>(n * H));
      for (int64_t i = 0; i < n * H; ++i) x[i] += moe_out[i];
      continue;
    }
    {
      const cpu::MatmulPart parts[] = {{&L.gate.w, g.data(), L.gate.w.rows},
                                       {&L.up.w, u.data(), L.up.w.rows}};
      cpu::matmul_many(parts, h.data(), n, pool);
      add_lora(L.gate, h.data(), n, g.data(), pool, adapters, default_adapter_);
      add_lora(L.up, h.data(), n, u.data(), pool, adapters, default_adapter_);
      add_bias(g.data(), L.gate.bias, n);
      add_bias(u.data(), L.up.bias, n);
    }
    if (c.gelu) {
      cpu::gelu_tanh_mul(g.data(), u.data(), n * ff);
    } else {
      cpu::silu_mul(g.data(), u.data(), n * ff);
    }
    linear(L.down, g.data(), n, h.data(), pool, adapters, default_adapter_);
    if (comm_) comm_->all_reduce_sum(h.data(), static_cast<size_t>(n * H));
    if (!L.post_ffn_norm.empty())
      cpu::rmsnorm(h.data(), L.post_ffn_norm.data(), h.data(), n, H, c.rms_norm_eps);
    for (int64_t i = 0; i < n * H; ++i) x[i] += h[i];
  }
  // Only the rows that sample go through the final norm and the (large) output head.
  const int64_t n_out = static_cast<int64_t>(out_rows.size());
  float* normed = hidden != nullptr ? hidden : h.data();
  for (int64_t i = 0; i < n_out; ++i) {
    JINX_CHECK(out_rows[i] >= 0 && out_rows[i] < n, "output row out of range");
    cpu::rmsnorm(&x[out_rows[i] * H], w_.final_norm.data(), &normed[i * H], 1, H, c.rms_norm_eps);
  }
  // Tensor-parallel workers pass no logits: the head is rank 0's alone.
  if (hidden == nullptr && logits != nullptr)
    cpu::matmul(w_.lm_head, h.data(), n_out, logits, c.vocab_size, pool);
}

void Model::forward(std::span<const int32_t> tokens, KvCache& cache, float* logits, bool all_logits,
                    ThreadPool& pool) const {
  const int64_t n = static_cast<int64_t>(tokens.size()), pos0 = cache.n_tokens;
  const int64_t kv_dim = cfg_.n_kv_heads * cfg_.head_dim;
  if (n == 0) return;
  if (pos0 + n > cache.capacity)
    fail("sequence of ", pos0 + n, " tokens exceeds the KV cache (", cache.capacity, ")");
  std::vector<int32_t> positions(n), out_rows;
  for (int64_t t = 0; t < n; ++t) positions[t] = static_cast<int32_t>(pos0 + t);
  for (int64_t t = all_logits ? 0 : n - 1; t < n; ++t) out_rows.push_back(static_cast<int32_t>(t));
  auto attend = [&](int64_t li, const float* q, const float* k, const float* v, float* out) {
    for (int64_t t = 0; t < n; ++t) {
      std::copy_n(&k[t * kv_dim], kv_dim, cache.k_at(li, pos0 + t));
      std::copy_n(&v[t * kv_dim], kv_dim, cache.v_at(li, pos0 + t));
    }
    attention(q, cache, li, n, pos0, cfg_, sinks_of(li), out, pool);
  };
  run(tokens, positions, attend, out_rows, logits, pool);
  cache.n_tokens = pos0 + n;
}

void Model::forward_batch(const ForwardBatch& b, PagedKvStorage& kv, float* logits,
                          ThreadPool& pool) const {
  const int64_t n = static_cast<int64_t>(b.tokens.size());
  if (n == 0) return;
  JINX_CHECK(static_cast<int64_t>(b.slot_mapping.size()) == n, "one KV slot per token");
  JINX_CHECK(b.attn.n_seqs > 0 && b.attn.query_start[b.attn.n_seqs] == n,
             "sequence boundaries must cover the batch");
  auto attend = [&](int64_t li, const float* q, const float* k, const float* v, float* out) {
    cpu::PagedKv& layer = kv.layer(li);
    cpu::kv_store(layer, k, v, b.slot_mapping.data(), n, pool);
    cpu::paged_attention(q, out, cfg_.n_heads, layer, b.attn, cfg_.attn_scale(), pool,
                         cfg_.is_sliding_layer(li) ? cfg_.sliding_window : 0, sinks_of(li));
  };
  run(b.tokens, b.positions, attend, b.out_rows, logits, pool, nullptr, b.adapters);
}

}  // namespace jinx
