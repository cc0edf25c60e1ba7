// The weights of a decoder-only transformer, as views into the mapped files plus small fp32
// copies of the 1-D tensors.
#pragma once

#include <cstdint>
#include <vector>

#include "backend/weight.h"

namespace jinx {

// A LoRA adapter's update of one projection: y += B (A x), the adapter's scale folded into B.
struct LoraDelta {
  int64_t rank = 0;       // 0: no adapter on this projection
  std::vector<float> a;   // [rank, in_features]
  std::vector<float> bt;  // [rank, out_features]: B transposed, times alpha / r (or / sqrt(r))
};

struct Linear {
  WeightMatrix w;           // [out_features, in_features]
  std::vector<float> bias;  // [out_features] or empty
  // LoRA adapters (model/lora.cpp): lora[a - 1] is adapter a's update (rank 0 where adapter a
  // leaves this projection alone); empty without adapters.
  std::vector<LoraDelta> lora;
};

// A SwiGLU MLP: down(silu(gate x) * up x).
struct Mlp {
  Linear gate, up, down;  // gate/up: [width, hidden], down: [hidden, width]
};

struct LayerWeights {
  std::vector<float> attn_norm;  // [hidden]
  Linear q, k, v, o;             // q: [n_heads*head_dim, hidden], k/v: [n_kv*head_dim, hidden]
  std::vector<float> q_norm;     // [head_dim] (Qwen3) or empty
  std::vector<float> k_norm;     // [head_dim] (Qwen3) or empty
  std::vector<float> ffn_norm;   // [hidden]
  std::vector<float> post_attn_norm;  // [hidden] (Gemma 3: on the attention output) or empty
  std::vector<float> post_ffn_norm;   // [hidden] (Gemma 3: on the MLP output) or empty
  std::vector<float> sinks;           // [n_heads] (gpt-oss: attention sinks) or empty
  Linear gate, up, down;         // gate/up: [intermediate, hidden], down: [hidden, intermediate]
  // MoE layers (ModelConfig::is_moe_layer) instead of gate/up/down:
  Linear router;             // [n_experts, hidden] (gpt-oss: with a bias)
  std::vector<Mlp> experts;  // [n_experts], each of moe_intermediate_size (gpt-oss: biased)
  Mlp shared;                // Qwen2-MoE: the shared expert (empty matrices when absent)
  Linear shared_gate;        // Qwen2-MoE: [1, hidden], sigmoid(shared_gate x) weighs it
};

struct ModelWeights {
  WeightMatrix embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  std::vector<float> final_norm;  // [hidden]
  WeightMatrix lm_head;           // [vocab, hidden]; the embedding when tied
};

}  // namespace jinx
