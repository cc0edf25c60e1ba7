// A loaded decoder-only transformer and its single-sequence forward pass.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/comm.h"
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

// --quantize: what dense (F32/F16/BF16) projection weights become at load. kQ4_K: GGML Q4_K
// (rows not a multiple of 256 fall back to Q8_0); kInt4: MLX affine 4-bit, group 64, scales and
// biases in the checkpoint's float type (rows not a multiple of 64 stay dense).
enum class WeightQuant { kNone, kQ8_0, kQ4_0, kQ4_K, kInt4 };
// "none", "q8_0", "q4_0", "q4_k", "int4" (as the flag spells them); nullopt for anything else.
std::optional<WeightQuant> weight_quant_from_name(std::string_view name);
const char* weight_quant_name(WeightQuant q);

struct LoadOptions {
  // Layer projections (q, k, v, o, gate, up, down) stored as F32/F16/BF16 are quantized to this
  // in memory; the head becomes Q8_0 whatever the choice (llama.cpp's habit of keeping the
  // output layer at higher precision; it uses Q6_K there for Q4_K files): an untied lm_head in
  // place, a tied one as a Q8_0 copy of the embedding. The embedding itself is never touched,
  // and MLX-packed or GGUF block-quantized weights stay as they are.
  WeightQuant quantize = WeightQuant::kNone;
  int threads = 0;  // for quantizing (0: every core)
  // Tensor parallelism: with a group of more than one process, this process keeps its shard
  // (model/tensor_parallel.cpp) and the forward pass sums the row-parallel layers over the
  // group. Every rank must then run the same forward passes together.
  std::shared_ptr<Communicator> comm;
  // A LoRA adapter directory in PEFT's format (adapter_config.json + adapter_model.safetensors)
  // applied to the projections it names, unmerged (model/lora.cpp), to every token. Empty: none.
  std::string lora;
  // Adapters chosen per token instead (ForwardBatch::adapters): adapter a is loras[a - 1],
  // 0 the base model. Not together with `lora`.
  std::vector<std::string> loras;
};

class Model {
 public:
  // Loads a model directory (config.json + safetensors, MLX-quantized or not) or a .gguf file.
  static std::unique_ptr<Model> load(const std::string& path, const LoadOptions& options = {});

  // The config of this process's shard: under tensor parallelism n_heads, n_kv_heads and
  // intermediate_size are this rank's share.
  const ModelConfig& config() const { return cfg_; }
  const std::string& path() const { return path_; }
  // The tensor-parallel group (null: the whole model is here).
  Communicator* comm() const { return comm_.get(); }
  int tp_size() const { return comm_ ? comm_->size() : 1; }
  int tp_rank() const { return comm_ ? comm_->rank() : 0; }
  const WeightStore& store() const { return *store_; }
  const ModelWeights& weights() const { return w_; }
  // What --quantize did at load, in one line (empty without it).
  const std::string& quantize_summary() const { return quantize_summary_; }
  // The LoRA adapters loaded, in one line (empty without any).
  const std::string& lora_summary() const { return lora_summary_; }
  // Adapters loaded (ids 1..n_adapters) and the one a token without a choice gets (0: none).
  int32_t n_adapters() const { return n_adapters_.load(std::memory_order_acquire); }
  int32_t default_adapter() const { return default_adapter_; }
  // Runtime LoRA (jinx serve --allow-runtime-lora): add_adapter loads one more adapter (a PEFT
  // directory or an adapter .gguf) and returns its id, n_adapters() after it; on any error it
  // throws jinx::Error and the model is as before. remove_adapter frees adapter a's weights:
  // its id stays taken (never reused, so a prefix-cache block computed under it is never
  // matched by another adapter) and tokens naming it then run the base weights. Neither may
  // run while a forward pass does (the engine calls them between steps). Refused under tensor
  // parallelism and when one adapter applies to every token (--lora).
  int32_t add_adapter(const std::string& path);
  void remove_adapter(int32_t a);

  KvCache new_cache(int64_t capacity) const;
  // Layer li's attention sinks ([n_heads], gpt-oss), or null.
  const float* sinks_of(int64_t li) const {
    const std::vector<float>& s = w_.layers[static_cast<size_t>(li)].sinks;
    return s.empty() ? nullptr : s.data();
  }

  // Runs `tokens` at positions cache.n_tokens.. and appends their K/V to the cache.
  // logits: [tokens.size(), vocab] when all_logits, else [1, vocab] for the last token.
  void forward(std::span<const int32_t> tokens, KvCache& cache, float* logits, bool all_logits,
               ThreadPool& pool) const;

  // One step over a flat batch of many sequences: stores the new tokens' K/V at their slots in
  // the paged cache and attends over each sequence's blocks. logits: [out_rows.size(), vocab].
  void forward_batch(const ForwardBatch& batch, PagedKvStorage& kv, float* logits,
                     ThreadPool& pool) const;

  // Sentence embeddings (model/embed.cpp): each sequence runs alone through the layers (causal
  // attention within it, positions from 0, no KV cache kept), its final-norm hidden states are
  // pooled and, when `normalize`, scaled to unit L2 norm. out: [seqs.size(), hidden_size].
  // Sequences are packed into forward passes of up to max_batch_tokens tokens (a longer one
  // runs alone). Throws jinx::Error for an empty sequence or an id outside the vocabulary.
  // A sharded model's ranks must all call it with the same sequences (TpExecutor::embed).
  void embed(std::span<const std::vector<int32_t>> seqs, Pooling pooling, bool normalize,
             float* out, ThreadPool& pool, int64_t max_batch_tokens = 2048) const;

 private:
  Model() = default;
  // The --quantize step of load() (model/quantize_weights.cpp): rewrites w_'s matrices to point
  // into quant_storage_ and logs what it cost.
  void quantize_weights(const LoadOptions& options);
  // LoadOptions::lora / loras (model/lora.cpp): appends adapter n_adapters_ + 1 to the
  // layers' Linear::lora.
  void load_lora(const std::string& path);  // a PEFT directory or an adapter .gguf
  void load_lora_gguf(const std::string& path);
  // Keeps this rank's shard of the layers (model/tensor_parallel.cpp).
  void shard(std::shared_ptr<Communicator> comm);
  WeightMatrix slice_columns(const WeightMatrix& w, int64_t c0, int64_t c1);
  // Stores this step's k/v ([n_tokens, kv_dim] each, RoPE applied to k) for layer `layer` and
  // writes the attention output for q [n_tokens, n_heads, head_dim] to out.
  using AttendFn = std::function<void(int64_t layer, const float* q, const float* k, const float* v,
                                      float* out)>;
  // The layers over a flat batch of tokens at `positions`; logits [out_rows.size(), vocab] for
  // the rows listed.
  // With `hidden`, the final-norm hidden states of out_rows go there ([out_rows.size(),
  // hidden_size]) instead of through the head (logits unused).
  // adapters: each token's LoRA adapter (empty: default_adapter_ for all).
  void run(std::span<const int32_t> tokens, std::span<const int32_t> positions,
           const AttendFn& attend, std::span<const int32_t> out_rows, float* logits,
           ThreadPool& pool, float* hidden = nullptr,
           std::span<const int32_t> adapters = {}) const;

  std::unique_ptr<WeightStore> store_;
  ModelConfig cfg_;
  ModelWeights w_;
  std::vector<float> inv_freq_;        // [head_dim / 2]
  std::vector<float> local_inv_freq_;  // [head_dim / 2], sliding-window layers (Gemma 3)
  // Quantized copies made at load (one buffer per matrix); empty without --quantize.
  std::vector<std::vector<uint8_t>> quant_storage_;
  std::string quantize_summary_;
  std::string lora_summary_;
  // Atomic: requests are checked against it off the engine thread while add_adapter() runs.
  std::atomic<int32_t> n_adapters_{0};
  int32_t default_adapter_ = 0;
  std::string path_;
  std::shared_ptr<Communicator> comm_;  // set by shard()
};

// Per-architecture loading of one layer's weights (model/arch/<name>.cpp).
// The attention part of a Llama layer: both norms, q/k/v/o, q/k/v biases when attention_bias.
void load_llama_attention(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l);
void load_llama_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l);
void load_qwen2_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l);
void load_qwen3_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l);
void load_gemma3_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l);
// gpt-oss: experts that must be rearranged (a Hugging Face checkpoint's) are copied into
// buffers appended to `owned`, which must outlive the weights.
void load_gpt_oss_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l,
                        std::vector<std::vector<uint8_t>>* owned);
// The router and experts of MoE layer i (model/moe.cpp), Hugging Face names.
void load_moe_mlp(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l);
// y [n, l.w.rows] += the LoRA update of l for x [n, l.w.cols]: token t's adapter is
// adapters[t] (empty: `fallback` for all; 0 is none).
void add_lora(const Linear& l, const float* x, int64_t n, float* y, ThreadPool& pool,
              std::span<const int32_t> adapters, int32_t fallback);
// y [n_tokens, bias.size()] += bias on every row (nothing for an empty bias).
void add_bias(float* y, const std::vector<float>& bias, int64_t n_tokens);
// out [n, hidden] = the MoE MLP of layer L applied to h [n, hidden] (model/moe.cpp). A token's
// result does not depend on the other tokens of the batch.
void moe_mlp(const LayerWeights& L, const ModelConfig& c, const float* h, int64_t n, float* out,
             ThreadPool& pool);

}  // namespace jinx
