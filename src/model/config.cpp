#include "model/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace jinx {

namespace fs = std::filesystem;
using nlohmann::json;

const char* arch_name(Arch a) {
  switch (a) {
    case Arch::kLlama:
      return "llama";
    case Arch::kQwen2:
      return "qwen2";
    case Arch::kQwen3:
      return "qwen3";
    case Arch::kGemma3:
      return "gemma3";
    case Arch::kGptOss:
      return "gpt-oss";
  }
  return "?";
}

const char* pooling_name(Pooling p) {
  switch (p) {
    case Pooling::kMean:
      return "mean";
    case Pooling::kCls:
      return "cls";
    case Pooling::kLast:
      return "last";
  }
  return "?";
}

Pooling pooling_from_name(const std::string& name) {
  for (Pooling p : {Pooling::kMean, Pooling::kCls, Pooling::kLast})
    if (name == pooling_name(p)) return p;
  fail("unknown pooling \"", name, "\" (mean, cls or last)");
}

void ModelConfig::validate() const {
  auto positive = [](int64_t v, const char* what, int64_t max) {
    if (v <= 0 || v > max) fail("config: ", what, " = ", v, " is out of range (1..", max, ")");
  };
  positive(vocab_size, "vocab_size", int64_t{1} << 24);
  positive(hidden_size, "hidden_size", int64_t{1} << 17);
  positive(intermediate_size, "intermediate_size", int64_t{1} << 19);
  positive(n_layers, "num_hidden_layers", 1024);
  positive(n_heads, "num_attention_heads", 4096);
  positive(n_kv_heads, "num_key_value_heads", 4096);
  positive(head_dim, "head_dim", 4096);
  positive(max_position_embeddings, "max_position_embeddings", int64_t{1} << 24);
  if (n_heads % n_kv_heads != 0)
    fail("config: num_attention_heads (", n_heads, ") is not a multiple of num_key_value_heads (",
         n_kv_heads, ")");
  if (head_dim % 2 != 0) fail("config: head_dim ", head_dim, " must be even for RoPE");
  if (!(rms_norm_eps > 0.0f) || !(rms_norm_eps < 1.0f)) fail("config: bad rms_norm_eps");
  if (!(rope_theta > 0.0f) || !std::isfinite(rope_theta)) fail("config: bad rope_theta");
  if (!(rope_factor > 0.0f) || !std::isfinite(rope_factor)) fail("config: bad rope factor");
  if (rope_scaling == RopeScaling::kLlama3 &&
      (!(rope_high_freq_factor > rope_low_freq_factor) || rope_original_max_pos <= 0))
    fail("config: bad llama3 rope_scaling parameters");
  if (rope_scaling == RopeScaling::kYarn &&
      (rope_original_max_pos <= 0 || !(rope_beta_fast > 0.0f) || !(rope_beta_slow > 0.0f) ||
       !std::isfinite(rope_beta_fast) || !std::isfinite(rope_beta_slow)))
    fail("config: bad yarn rope_scaling parameters");
  if (sliding_window < 0 || (sliding_window > 0 && static_cast<int64_t>(layer_sliding.size()) != n_layers))
    fail("config: bad sliding window (", sliding_window, ", ", layer_sliding.size(), " layer flags)");
  if (!(rope_local_theta >= 0.0f) || !std::isfinite(rope_local_theta) || !(embed_scale > 0.0f) ||
      !std::isfinite(embed_scale))
    fail("config: bad rope_local_base_freq or embedding scale");
  if (!(query_pre_attn_scalar >= 0.0f) || !std::isfinite(query_pre_attn_scalar))
    fail("config: bad query_pre_attn_scalar");
  if (!(rope_attention_factor > 0.0f) || !std::isfinite(rope_attention_factor))
    fail("config: bad rope attention_factor");
  if (!rope_freq_factors.empty() && static_cast<int64_t>(rope_freq_factors.size()) != head_dim / 2)
    fail("config: rope_freqs has ", rope_freq_factors.size(), " values, expected ", head_dim / 2);
  for (float f : rope_freq_factors)
    if (!(f > 0.0f) || !std::isfinite(f)) fail("config: rope_freqs values must be positive");
  if (quant_bits != 0 && quant_bits != 2 && quant_bits != 3 && quant_bits != 4 && quant_bits != 6 &&
      quant_bits != 8)
    fail("config: unsupported quantization bits ", quant_bits);
  if (quant_bits != 0 &&
      (quant_group_size != 32 && quant_group_size != 64 && quant_group_size != 128))
    fail("config: unsupported quantization group_size ", quant_group_size);
  for (const QuantOverride& q : quant_overrides)
    if ((q.bits != 2 && q.bits != 3 && q.bits != 4 && q.bits != 6 && q.bits != 8) ||
        (q.group_size != 32 && q.group_size != 64 && q.group_size != 128))
      fail("config: unsupported quantization of ", q.path, ": ", q.bits, " bits, group ",
           q.group_size);
  // The engine feeds bos to the embedding table and compares sampled ids with eos: an id past
  // the vocabulary would index past the table (or never stop a sequence). -1: no bos token.
  if (bos_token_id != -1 && (bos_token_id < 0 || bos_token_id >= vocab_size))
    fail("config: bos_token_id ", bos_token_id, " is outside the vocabulary [0, ", vocab_size, ")");
  for (int32_t id : eos_token_ids)
    if (id < 0 || id >= vocab_size)
      fail("config: eos_token_id ", id, " is outside the vocabulary [0, ", vocab_size, ")");
  if (n_experts != 0) {
    positive(n_experts, "num_experts", 4096);
    positive(n_experts_per_tok, "num_experts_per_tok", n_experts);
    positive(moe_intermediate_size, "moe_intermediate_size", int64_t{1} << 19);
    positive(decoder_sparse_step, "decoder_sparse_step", n_layers);
    for (int64_t i : mlp_only_layers)
      if (i < 0 || i >= n_layers) fail("config: mlp_only_layers holds ", i, ", not a layer");
    if (!(swiglu_limit >= 0.0f) || !std::isfinite(swiglu_limit) || !std::isfinite(swiglu_alpha))
      fail("config: bad swiglu_limit / swiglu_alpha");
    if (shared_expert_intermediate_size < 0 || shared_expert_intermediate_size > (int64_t{1} << 19))
      fail("config: shared_expert_intermediate_size = ", shared_expert_intermediate_size,
           " is out of range");
  }
}

bool ModelConfig::is_moe_layer(int64_t layer) const {
  if (n_experts == 0 || (layer + 1) % decoder_sparse_step != 0) return false;
  return std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) == mlp_only_layers.end();
}

std::vector<float> ModelConfig::rope_local_inv_freq() const {
  if (rope_local_theta == 0.0f) return rope_inv_freq();
  ModelConfig local = *this;
  local.rope_theta = rope_local_theta;
  local.rope_scaling = RopeScaling::kNone;
  local.rope_freq_factors.clear();
  return local.rope_inv_freq();
}

std::pair<int, int> ModelConfig::quant_of(const std::string& path) const {
  for (const QuantOverride& q : quant_overrides)
    if (q.path == path) return {q.bits, q.group_size};
  return {quant_bits, quant_group_size};
}

float ModelConfig::attn_scale() const {
  const float d = query_pre_attn_scalar > 0.0f ? query_pre_attn_scalar : static_cast<float>(head_dim);
  return rope_attention_factor * rope_attention_factor / std::sqrt(d);
}

namespace {

// YaRN's ramp over the frequency index: 0 up to the dimension that turns beta_fast times over
// the original context, 1 from the one that turns beta_slow times (as transformers'
// _compute_yarn_parameters and llama.cpp's rope_yarn_corr_dims compute it).
std::vector<double> yarn_ramp(const ModelConfig& c) {
  const double dim = static_cast<double>(c.head_dim), base = c.rope_theta;
  auto corr_dim = [&](double rotations) {
    return dim * std::log(static_cast<double>(c.rope_original_max_pos) / (rotations * 2.0 * M_PI)) /
           (2.0 * std::log(base));
  };
  double low = corr_dim(c.rope_beta_fast), high = corr_dim(c.rope_beta_slow);
  if (c.rope_truncate) {
    low = std::floor(low);
    high = std::ceil(high);
  }
  low = std::max(low, 0.0);
  high = std::min(high, dim - 1.0);
  if (low == high) high += 0.001;
  std::vector<double> ramp(static_cast<size_t>(c.head_dim / 2));
  for (size_t i = 0; i < ramp.size(); ++i)
    ramp[i] = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
  return ramp;
}

}  // namespace

std::vector<float> ModelConfig::rope_inv_freq() const {
  const int64_t half = head_dim / 2;
  std::vector<float> inv(half);
  const std::vector<double> ramp =
      rope_scaling == RopeScaling::kYarn ? yarn_ramp(*this) : std::vector<double>{};
  for (int64_t i = 0; i < half; ++i) {
    double f = 1.0 / std::pow(static_cast<double>(rope_theta), 2.0 * i / head_dim);
    if (rope_scaling == RopeScaling::kLinear) {
      f /= rope_factor;
    } else if (rope_scaling == RopeScaling::kLlama3) {
      // Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, smooth between.
      const double low_wavelen = rope_original_max_pos / rope_low_freq_factor;
      const double high_wavelen = rope_original_max_pos / rope_high_freq_factor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= rope_factor;
      } else if (wavelen >= high_wavelen) {
        double smooth = (rope_original_max_pos / wavelen - rope_low_freq_factor) /
                        (rope_high_freq_factor - rope_low_freq_factor);
        f = (1.0 - smooth) * f / rope_factor + smooth * f;
      }
    } else if (rope_scaling == RopeScaling::kYarn) {
      // ramp 0: high frequencies kept (extrapolated); 1: low ones divided by the factor
      f = f / rope_factor * ramp[i] + f * (1.0 - ramp[i]);
    }
    if (!rope_freq_factors.empty()) f /= rope_freq_factors[i];
    inv[i] = static_cast<float>(f);
  }
  return inv;
}

namespace {

json read_json_file(const fs::path& p, bool object = true) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(p.string(), ": cannot open");
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) fail(p.string(), ": invalid JSON");
  if (object && !j.is_object()) fail(p.string(), ": expected a JSON object");
  return j;
}

int64_t get_int(const json& j, const char* key, int64_t def, bool required) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) {
    if (required) fail("config.json: missing \"", key, "\"");
    return def;
  }
  if (!it->is_number_integer()) fail("config.json: \"", key, "\" must be an integer");
  return it->get<int64_t>();
}

double get_num(const json& j, const char* key, double def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_number()) fail("config.json: \"", key, "\" must be a number");
  return it->get<double>();
}

// json::value() would throw nlohmann's type_error on a non-boolean: checked here instead.
bool get_bool(const json& j, const char* key, bool def) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean()) fail("config.json: \"", key, "\" must be true or false");
  return it->get<bool>();
}

// bos_token_id: an integer, or null / absent for none (-1). Only the int32 range is checked
// here, so that no cast wraps; validate() checks it against vocab_size.
void read_bos(const json& j, int32_t* out) {
  auto it = j.find("bos_token_id");
  if (it == j.end() || it->is_null()) return;
  if (!it->is_number_integer()) fail("config: bos_token_id must be an integer");
  const bool too_big =
      it->is_number_unsigned() ? it->get<uint64_t>() > INT32_MAX : it->get<int64_t>() > INT32_MAX;
  if (too_big || (!it->is_number_unsigned() && it->get<int64_t>() < -1))
    fail("config: bos_token_id ", it->dump(), " is out of range");
  *out = static_cast<int32_t>(it->get<int64_t>());
}

// eos_token_id may be an int or a list of ints.
void read_eos(const json& j, std::vector<int32_t>* out) {
  auto it = j.find("eos_token_id");
  if (it == j.end() || it->is_null()) return;
  out->clear();
  auto add = [&](const json& v) {
    // A uint64 above INT64_MAX reads as a negative int64: rejected as well.
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX)
      fail("config: bad eos_token_id ", v.dump());
    out->push_back(static_cast<int32_t>(v.get<int64_t>()));
  };
  if (it->is_array()) {
    for (const auto& v : *it) add(v);
  } else {
    add(*it);
  }
}

// YaRN's parameters as transformers reads them (Qwen2.5 documents `{"type": "yarn", "factor":
// 4.0, "original_max_position_embeddings": 32768}`). The original context defaults to the
// config's top-level original_max_position_embeddings, else max_position_embeddings.
void read_yarn(const json& j, const json& r, ModelConfig* c) {
  c->rope_scaling = RopeScaling::kYarn;
  if (!r.contains("factor") || !r["factor"].is_number())
    fail("config.json: yarn rope_scaling needs a numeric factor");
  int64_t orig = get_int(j, "max_position_embeddings", 0, false);
  orig = get_int(j, "original_max_position_embeddings", orig, false);
  c->rope_original_max_pos = get_int(r, "original_max_position_embeddings", orig, false);
  c->rope_beta_fast = static_cast<float>(get_num(r, "beta_fast", 32.0));
  c->rope_beta_slow = static_cast<float>(get_num(r, "beta_slow", 1.0));
  if (r.contains("truncate") && r["truncate"].is_boolean()) c->rope_truncate = r["truncate"].get<bool>();
  const double factor = c->rope_factor;
  auto mscale = [&](double m) { return factor <= 1.0 ? 1.0 : 0.1 * m * std::log(factor) + 1.0; };
  double attn = mscale(1.0);
  const double m = get_num(r, "mscale", 0.0), m_all = get_num(r, "mscale_all_dim", 0.0);
  if (m != 0.0 && m_all != 0.0) attn = mscale(m) / mscale(m_all);
  c->rope_attention_factor = static_cast<float>(get_num(r, "attention_factor", attn));
}

// Transformers 4 writes "rope_scaling" (theta at top level); transformers 5 writes
// "rope_parameters" holding rope_theta too.
void read_rope_scaling(const json& j, ModelConfig* c) {
  auto it = j.find("rope_scaling");
  if (it == j.end() || it->is_null()) it = j.find("rope_parameters");
  if (it == j.end() || it->is_null()) return;
  if (!it->is_object()) fail("config.json: rope_scaling must be an object");
  if (it->contains("rope_theta"))
    c->rope_theta = static_cast<float>(get_num(*it, "rope_theta", c->rope_theta));
  std::string type;
  if (it->contains("rope_type") && (*it)["rope_type"].is_string())
    type = (*it)["rope_type"].get<std::string>();
  else if (it->contains("type") && (*it)["type"].is_string())
    type = (*it)["type"].get<std::string>();
  c->rope_factor = static_cast<float>(get_num(*it, "factor", 1.0));
  if (type == "default" || type.empty()) {
    c->rope_scaling = RopeScaling::kNone;
  } else if (type == "linear") {
    c->rope_scaling = RopeScaling::kLinear;
  } else if (type == "llama3") {
    c->rope_scaling = RopeScaling::kLlama3;
    c->rope_low_freq_factor = static_cast<float>(get_num(*it, "low_freq_factor", 1.0));
    c->rope_high_freq_factor = static_cast<float>(get_num(*it, "high_freq_factor", 4.0));
    c->rope_original_max_pos = get_int(*it, "original_max_position_embeddings", 8192, true);
  } else if (type == "yarn") {
    read_yarn(j, *it, c);
  } else {
    fail("config.json: unsupported rope_scaling type \"", type, "\"");
  }
}

// layer_types (transformers 5 writes it): which layers are "sliding_attention". False, with
// every layer_sliding flag cleared, when the config has none.
bool read_layer_types(const json& j, ModelConfig* c) {
  c->layer_sliding.assign(static_cast<size_t>(std::max<int64_t>(c->n_layers, 0)), false);
  auto types = j.find("layer_types");
  if (types == j.end() || !types->is_array()) return false;
  if (static_cast<int64_t>(types->size()) != c->n_layers)
    fail("config.json: layer_types has ", types->size(), " entries for ", c->n_layers, " layers");
  for (size_t i = 0; i < types->size(); ++i) {
    const json& t = (*types)[i];
    if (!t.is_string()) fail("config.json: layer_types must hold strings");
    c->layer_sliding[i] = t.get<std::string>() == "sliding_attention";
  }
  return true;
}

// Sliding-window attention of the Llama-family layouts: Mistral's sliding_window covers every
// layer; Qwen2 / Qwen3 with use_sliding_window the layers from max_window_layers on (or those
// layer_types names), as transformers builds them.
void read_sliding_window(const json& j, ModelConfig* c) {
  const bool mistral = c->hf_architecture == "MistralForCausalLM";
  const bool qwen = get_bool(j, "use_sliding_window", false);
  const int64_t window = get_int(j, "sliding_window", 0, false);
  if ((!mistral && !qwen) || window <= 0) return;
  c->sliding_window = window;
  if (read_layer_types(j, c)) return;
  const int64_t from = qwen ? get_int(j, "max_window_layers", 0, false) : 0;
  for (int64_t i = std::max<int64_t>(from, 0); i < c->n_layers; ++i)
    c->layer_sliding[static_cast<size_t>(i)] = true;
}

// Gemma 3 (text). Sliding layers from layer_types, else every layer but each sliding window
// pattern-th. RoPE: transformers 5 nests rope_parameters by layer type (full_attention,
// sliding_attention); published checkpoints give rope_theta + rope_scaling for the full layers
// and rope_local_base_freq for the sliding ones.
void read_gemma3(const json& j, ModelConfig* c) {
  c->qk_norm = c->post_norms = c->gelu = true;
  c->norm_weight_offset = 1.0f;
  c->embed_scale = std::sqrt(static_cast<float>(c->hidden_size));
  const std::string act = j.value("hidden_activation", std::string("gelu_pytorch_tanh"));
  if (act != "gelu_pytorch_tanh")
    fail("config.json: Gemma 3 hidden_activation \"", act, "\" is not supported");
  for (const char* key : {"final_logit_softcapping", "attn_logit_softcapping"})
    if (j.contains(key) && !j[key].is_null()) fail("config.json: ", key, " is not supported");
  if (get_bool(j, "use_bidirectional_attention", false))
    fail("config.json: bidirectional attention is not supported");
  c->query_pre_attn_scalar =
      static_cast<float>(get_num(j, "query_pre_attn_scalar", static_cast<double>(c->head_dim)));
  c->sliding_window = get_int(j, "sliding_window", 0, false);
  if (!read_layer_types(j, c)) {
    int64_t pattern = get_int(j, "_sliding_window_pattern", 6, false);
    pattern = get_int(j, "sliding_window_pattern", pattern, false);
    if (pattern <= 0) fail("config.json: sliding_window_pattern must be positive");
    for (int64_t i = 0; i < c->n_layers; ++i)
      c->layer_sliding[static_cast<size_t>(i)] = (i + 1) % pattern != 0;
  }
  if (c->sliding_window <= 0) {
    c->sliding_window = 0;
    c->layer_sliding.clear();
  }
  auto rp = j.find("rope_parameters");
  if (rp != j.end() && rp->is_object() && rp->contains("full_attention")) {
    json full = j;
    full.erase("rope_scaling");
    full["rope_parameters"] = (*rp)["full_attention"];
    read_rope_scaling(full, c);
    const json& local = (*rp).value("sliding_attention", json::object());
    if (!local.is_object() || local.value("rope_type", std::string("default")) != "default")
      fail("config.json: only default RoPE is supported on Gemma 3's sliding layers");
    c->rope_local_theta = static_cast<float>(get_num(local, "rope_theta", 10000.0));
  } else {
    read_rope_scaling(j, c);
    c->rope_local_theta = static_cast<float>(get_num(j, "rope_local_base_freq", 10000.0));
  }
}

// The MoE fields of config.json (Qwen3MoeForCausalLM, Qwen2MoeForCausalLM).
void read_moe(const json& j, ModelConfig* c) {
  // Published checkpoints say num_experts; transformers 5 writes num_local_experts.
  c->n_experts = j.contains("num_local_experts") ? get_int(j, "num_local_experts", 0, true)
                                                 : get_int(j, "num_experts", 0, true);
  c->n_experts_per_tok = get_int(j, "num_experts_per_tok", 0, true);
  c->moe_intermediate_size = get_int(j, "moe_intermediate_size", 0, true);
  c->norm_topk_prob = get_bool(j, "norm_topk_prob", false);
  c->decoder_sparse_step = get_int(j, "decoder_sparse_step", 1, false);
  c->shared_expert_intermediate_size = get_int(j, "shared_expert_intermediate_size", 0, false);
  auto it = j.find("mlp_only_layers");
  if (it == j.end() || it->is_null()) return;
  if (!it->is_array() || it->size() > 4096)
    fail("config.json: \"mlp_only_layers\" must be a list of layer indices");
  for (const json& v : *it) {
    if (!v.is_number_integer()) fail("config.json: \"mlp_only_layers\" must hold integers");
    c->mlp_only_layers.push_back(v.get<int64_t>());
  }
}

// gpt-oss (GptOssForCausalLM): every layer a MoE of num_local_experts experts of width
// intermediate_size, num_experts_per_tok per token weighted by the softmax of their router
// logits (the same as renormalizing the full softmax over the picks); sliding-window layers from
// layer_types (by default every even layer); q/k/v/o biases; sinks; the clamped SwiGLU.
void read_gpt_oss(const json& j, ModelConfig* c) {
  c->n_experts = get_int(j, "num_local_experts", 0, true);
  c->n_experts_per_tok = get_int(j, "num_experts_per_tok", 0, true);
  c->moe_intermediate_size = c->intermediate_size;
  c->norm_topk_prob = true;
  c->attn_sinks = true;
  c->swiglu_alpha = static_cast<float>(get_num(j, "swiglu_alpha", 1.702));
  c->swiglu_limit = static_cast<float>(get_num(j, "swiglu_limit", 7.0));
  if (!(c->swiglu_limit > 0.0f)) fail("config.json: swiglu_limit must be positive");
  c->sliding_window = get_int(j, "sliding_window", 0, false);
  if (!read_layer_types(j, c))
    for (int64_t i = 0; i < c->n_layers; ++i) c->layer_sliding[static_cast<size_t>(i)] = i % 2 == 0;
  if (c->sliding_window <= 0) {
    c->sliding_window = 0;
    c->layer_sliding.clear();
  }
}

bool is_moe_architecture(const std::string& name) {
  return name == "Qwen3MoeForCausalLM" || name == "Qwen2MoeForCausalLM";
}

Arch arch_from_hf(const std::string& name) {
  if (name == "LlamaForCausalLM" || name == "MistralForCausalLM") return Arch::kLlama;
  if (name == "Qwen2ForCausalLM" || name == "Qwen2MoeForCausalLM") return Arch::kQwen2;
  if (name == "Qwen3ForCausalLM" || name == "Qwen3MoeForCausalLM") return Arch::kQwen3;
  if (name == "Gemma3ForCausalLM") return Arch::kGemma3;
  if (name == "GptOssForCausalLM") return Arch::kGptOss;
  fail("unsupported architecture \"", name,
       "\" (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
       "Qwen2MoeForCausalLM, Qwen3MoeForCausalLM, Gemma3ForCausalLM, GptOssForCausalLM)");
}

// sentence-transformers checkpoints (Qwen3-Embedding, gte-Qwen2) name their pooling in the
// Pooling module's config.json (modules.json says where; "1_Pooling" by convention).
void read_pooling(const fs::path& dir, ModelConfig* c) {
  fs::path pool_dir = dir / "1_Pooling";
  if (fs::exists(dir / "modules.json")) {
    json m = read_json_file(dir / "modules.json", /*object=*/false);
    if (!m.is_array()) fail((dir / "modules.json").string(), ": expected a JSON array");
    for (const json& mod : m) {
      if (!mod.is_object() || !mod.contains("type") || !mod["type"].is_string() ||
          !mod["type"].get<std::string>().ends_with(".Pooling") || !mod.contains("path") ||
          !mod["path"].is_string())
        continue;
      const std::string rel = mod["path"].get<std::string>();
      if (rel.find("..") != std::string::npos || rel.starts_with("/"))
        fail((dir / "modules.json").string(), ": bad module path \"", rel, "\"");
      pool_dir = dir / rel;
    }
  }
  if (!fs::exists(pool_dir / "config.json")) return;
  json p = read_json_file(pool_dir / "config.json");
  if (!p.is_object()) fail((pool_dir / "config.json").string(), ": not a JSON object");
  c->pooling_declared = true;
  if (get_bool(p, "pooling_mode_lasttoken", false)) {
    c->pooling = Pooling::kLast;
  } else if (get_bool(p, "pooling_mode_cls_token", false)) {
    c->pooling = Pooling::kCls;
  } else if (get_bool(p, "pooling_mode_mean_tokens", false)) {
    c->pooling = Pooling::kMean;
  } else {
    for (const char* mode : {"max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens"})
      if (get_bool(p, (std::string("pooling_mode_") + mode).c_str(), false))
        c->pooling_unsupported = mode;
    if (c->pooling_unsupported.empty()) c->pooling_unsupported = "none";
  }
}

void read_generation_config(const fs::path& p, ModelConfig* c) {
  if (!fs::exists(p)) return;
  json g = read_json_file(p);
  read_bos(g, &c->bos_token_id);
  read_eos(g, &c->eos_token_ids);
  c->default_temperature = static_cast<float>(get_num(g, "temperature", -1.0));
  c->default_top_p = static_cast<float>(get_num(g, "top_p", -1.0));
  if (g.contains("top_k") && g["top_k"].is_number_integer()) {
    // A top_k at or beyond any vocabulary keeps every token: store it as 0 (off) rather than
    // letting a huge value wrap to a negative int.
    const bool big = g["top_k"].is_number_unsigned() ? g["top_k"].get<uint64_t>() > INT32_MAX
                                                     : g["top_k"].get<int64_t>() > INT32_MAX;
    const int64_t k = big ? 0 : g["top_k"].get<int64_t>();
    c->default_top_k = k < 0 ? -1 : static_cast<int>(k);
  }
}

}  // namespace

ModelConfig load_hf_config(const std::string& dir) {
  fs::path cfg_path = fs::path(dir) / "config.json";
  if (!fs::is_directory(dir)) fail(dir, ": not a model directory or .gguf file");
  if (!fs::exists(cfg_path)) fail(dir, ": no config.json in this directory");
  json j = read_json_file(cfg_path);
  ModelConfig c;
  auto archs = j.find("architectures");
  if (archs == j.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string())
    fail(cfg_path.string(), ": missing \"architectures\"");
  c.hf_architecture = (*archs)[0].get<std::string>();
  c.arch = arch_from_hf(c.hf_architecture);
  c.vocab_size = get_int(j, "vocab_size", 0, true);
  c.hidden_size = get_int(j, "hidden_size", 0, true);
  c.intermediate_size = get_int(j, "intermediate_size", 0, true);
  c.n_layers = get_int(j, "num_hidden_layers", 0, true);
  c.n_heads = get_int(j, "num_attention_heads", 0, true);
  c.n_kv_heads = get_int(j, "num_key_value_heads", c.n_heads, false);
  if (c.n_heads <= 0) fail("config.json: num_attention_heads must be positive");
  c.head_dim = get_int(j, "head_dim", c.hidden_size / c.n_heads, false);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", 4096, false);
  c.rms_norm_eps = static_cast<float>(get_num(j, "rms_norm_eps", 1e-6));
  c.rope_theta = static_cast<float>(get_num(j, "rope_theta", 10000.0));
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", false);
  if (c.arch != Arch::kGemma3 && c.arch != Arch::kGptOss) read_sliding_window(j, &c);
  c.attention_bias = c.arch == Arch::kQwen2 ||
                     get_bool(j, "attention_bias", c.arch == Arch::kGptOss);
  c.qk_norm = c.arch == Arch::kQwen3;
  if (is_moe_architecture(c.hf_architecture)) read_moe(j, &c);
  if (c.arch == Arch::kGptOss) read_gpt_oss(j, &c);
  if (c.arch == Arch::kGemma3) {
    read_gemma3(j, &c);
  } else {
    read_rope_scaling(j, &c);
  }
  read_bos(j, &c.bos_token_id);
  read_eos(j, &c.eos_token_ids);
  for (const char* qkey : {"quantization", "quantization_config"}) {
    auto q = j.find(qkey);
    if (q != j.end() && q->is_object() && q->value("quant_method", json()) == "mxfp4") {
      if (c.arch != Arch::kGptOss)
        fail("config.json: MXFP4 checkpoints are read for gpt-oss only");
      c.mxfp4_experts = true;
      continue;
    }
    if (q == j.end() || !q->is_object() || !q->contains("bits")) continue;
    if (q->contains("quant_method"))
      fail("config.json: quantization method \"", (*q)["quant_method"].dump(),
           "\" is not supported (MLX affine quantization is)");
    c.quant_bits = static_cast<int>(get_int(*q, "bits", 0, true));
    c.quant_group_size = static_cast<int>(get_int(*q, "group_size", 64, false));
    for (const auto& [path, v] : q->items()) {  // per-module settings mlx-lm wrote
      if (!v.is_object() || !v.contains("bits")) continue;
      c.quant_overrides.push_back(
          {path, static_cast<int>(get_int(v, "bits", 0, true)),
           static_cast<int>(get_int(v, "group_size", c.quant_group_size, false))});
    }
    break;
  }
  read_generation_config(fs::path(dir) / "generation_config.json", &c);
  read_pooling(fs::path(dir), &c);
  c.validate();
  return c;
}

}  // namespace jinx
