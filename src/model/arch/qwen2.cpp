// Qwen2 / Qwen2.5: the Llama layer plus biases on the q, k and v projections; small models
// tie the output head to the embedding.
#include "model/model.h"

namespace jinx {

void load_qwen2_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l) {
  ModelConfig with_bias = c;
  with_bias.attention_bias = true;  // always present in Qwen2, whatever config.json says
  load_llama_layer(s, with_bias, i, l);
}

}  // namespace jinx
