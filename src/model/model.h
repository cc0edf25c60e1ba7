// A loaded decoder-only transformer and its single-sequence forward pass.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "model/config.h"
#include "model/paged_kv.h"
#include "model/weight_store.h"
#include "model/weights.h"

namespace jinx {

// A contiguous per-sequence KV cache (the paged cache replaces it in the engine).
struct KvCache {
  int64_t capacity = 0;  // tokens
  int64_t n_tokens = 0;  // tokens stored so far (= next position)
  int64_t n_layers = 0;
  int64_t kv_dim = 0;    // n_kv_heads * head_dim
  std::vector<float> k;  // [n_layers, capacity, kv_dim]
  std::vector<float> v;  // [n_layers, capacity, kv_dim]

  float* k_at(int64_t layer, int64_t pos) { return &k[(layer * capacity + pos) * kv_dim]; }
  float* v_at(int64_t layer, int64_t pos) { return &v[(layer * capacity + pos) * kv_dim]; }
};

class Model {
 public:
  // Loads a model directory (config.json + safetensors, MLX-quantized or not) or a .gguf file.
  static std::unique_ptr<Model> load(const std::string& path);

  const ModelConfig& config() const { return cfg_; }
  const WeightStore& store() const { return *store_; }
  const ModelWeights& weights() const { return w_; }

  KvCache new_cache(int64_t capacity) const;

  // Runs `tokens` at positions cache.n_tokens.. and appends their K/V to the cache.
  // logits: [tokens.size(), vocab] when all_logits, else [1, vocab] for the last token.
  void forward(std::span<const int32_t> tokens, KvCache& cache, float* logits, bool all_logits,
               ThreadPool& pool) const;

  // One step over a flat batch of many sequences: stores the new tokens' K/V at their slots in
  // the paged cache and attends over each sequence's blocks. logits: [out_rows.size(), vocab].
  void forward_batch(const ForwardBatch& batch, PagedKvStorage& kv, float* logits,
                     ThreadPool& pool) const;

 private:
  Model() = default;
  // Stores this step's k/v ([n_tokens, kv_dim] each, RoPE applied to k) for layer `layer` and
  // writes the attention output for q [n_tokens, n_heads, head_dim] to out.
  using AttendFn = std::function<void(int64_t layer, const float* q, const float* k,
                                      const float* v, float* out)>;
  // The layers over a flat batch of tokens at `positions`; logits [out_rows.size(), vocab] for
  // the rows listed.
  void run(std::span<const int32_t> tokens, std::span<const int32_t> positions,
           const AttendFn& attend, std::span<const int32_t> out_rows, float* logits,
           ThreadPool& pool) const;

  std::unique_ptr<WeightStore> store_;
  ModelConfig cfg_;
  ModelWeights w_;
  std::vector<float> inv_freq_;  // [head_dim / 2]
};

// Per-architecture loading of one layer's weights (model/arch/<name>.cpp).
void load_llama_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l);
void load_qwen2_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l);
void load_qwen3_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l);

}  // namespace jinx
