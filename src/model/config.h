// Hyper-parameters of a decoder-only transformer, filled from config.json or GGUF metadata.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace jinx {

enum class Arch { kLlama, kQwen2, kQwen3, kGemma3, kGptOss };
const char* arch_name(Arch a);

enum class RopeScaling { kNone, kLinear, kLlama3, kYarn };

// How an embedding is made from a sequence's last hidden states (after the final norm):
// their mean, the first token's (CLS) or the last token's (Qwen3-Embedding, gte-Qwen2).
enum class Pooling { kMean, kCls, kLast };
const char* pooling_name(Pooling p);
// "mean", "cls", "last"; throws jinx::Error for anything else.
Pooling pooling_from_name(const std::string& name);

struct ModelConfig {
  Arch arch = Arch::kLlama;
  std::string hf_architecture;  // e.g. "Qwen2ForCausalLM", or "gguf:llama"
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 0;
  float rms_norm_eps = 1e-6f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling = RopeScaling::kNone;
  float rope_factor = 1.0f;
  float rope_low_freq_factor = 1.0f;     // llama3
  float rope_high_freq_factor = 4.0f;    // llama3
  int64_t rope_original_max_pos = 8192;  // llama3, yarn
  // YaRN (Qwen2.5 / Qwen3 long context): frequencies between the beta_fast and beta_slow
  // rotation counts ramp from kept to divided by `factor`; q and k are scaled by
  // rope_attention_factor (default 0.1 ln(factor) + 1), i.e. the scores by its square.
  float rope_beta_fast = 32.0f;
  float rope_beta_slow = 1.0f;
  bool rope_truncate = true;
  float rope_attention_factor = 1.0f;
  // Per-frequency divisors (GGUF `rope_freqs.weight`, how llama.cpp stores Llama-3 scaling);
  // empty when unused. Applied after `rope_scaling`.
  std::vector<float> rope_freq_factors;
  // GGUF `llama` files store Q/K rows permuted so that rotation pairs are adjacent (2i, 2i+1);
  // Hugging Face layouts pair i with i + head_dim/2. Reading the permuted rows with the
  // interleaved rotation is the same function, and keeps the weights zero-copy.
  bool rope_interleaved = false;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections have biases (Qwen2)
  bool qk_norm = false;         // per-head RMSNorm of q and k (Qwen3, Gemma 3)
  // Gemma 3: the embedding scaled by sqrt(hidden_size); RMSNorms after the attention and after
  // the MLP as well as before them; GELU (tanh form) gating instead of SiLU; sliding-window
  // attention (window sliding_window) on the layers layer_sliding marks, whose rotation uses
  // rope_local_theta without scaling (the others rope_theta and rope_scaling; 0: the sliding
  // layers rotate as the others, as in Mistral and Qwen2).
  float embed_scale = 1.0f;
  bool post_norms = false;
  bool gelu = false;
  int64_t sliding_window = 0;       // 0: every layer attends to the whole sequence
  std::vector<bool> layer_sliding;  // [n_layers] when sliding_window > 0
  float rope_local_theta = 0.0f;
  // Hugging Face Gemma 3: norms scale by (1 + w) (GGUF files store 1 + w already), and the
  // scores by 1 / sqrt(query_pre_attn_scalar) (0: head_dim).
  float norm_weight_offset = 0.0f;
  float query_pre_attn_scalar = 0.0f;
  bool is_sliding_layer(int64_t layer) const {
    return sliding_window > 0 && layer_sliding[static_cast<size_t>(layer)];
  }
  // Mixture of experts (Qwen3-MoE, Qwen2-MoE; n_experts == 0: every MLP dense). In a MoE layer
  // a router picks n_experts_per_tok of n_experts SwiGLU MLPs of moe_intermediate_size per
  // token, weighted by the softmax of its scores over all experts (renormalized over the picks
  // when norm_topk_prob); Qwen2-MoE adds a shared expert of shared_expert_intermediate_size,
  // weighted by a sigmoid gate. Layer i is MoE iff (i + 1) % decoder_sparse_step == 0 and i is
  // not in mlp_only_layers; other layers keep a dense MLP of intermediate_size.
  int64_t n_experts = 0;
  int64_t n_experts_per_tok = 0;
  int64_t moe_intermediate_size = 0;
  bool norm_topk_prob = false;
  int64_t decoder_sparse_step = 1;
  std::vector<int64_t> mlp_only_layers;
  int64_t shared_expert_intermediate_size = 0;
  bool is_moe_layer(int64_t layer) const;
  // gpt-oss: a learned logit per query head ("sink") joins each softmax of the attention (it
  // takes probability mass and contributes no value); the experts' activation is
  // (clamp(up, -limit, limit) + 1) * g * sigmoid(alpha * g) with g = min(gate, limit) when
  // swiglu_limit > 0 (plain SiLU(gate) * up otherwise); routers and experts carry biases.
  // mxfp4_experts: a Hugging Face checkpoint whose experts are MXFP4 blocks and scales
  // (quantization_config quant_method "mxfp4", as OpenAI publishes gpt-oss).
  bool attn_sinks = false;
  float swiglu_limit = 0.0f;
  float swiglu_alpha = 1.0f;
  bool mxfp4_experts = false;
  // MLX affine quantization of the checkpoint (0 = none), and the modules mlx-lm quantized
  // otherwise (e.g. a MoE router at 8 bits: "model.layers.0.mlp.gate").
  int quant_bits = 0;
  int quant_group_size = 0;
  struct QuantOverride {
    std::string path;
    int bits = 0, group_size = 0;
  };
  std::vector<QuantOverride> quant_overrides;
  // bits and group size of the module at `path`.
  std::pair<int, int> quant_of(const std::string& path) const;
  // from generation_config.json (or GGUF): defaults for sampling
  int32_t bos_token_id = -1;
  std::vector<int32_t> eos_token_ids;
  float default_temperature = -1.0f;  // <0: not given
  float default_top_p = -1.0f;
  int default_top_k = -1;
  // Embeddings (/v1/embeddings, RAG): the pooling the checkpoint declares (GGUF
  // `<arch>.pooling_type`, sentence-transformers `1_Pooling/config.json`), else mean.
  Pooling pooling = Pooling::kMean;
  bool pooling_declared = false;  // the file said which
  std::string pooling_unsupported;  // a declared pooling Jinx does not do (e.g. "max")

  // Throws jinx::Error when sizes are missing, non-positive, absurd or inconsistent.
  void validate() const;
  // Inverse frequencies of the rotary embedding, head_dim/2 values, scaling applied.
  std::vector<float> rope_inv_freq() const;
  // Those of the sliding-window layers: rope_local_theta, no scaling.
  std::vector<float> rope_local_inv_freq() const;
  // The attention scores' scale: 1/sqrt(head_dim), times rope_attention_factor squared (YaRN
  // scales the rotated q and k; scaling their product instead leaves the KV cache as is).
  float attn_scale() const;
};

// Parses a Hugging Face config.json (and generation_config.json beside it when present).
ModelConfig load_hf_config(const std::string& dir);

class GgufFile;
ModelConfig config_from_gguf(const GgufFile& f);

}  // namespace jinx
