// Gemma 3 (text): the Llama layer with a per-head RMSNorm of q and k, an RMSNorm after the
// attention and after the MLP (before each residual add) as well as before them, GELU (tanh)
// gating, the embedding scaled by sqrt(hidden), and 5 of 6 layers attending within a sliding
// window (ModelConfig::layer_sliding) with their own RoPE base. The forward pass is
// model/decoder.cpp. Read from GGUF, where the norms already hold Gemma's (1 + w).
#include "model/model.h"

namespace jinx {

void load_gemma3_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l) {
  load_llama_layer(s, c, i, l);  // its ffn_norm is read below under Gemma's name
  const std::string p = "model.layers." + std::to_string(i) + ".";
  const int64_t h = c.hidden_size;
  l->q_norm = s.vector(p + "self_attn.q_norm.weight", c.head_dim);
  l->k_norm = s.vector(p + "self_attn.k_norm.weight", c.head_dim);
  l->post_attn_norm = s.vector(p + "post_attention_layernorm.weight", h);
  l->ffn_norm = s.vector(p + "pre_feedforward_layernorm.weight", h);
  l->post_ffn_norm = s.vector(p + "post_feedforward_layernorm.weight", h);
}

}  // namespace jinx
