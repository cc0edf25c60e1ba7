// LoRA adapters in PEFT's format (adapter_config.json + adapter_model.safetensors) or llama.cpp's
// (a GGUF of general.type "adapter", as convert_lora_to_gguf.py writes it), applied unmerged: a
// projection's output gains B (A x), scaled by lora_alpha / r (rsLoRA: alpha / sqrt(r)), as
// peft's LoraLayer computes it. The base weights stay as they are (quantized or not), so one
// adapter works on any format of its base model.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>

#include "backend/cpu/dequant.h"
#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "core/log.h"
#include "loader/gguf.h"
#include "loader/safetensors.h"
#include "model/model.h"

namespace jinx {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr int64_t kMaxRank = 4096;

struct LoraConfig {
  int64_t rank = 0;
  double scale = 0;
  std::set<std::string> targets;  // q_proj, k_proj, ... (PEFT module names)
};

const char* const kProjections[] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                    "gate_proj", "up_proj", "down_proj"};

// The settings peft's LoraLayer would apply; anything that changes the computation beyond
// plain LoRA (DoRA, per-module ranks, trained biases, fully trained modules) is refused.
LoraConfig read_config(const fs::path& dir) {
  const fs::path p = dir / "adapter_config.json";
  std::ifstream in(p);
  if (!in) fail(p.string(), ": no such file (a LoRA adapter directory holds adapter_config.json "
                "and adapter_model.safetensors)");
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail(p.string(), ": not valid JSON (", e.what(), ")");
  }
  if (!j.is_object()) fail(p.string(), ": expected a JSON object");
  auto bad = [&](const std::string& why) { fail(p.string(), ": ", why); };
  if (j.contains("peft_type") && j["peft_type"] != "LORA")
    bad("peft_type " + j["peft_type"].dump() + " is not LORA");
  const json& r = j.value("r", json());
  if (!r.is_number_integer() || r.get<int64_t>() < 1 || r.get<int64_t>() > kMaxRank)
    bad("'r' must be an integer in [1, 4096]");
  const json& alpha = j.value("lora_alpha", json());
  if (!alpha.is_number() || !std::isfinite(alpha.get<double>())) bad("'lora_alpha' must be a number");
  auto is_on = [&](const char* key) {
    const json& v = j.value(key, json());
    return !v.is_null() && v != false && !(v.is_object() && v.empty()) &&
           !(v.is_array() && v.empty());
  };
  for (const char* key : {"use_dora", "fan_in_fan_out", "modules_to_save", "rank_pattern",
                          "alpha_pattern", "layers_to_transform", "lora_bias",
                          "trainable_token_indices", "layer_replication"})
    if (is_on(key)) bad(str("'", key, "' is not supported"));
  if (j.contains("bias") && j["bias"] != "none") bad("'bias' must be \"none\"");
  LoraConfig c;
  c.rank = r.get<int64_t>();
  const json& rs_field = j.value("use_rslora", json());
  if (!rs_field.is_null() && !rs_field.is_boolean()) bad("'use_rslora' must be true or false");
  const bool rs = rs_field == true;
  c.scale = alpha.get<double>() / (rs ? std::sqrt(static_cast<double>(c.rank)) : c.rank);
  const json& t = j.value("target_modules", json());
  if (t == "all-linear") {
    c.targets.insert(std::begin(kProjections), std::end(kProjections));
  } else if (t.is_array()) {
    for (const json& m : t) {
      if (!m.is_string()) bad("'target_modules' must hold strings");
      const std::string name = m.get<std::string>();
      if (std::find(std::begin(kProjections), std::end(kProjections), name) ==
          std::end(kProjections))
        bad("target module '" + name + "' is not supported (q_proj k_proj v_proj o_proj "
            "gate_proj up_proj down_proj)");
      c.targets.insert(name);
    }
  } else {
    bad("'target_modules' must be a list of module names or \"all-linear\"");
  }
  if (c.targets.empty()) bad("'target_modules' is empty");
  return c;
}

// A 2-D float tensor as fp32 values, its shape checked.
std::vector<float> read_matrix(const TensorView& v, const std::string& name, int64_t rows,
                               int64_t cols) {
  if (v.shape.size() != 2 || v.shape[0] != rows || v.shape[1] != cols)
    fail("LoRA tensor ", name, " has shape ", v.shape_str(), ", expected [", rows, ", ", cols, "]");
  if (v.dtype != DType::F32 && v.dtype != DType::F16 && v.dtype != DType::BF16 &&
      v.dtype != DType::Q8_0)
    fail("LoRA tensor ", name, ": expected F32, F16, BF16 or Q8_0, got ", jinx::name(v.dtype));
  if (v.dtype == DType::Q8_0 && cols % 32 != 0)
    fail("LoRA tensor ", name, ": Q8_0 rows of ", cols, " values (not a multiple of 32)");
  std::vector<float> out(static_cast<size_t>(rows * cols));
  cpu::dequantize_row(v.dtype, v.data, out.data(), rows * cols);
  return out;
}

// The module path PEFT saves a layer's projection under, for the base model's naming.
std::string module_key(const SafetensorsSet& st, int64_t layer, const std::string& proj) {
  const std::string part = (proj == "gate_proj" || proj == "up_proj" || proj == "down_proj")
                               ? "mlp." : "self_attn.";
  const std::string tail = str("layers.", layer, ".", part, proj);
  for (const char* prefix : {"base_model.model.model.", "base_model.model.model.language_model.",
                             "base_model.model.", "model."}) {
    const std::string key = prefix + tail;
    if (st.contains(key + ".lora_A.weight")) return key;
  }
  return "";
}

// llama.cpp's converter permutes a Llama checkpoint's q/k rows for its interleaved RoPE (per
// head: row s * hd/2 + i becomes row 2 i + s); an adapter made on the Hugging Face model needs
// its B rows moved the same way to update those rows, and a GGUF adapter on a Hugging Face
// base the other way (inverse).
std::vector<float> interleave_heads(const std::vector<float>& b, int64_t n_heads, int64_t hd,
                                    int64_t rank, bool inverse = false) {
  std::vector<float> out(b.size());
  for (int64_t h = 0; h < n_heads; ++h)
    for (int64_t s = 0; s < 2; ++s)
      for (int64_t i = 0; i < hd / 2; ++i) {
        size_t hf = static_cast<size_t>(((h * hd) + s * (hd / 2) + i) * rank);
        size_t gg = static_cast<size_t>(((h * hd) + 2 * i + s) * rank);
        if (inverse) std::swap(hf, gg);
        std::copy(&b[hf], &b[hf] + rank, &out[gg]);
      }
  return out;
}

// B [out, r] as stored for add_lora: [r, out] (its columns as rows), times the scale.
std::vector<float> scaled_transpose(const std::vector<float>& b, int64_t out, int64_t rank,
                                    double scale) {
  std::vector<float> bt(b.size());
  for (int64_t o = 0; o < out; ++o)
    for (int64_t j = 0; j < rank; ++j)
      bt[static_cast<size_t>(j * out + o)] =
          static_cast<float>(b[static_cast<size_t>(o * rank + j)] * scale);
  return bt;
}

// GGUF tensor names of the projections, in kProjections' order.
const char* const kGgufProjections[] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                        "ffn_gate", "ffn_up", "ffn_down"};

}  // namespace

void Model::load_lora(const std::string& path) {
  if (fs::is_regular_file(path)) return load_lora_gguf(path);
  const std::string& dir = path;
  const LoraConfig lc = read_config(dir);
  const fs::path file = fs::path(dir) / "adapter_model.safetensors";
  if (!fs::exists(file)) fail(file.string(), ": no such file (PEFT's .bin adapters are not read)");
  const SafetensorsSet st = SafetensorsSet::open_file(file.string());
  std::set<std::string> used;
  int64_t n_applied = 0;
  for (LayerWeights& L : w_.layers)  // room for this adapter in every projection
    for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      l->lora.resize(static_cast<size_t>(n_adapters_) + 1);
  for (int64_t li = 0; li < cfg_.n_layers; ++li) {
    LayerWeights& L = w_.layers[static_cast<size_t>(li)];
    Linear* lin[] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
    for (size_t k = 0; k < std::size(kProjections); ++k) {
      const std::string proj = kProjections[k];
      const std::string key = module_key(st, li, proj);
      if (key.empty()) continue;
      if (!lc.targets.count(proj))
        fail(file.string(), ": ", key, " is not among the config's target_modules");
      if (k >= 4 && cfg_.is_moe_layer(li))
        fail(file.string(), ": ", key, ": LoRA on a mixture-of-experts MLP is not supported");
      const TensorView* b = st.find(key + ".lora_B.weight");
      if (!b) fail(file.string(), ": ", key, ".lora_A.weight has no lora_B");
      Linear& l = *lin[k];
      LoraDelta& d = l.lora[static_cast<size_t>(n_adapters_)];
      d.rank = lc.rank;
      d.a = read_matrix(*st.find(key + ".lora_A.weight"), key + ".lora_A.weight", lc.rank,
                             l.w.cols);
      std::vector<float> bm = read_matrix(*b, key + ".lora_B.weight", l.w.rows, lc.rank);
      if (cfg_.rope_interleaved && (proj == "q_proj" || proj == "k_proj"))
        bm = interleave_heads(bm, proj == "q_proj" ? cfg_.n_heads : cfg_.n_kv_heads,
                              cfg_.head_dim, lc.rank);
      d.bt = scaled_transpose(bm, l.w.rows, lc.rank, lc.scale);
      used.insert(key + ".lora_A.weight");
      used.insert(key + ".lora_B.weight");
      ++n_applied;
    }
  }
  for (const auto& [name, view] : st)
    if (!used.count(name))
      fail(file.string(), ": tensor ", name, " is not a LoRA update of a layer projection this "
           "model has (embedding, head and extra modules are not supported)");
  if (n_applied == 0) fail(file.string(), ": no LoRA tensors found");
  ++n_adapters_;
  lora_summary_ += str(lora_summary_.empty() ? "" : "; ", "LoRA ", dir, ": rank ", lc.rank,
                       ", scale ", lc.scale, ", ", n_applied, " projections");
}

// llama.cpp's adapter GGUF: blk.N.<proj>.weight.lora_a [r, in] and .lora_b [out, r] (row-major
// shapes), scale adapter.lora.alpha / r (1 without alpha), q/k rows already in llama.cpp's
// interleaved order (moved back for a base read from safetensors).
void Model::load_lora_gguf(const std::string& path) {
  const GgufFile f(path);
  auto bad = [&](const std::string& why) { fail(path, ": ", why); };
  if (f.get_string("general.type").value_or("") != "adapter")
    bad("not a LoRA adapter (general.type is not \"adapter\")");
  if (f.get_string("adapter.type").value_or("") != "lora")
    bad("adapter.type is not \"lora\" (control vectors and other adapters are not supported)");
  const std::string arch = f.architecture();
  const std::string mine = arch_name(cfg_.arch);
  if (arch.rfind(mine, 0) != 0)
    bad(str("an adapter for \"", arch, "\" models, not for this ", mine, " model"));
  const double alpha = f.get_float("adapter.lora.alpha").value_or(0.0);
  if (!std::isfinite(alpha)) bad("adapter.lora.alpha is not a number");
  std::set<std::string> used;
  int64_t n_applied = 0, max_rank = 0;
  for (LayerWeights& L : w_.layers)
    for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      l->lora.resize(static_cast<size_t>(n_adapters_) + 1);
  for (int64_t li = 0; li < cfg_.n_layers; ++li) {
    LayerWeights& L = w_.layers[static_cast<size_t>(li)];
    Linear* lin[] = {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down};
    for (size_t k = 0; k < std::size(kGgufProjections); ++k) {
      const std::string key = str("blk.", li, ".", kGgufProjections[k], ".weight");
      const TensorView* a = f.tensor(key + ".lora_a");
      const TensorView* b = f.tensor(key + ".lora_b");
      if (!a && !b) continue;
      if (!a || !b) bad(str(key, " has only one of lora_a and lora_b"));
      if (k >= 4 && cfg_.is_moe_layer(li))
        bad(str(key, ": LoRA on a mixture-of-experts MLP is not supported"));
      Linear& l = *lin[k];
      if (a->shape.size() != 2 || a->shape[0] < 1 || a->shape[0] > kMaxRank)
        bad(str(key, ".lora_a has shape ", a->shape_str(), " (expected [rank <= 4096, ", l.w.cols, "])"));
      const int64_t rank = a->shape[0];
      LoraDelta& d = l.lora[static_cast<size_t>(n_adapters_)];
      d.rank = rank;
      d.a = read_matrix(*a, key + ".lora_a", rank, l.w.cols);
      std::vector<float> bm = read_matrix(*b, key + ".lora_b", l.w.rows, rank);
      if (!cfg_.rope_interleaved && cfg_.arch == Arch::kLlama && k < 2)
        bm = interleave_heads(bm, k == 0 ? cfg_.n_heads : cfg_.n_kv_heads, cfg_.head_dim, rank,
                              /*inverse=*/true);
      const double scale = alpha > 0 ? alpha / static_cast<double>(rank) : 1.0;
      d.bt = scaled_transpose(bm, l.w.rows, rank, scale);
      used.insert(key + ".lora_a");
      used.insert(key + ".lora_b");
      max_rank = std::max(max_rank, rank);
      ++n_applied;
    }
  }
  for (const GgufTensor& t : f.tensors())
    if (!used.count(t.name))
      bad(str("tensor ", t.name, " is not a LoRA update of a layer projection this model has "
              "(embedding, head and extra modules are not supported)"));
  if (n_applied == 0) bad("no LoRA tensors found");
  ++n_adapters_;
  lora_summary_ += str(lora_summary_.empty() ? "" : "; ", "LoRA ", path, ": rank ", max_rank,
                       ", alpha ", alpha, ", ", n_applied, " projections (GGUF)");
}

int32_t Model::add_adapter(const std::string& path) {
  if (comm_ && comm_->size() > 1) fail("a LoRA adapter does not run under tensor parallelism yet");
  if (default_adapter_ != 0)
    fail("adapters cannot be added to a model started with one adapter for every token (--lora)");
  const std::string summary = lora_summary_;
  try {
    load_lora(path);
  } catch (...) {  // drop the slot the failed load began to fill
    for (LayerWeights& L : w_.layers)
      for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
        if (static_cast<int32_t>(l->lora.size()) > n_adapters_)
          l->lora.resize(static_cast<size_t>(n_adapters_));
    lora_summary_ = summary;
    throw;
  }
  return n_adapters_;
}

void Model::remove_adapter(int32_t a) {
  if (a < 1 || a > n_adapters_) fail("LoRA adapter ", a, " is not loaded");
  for (LayerWeights& L : w_.layers)
    for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down})
      if (static_cast<int32_t>(l->lora.size()) >= a) l->lora[static_cast<size_t>(a - 1)] = {};
}

// Per token: r dot products with A's rows, then r axpys of B's columns (stored as rows, so no
// horizontal sums over a rank-long dot). A token's result does not depend on the others, and a
// decode step (a few tokens) runs on the calling thread: two small fork/joins per projection
// would cost more than the work.
void add_lora(const Linear& l, const float* x, int64_t n, float* y, ThreadPool& pool,
              std::span<const int32_t> adapters, int32_t fallback) {
  if (l.lora.empty() || n == 0 || (adapters.empty() && fallback == 0)) return;
  const int64_t in = l.w.cols, out = l.w.rows, n_ad = static_cast<int64_t>(l.lora.size());
  int64_t max_rank = 0;
  for (const LoraDelta& d : l.lora) max_rank = std::max(max_rank, d.rank);
  if (max_rank == 0) return;
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 17) / (max_rank * (in + out)));
  pool.parallel_for(n, grain, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<float> ax;  // no allocation per call: decode makes 7 per layer
    ax.resize(static_cast<size_t>(max_rank));
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t a = adapters.empty() ? fallback : adapters[static_cast<size_t>(t)];
      JINX_CHECK(a >= 0 && a <= n_ad, "token ", t, " names LoRA adapter ", a, " of ", n_ad);
      if (a == 0) continue;
      const LoraDelta& d = l.lora[static_cast<size_t>(a - 1)];
      for (int64_t j = 0; j < d.rank; ++j) ax[j] = cpu::dot_f32(&d.a[j * in], x + t * in, in);
      for (int64_t j = 0; j < d.rank; ++j)
        cpu::axpy_f32(ax[j], &d.bt[j * out], y + t * out, out);
    }
  });
}

}  // namespace jinx
