// ModelConfig from GGUF metadata (llama.cpp's key names: "<arch>.embedding_length", ...).
#include <algorithm>
#include <climits>
#include <cmath>
#include <optional>

#include "core/check.h"
#include "loader/gguf.h"
#include "model/config.h"

namespace jinx {

namespace {

int64_t need_int(const GgufFile& f, const std::string& key) {
  auto v = f.get_int(key);
  if (!v) fail(f.path(), ": missing GGUF key ", key);
  return *v;
}

// Gemma 3 as llama.cpp builds it: 5 of every 6 layers (il % 6 < 5) attend within the sliding
// window with RoPE base 10000, unscaled; the norms in the file already hold Gemma's 1 + w.
void read_gemma3(const GgufFile& f, const std::string& p, ModelConfig* c) {
  c->sliding_window = f.get_int(p + "attention.sliding_window").value_or(0);
  if (c->sliding_window < 0 || c->sliding_window > (int64_t{1} << 24))
    fail(f.path(), ": bad ", p, "attention.sliding_window");
  c->layer_sliding.assign(static_cast<size_t>(std::max<int64_t>(c->n_layers, 0)), false);
  for (int64_t i = 0; i < c->n_layers; ++i) c->layer_sliding[static_cast<size_t>(i)] = i % 6 < 5;
  c->rope_local_theta = 10000.0f;
  c->embed_scale = std::sqrt(static_cast<float>(c->hidden_size));
  if (f.get_float(p + "attn_logit_softcapping") || f.get_float(p + "final_logit_softcapping"))
    fail(f.path(), ": logit soft-capping (Gemma 2) is not supported");
}

// gpt-oss as llama.cpp builds it: every layer MoE, the experts weighted by the softmax of the
// picked router logits, SwiGLU clamped at 7 with alpha 1.702 (hard-coded there too), even
// layers within the sliding window (pattern 2).
void read_gpt_oss(const GgufFile& f, const std::string& p, ModelConfig* c) {
  c->n_experts = need_int(f, p + "expert_count");
  c->n_experts_per_tok = need_int(f, p + "expert_used_count");
  c->moe_intermediate_size = need_int(f, p + "expert_feed_forward_length");
  c->norm_topk_prob = true;
  c->swiglu_alpha = 1.702f;
  c->swiglu_limit = 7.0f;
  if (c->n_experts <= 0) fail(f.path(), ": ", p, "expert_count must be positive");
  c->sliding_window = need_int(f, p + "attention.sliding_window");
  if (c->sliding_window < 0 || c->sliding_window > (int64_t{1} << 24))
    fail(f.path(), ": bad ", p, "attention.sliding_window");
  c->layer_sliding.assign(static_cast<size_t>(std::max<int64_t>(c->n_layers, 0)), false);
  for (int64_t i = 0; i < c->n_layers; ++i) c->layer_sliding[static_cast<size_t>(i)] = i % 2 == 0;
  if (c->sliding_window == 0) c->layer_sliding.clear();
}

// gpt-oss ends a reply with <|return|> or a tool call with <|call|>; <|end|> only closes one
// message (the analysis before the final answer), so generation must go on past it. As
// llama.cpp decides for o200k_harmony vocabularies: when both <|return|> and <|call|> exist,
// they are the stop tokens and <|end|> is not one, whatever eos / eot ids the file names.
void harmony_stops(const GgufFile& f, ModelConfig* c) {
  const GgufValue* tokens = f.find("tokenizer.ggml.tokens");
  if (!tokens || !tokens->is_array()) return;
  int32_t ret = -1, call = -1, end = -1;
  const std::vector<std::string_view>& t = tokens->strings();
  for (size_t i = 0; i < t.size() && i <= INT32_MAX; ++i) {
    if (t[i] == "<|return|>") ret = static_cast<int32_t>(i);
    if (t[i] == "<|call|>") call = static_cast<int32_t>(i);
    if (t[i] == "<|end|>") end = static_cast<int32_t>(i);
  }
  if (ret < 0 || call < 0) return;
  std::vector<int32_t>& e = c->eos_token_ids;
  e.erase(std::remove(e.begin(), e.end(), end), e.end());
  for (int32_t id : {ret, call})
    if (std::find(e.begin(), e.end(), id) == e.end()) e.push_back(id);
}

}  // namespace

ModelConfig config_from_gguf(const GgufFile& f) {
  const std::string arch = f.get_string("general.architecture").value_or("");
  ModelConfig c;
  if (arch == "llama") {
    c.arch = Arch::kLlama;
    c.rope_interleaved = true;  // llama GGUFs permute Q/K rows (see ModelConfig)
  } else if (arch == "qwen2") {
    c.arch = Arch::kQwen2;
    c.attention_bias = true;
  } else if (arch == "qwen3" || arch == "qwen3moe") {
    c.arch = Arch::kQwen3;
    c.qk_norm = true;
  } else if (arch == "qwen2moe") {
    c.arch = Arch::kQwen2;
    c.attention_bias = true;
  } else if (arch == "gemma3") {
    c.arch = Arch::kGemma3;
    c.qk_norm = c.post_norms = c.gelu = true;
  } else if (arch == "gpt-oss") {
    c.arch = Arch::kGptOss;
    c.attention_bias = c.attn_sinks = true;
  } else {
    fail(f.path(), ": unsupported GGUF architecture \"", arch,
         "\" (supported: llama, qwen2, qwen3, qwen2moe, qwen3moe, gemma3, gpt-oss)");
  }
  c.hf_architecture = "gguf:" + arch;
  const std::string p = arch + ".";
  c.hidden_size = need_int(f, p + "embedding_length");
  c.intermediate_size = need_int(f, p + "feed_forward_length");
  c.n_layers = need_int(f, p + "block_count");
  c.n_heads = need_int(f, p + "attention.head_count");
  c.n_kv_heads = f.get_int(p + "attention.head_count_kv").value_or(c.n_heads);
  if (c.n_heads <= 0) fail(f.path(), ": bad attention.head_count");
  c.head_dim = f.get_int(p + "attention.key_length").value_or(c.hidden_size / c.n_heads);
  c.max_position_embeddings = f.get_int(p + "context_length").value_or(4096);
  c.rms_norm_eps =
      static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-6));
  c.rope_theta = static_cast<float>(f.get_float(p + "rope.freq_base").value_or(10000.0));
  if (auto rd = f.get_int(p + "rope.dimension_count"); rd && *rd != c.head_dim)
    fail(f.path(), ": partial rotary embeddings (rope.dimension_count ", *rd, " != head_dim ",
         c.head_dim, ") are not supported");
  const std::string scaling = f.get_string(p + "rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    c.rope_scaling = RopeScaling::kLinear;
    c.rope_factor = static_cast<float>(f.get_float(p + "rope.scaling.factor").value_or(1.0));
  } else if (scaling == "yarn") {
    // As llama.cpp runs it: ramp between the beta_fast / beta_slow correction dimensions of
    // the original context, magnitude attn_factor * (1 + 0.1 ln(factor)) on q and k.
    c.rope_scaling = RopeScaling::kYarn;
    c.rope_factor = static_cast<float>(f.get_float(p + "rope.scaling.factor").value_or(1.0));
    c.rope_original_max_pos =
        f.get_int(p + "rope.scaling.original_context_length").value_or(c.max_position_embeddings);
    c.rope_beta_fast =
        static_cast<float>(f.get_float(p + "rope.scaling.yarn_beta_fast").value_or(32.0));
    c.rope_beta_slow =
        static_cast<float>(f.get_float(p + "rope.scaling.yarn_beta_slow").value_or(1.0));
    if (f.get_float(p + "rope.scaling.yarn_ext_factor").value_or(1.0) != 1.0 ||
        f.get_float(p + "rope.scaling.yarn_log_multiplier").value_or(0.0) != 0.0)
      fail(f.path(), ": yarn ext_factor / log_multiplier other than the defaults are not supported");
    const double factor = c.rope_factor;
    c.rope_attention_factor = static_cast<float>(
        f.get_float(p + "rope.scaling.attn_factor").value_or(1.0) *
        (factor > 1.0 ? 1.0 + 0.1 * std::log(factor) : 1.0));
  } else if (scaling != "none") {
    fail(f.path(), ": unsupported rope scaling \"", scaling, "\"");
  }
  if (arch == "qwen2moe" || arch == "qwen3moe") {
    // Every layer is MoE (as llama.cpp builds these); qwen3moe renormalizes the picked
    // experts' weights, qwen2moe does not (llama.cpp hard-codes both), unless the file says.
    c.n_experts = need_int(f, p + "expert_count");
    c.n_experts_per_tok = need_int(f, p + "expert_used_count");
    c.moe_intermediate_size = need_int(f, p + "expert_feed_forward_length");
    c.shared_expert_intermediate_size =
        f.get_int(p + "expert_shared_feed_forward_length").value_or(0);
    c.norm_topk_prob = f.get_bool(p + "expert_weights_norm").value_or(arch == "qwen3moe");
    if (c.n_experts <= 0) fail(f.path(), ": ", p, "expert_count must be positive");
  }
  if (c.arch == Arch::kGemma3) read_gemma3(f, p, &c);
  if (c.arch == Arch::kGptOss) read_gpt_oss(f, p, &c);
  // llama.cpp's enum llama_pooling_type: 0 none, 1 mean, 2 cls, 3 last, 4 rank.
  if (const std::optional<int64_t> pt = f.get_int(p + "pooling_type")) {
    c.pooling_declared = true;
    if (*pt == 1) {
      c.pooling = Pooling::kMean;
    } else if (*pt == 2) {
      c.pooling = Pooling::kCls;
    } else if (*pt == 3) {
      c.pooling = Pooling::kLast;
    } else {
      c.pooling_unsupported = *pt == 0 ? "none" : *pt == 4 ? "rank" : str("type ", *pt);
    }
  }
  const TensorView* emb = f.tensor("token_embd.weight");
  if (!emb || emb->shape.size() != 2) fail(f.path(), ": missing token_embd.weight");
  c.vocab_size = f.get_int(p + "vocab_size").value_or(emb->shape[0]);
  c.tie_word_embeddings = f.tensor("output.weight") == nullptr;
  if (const TensorView* rf = f.tensor("rope_freqs.weight")) {
    if (rf->dtype != DType::F32 || rf->numel() != c.head_dim / 2)
      fail(f.path(), ": rope_freqs.weight must be F32 with head_dim/2 values");
    const float* d = static_cast<const float*>(rf->data);
    c.rope_freq_factors.assign(d, d + rf->numel());
  }
  // Special token ids: range-checked before the narrowing (validate() then checks the vocab).
  auto token_id = [&](const char* key) -> std::optional<int32_t> {
    const std::optional<int64_t> v = f.get_int(key);
    if (!v) return std::nullopt;
    if (*v < 0 || *v > INT32_MAX) fail(f.path(), ": ", key, " ", *v, " is not a token id");
    return static_cast<int32_t>(*v);
  };
  if (auto b = token_id("tokenizer.ggml.bos_token_id")) c.bos_token_id = *b;
  if (auto e = token_id("tokenizer.ggml.eos_token_id")) c.eos_token_ids.push_back(*e);
  if (auto e = token_id("tokenizer.ggml.eot_token_id");
      e && (c.eos_token_ids.empty() || c.eos_token_ids[0] != *e))
    c.eos_token_ids.push_back(*e);
  if (c.arch == Arch::kGptOss) harmony_stops(f, &c);
  c.validate();
  return c;
}

}  // namespace jinx
