// Qwen3 (dense): the Llama layer plus a per-head RMSNorm of q and k before the rotation
// (q_norm, k_norm, [head_dim] each); no q/k/v biases; head_dim set explicitly in config.json.
#include "model/model.h"

namespace jinx {

void load_qwen3_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l) {
  load_llama_layer(s, c, i, l);
  const std::string p = "model.layers." + std::to_string(i) + ".self_attn.";
  l->q_norm = s.vector(p + "q_norm.weight", c.head_dim);
  l->k_norm = s.vector(p + "k_norm.weight", c.head_dim);
}

}  // namespace jinx
