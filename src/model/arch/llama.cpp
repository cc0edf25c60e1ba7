// Llama family (Llama 2/3, SmolLM2, Mistral without sliding window): pre-norm decoder layers,
// RMSNorm, rotary embeddings, grouped-query attention without biases, SwiGLU MLP.
// The forward pass shared by every architecture here is model/decoder.cpp.
#include "model/model.h"

namespace jinx {

void load_llama_attention(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l) {
  const std::string p = "model.layers." + std::to_string(i) + ".";
  const int64_t h = c.hidden_size, q_dim = c.n_heads * c.head_dim,
                kv_dim = c.n_kv_heads * c.head_dim;
  l->attn_norm = s.vector(p + "input_layernorm.weight", h);
  l->q.w = s.matrix(p + "self_attn.q_proj", q_dim, h);
  l->k.w = s.matrix(p + "self_attn.k_proj", kv_dim, h);
  l->v.w = s.matrix(p + "self_attn.v_proj", kv_dim, h);
  l->o.w = s.matrix(p + "self_attn.o_proj", h, q_dim);
  // Some Llama-family checkpoints (attention_bias: true) carry q/k/v biases.
  if (c.attention_bias) {
    l->q.bias = s.vector(p + "self_attn.q_proj.bias", q_dim);
    l->k.bias = s.vector(p + "self_attn.k_proj.bias", kv_dim);
    l->v.bias = s.vector(p + "self_attn.v_proj.bias", kv_dim);
  }
  l->ffn_norm = s.vector(p + "post_attention_layernorm.weight", h);
}

void load_llama_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l) {
  const std::string p = "model.layers." + std::to_string(i) + ".";
  const int64_t h = c.hidden_size, ff = c.intermediate_size;
  load_llama_attention(s, c, i, l);
  if (c.is_moe_layer(i)) {
    load_moe_mlp(s, c, i, l);
  } else {
    l->gate.w = s.matrix(p + "mlp.gate_proj", ff, h);
    l->up.w = s.matrix(p + "mlp.up_proj", ff, h);
    l->down.w = s.matrix(p + "mlp.down_proj", h, ff);
  }
}

}  // namespace jinx
