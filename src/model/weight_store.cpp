#include "model/weight_store.h"

#include <filesystem>
#include <map>
#include <regex>

#include "backend/cpu/dequant.h"
#include "core/check.h"
#include "loader/gguf.h"
#include "loader/safetensors.h"

namespace jinx {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Hugging Face tensor name -> GGUF tensor name (llama.cpp's naming). Gemma 3 names its norms
// differently: its post_attention_layernorm follows the attention, pre_feedforward_layernorm
// is what the others call post_attention_layernorm.
std::string hf_to_gguf(const std::string& hf, Arch arch) {
  static const std::pair<const char*, const char*> kGemma3[] = {
      {".post_attention_layernorm.", ".post_attention_norm."},
      {".pre_feedforward_layernorm.", ".ffn_norm."},
      {".post_feedforward_layernorm.", ".post_ffw_norm."},
  };
  if (arch == Arch::kGemma3) {
    static const std::regex kLayerRe(R"(model\.layers\.(\d+)(\..+\.)(weight|bias))");
    std::smatch m;
    if (std::regex_match(hf, m, kLayerRe))
      for (const auto& [from, to] : kGemma3)
        if (m[2] == from) return "blk." + m[1].str() + to + m[3].str();
  }
  // gpt-oss: the norm before the MoE is post_attention_norm, the router ffn_gate_inp.
  if (arch == Arch::kGptOss) {
    static const std::regex kLayerRe(R"(model\.layers\.(\d+)\.(post_attention_layernorm|mlp\.router)\.(weight|bias))");
    std::smatch m;
    if (std::regex_match(hf, m, kLayerRe))
      return "blk." + m[1].str() +
             (m[2] == "mlp.router" ? ".ffn_gate_inp." : ".post_attention_norm.") + m[3].str();
  }
  static const std::pair<const char*, const char*> kTop[] = {
      {"model.embed_tokens.", "token_embd."},
      {"model.norm.", "output_norm."},
      {"lm_head.", "output."},
  };
  for (const auto& [from, to] : kTop) {
    std::string f(from);
    if (hf.rfind(f, 0) == 0) return to + hf.substr(f.size());
  }
  static const std::pair<const char*, const char*> kLayer[] = {
      {"input_layernorm", "attn_norm"},
      {"post_attention_layernorm", "ffn_norm"},
      {"self_attn.q_proj", "attn_q"},
      {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},
      {"self_attn.o_proj", "attn_output"},
      {"self_attn.q_norm", "attn_q_norm"},
      {"self_attn.k_norm", "attn_k_norm"},
      {"mlp.gate_proj", "ffn_gate"},
      {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},
      // MoE (llama.cpp qwen2moe / qwen3moe); the experts themselves are 3-D tensors
      // (stacked_matrix).
      {"mlp.gate", "ffn_gate_inp"},
      {"mlp.shared_expert_gate", "ffn_gate_inp_shexp"},
      {"mlp.shared_expert.gate_proj", "ffn_gate_shexp"},
      {"mlp.shared_expert.up_proj", "ffn_up_shexp"},
      {"mlp.shared_expert.down_proj", "ffn_down_shexp"},
  };
  static const std::regex kRe(R"(model\.layers\.(\d+)\.(.+)\.(weight|bias))");
  std::smatch m;
  if (std::regex_match(hf, m, kRe)) {
    for (const auto& [from, to] : kLayer)
      if (m[2] == from) return "blk." + m[1].str() + "." + to + "." + m[3].str();
  }
  return hf;
}

WeightMatrix matrix_from_view(const TensorView& v, const std::string& name, int64_t rows,
                              int64_t cols) {
  // A single row may be stored 1-D (llama.cpp's ffn_gate_inp_shexp).
  const bool one_row = rows == 1 && v.shape.size() == 1 && v.shape[0] == cols;
  if (!one_row && (v.shape.size() != 2 || v.shape[0] != rows || v.shape[1] != cols))
    fail(name, ": expected shape [", rows, ", ", cols, "], file has ", v.shape_str());
  auto rb = bytes_for(v.dtype, cols);
  if (!rb || v.dtype == DType::I8 || v.dtype == DType::U8 || v.dtype == DType::I16 ||
      v.dtype == DType::I32 || v.dtype == DType::U32 || v.dtype == DType::I64 ||
      v.dtype == DType::F64)
    fail(name, ": unsupported weight type ", jinx::name(v.dtype));
  JINX_CHECK(*rb * static_cast<size_t>(rows) <= v.nbytes, name, ": tensor data too short");
  WeightMatrix w;
  w.dtype = v.dtype;
  w.data = v.data;
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = *rb;
  return w;
}

}  // namespace

WeightStore::~WeightStore() = default;

std::unique_ptr<WeightStore> WeightStore::open(const std::string& path) {
  if (!fs::exists(path)) fail(path, ": no such file or directory");
  std::unique_ptr<WeightStore> s(new WeightStore());
  s->path_ = path;
  if (fs::is_regular_file(path)) {
    if (!ends_with(path, ".gguf")) fail(path, ": not a .gguf file or a model directory");
    s->gguf_ = std::make_unique<GgufFile>(path);
    s->config_ = config_from_gguf(*s->gguf_);
  } else {
    s->config_ = load_hf_config(path);
    s->st_ = std::make_unique<SafetensorsSet>(SafetensorsSet::open_dir(path));
  }
  return s;
}

std::string WeightStore::file_name(const std::string& hf_name) const {
  return gguf_ ? hf_to_gguf(hf_name, config_.arch) : hf_name;
}

const TensorView* WeightStore::tensor(const std::string& name) const {
  const std::string n = file_name(name);
  return gguf_ ? gguf_->tensor(n) : st_->find(n);
}

bool WeightStore::has(const std::string& name) const {
  const std::string n = file_name(name);
  return gguf_ ? gguf_->tensor(n) != nullptr : st_->find(n) != nullptr;
}

WeightMatrix WeightStore::matrix(const std::string& prefix, int64_t rows, int64_t cols) const {
  const std::string name = file_name(prefix + ".weight");
  if (st_ && config_.quant_bits != 0 && st_->find(prefix + ".scales")) {
    const auto [bits, group] = config_.quant_of(prefix);
    auto w = mlx_weight(*st_, prefix, bits, group);
    JINX_CHECK(w.has_value(), prefix, ": not a valid MLX-quantized weight");
    if (w->rows != rows || w->cols != cols)
      fail(prefix, ": expected [", rows, ", ", cols, "], MLX weight is [", w->rows, ", ", w->cols,
           "]");
    return *w;
  }
  const TensorView* v = gguf_ ? gguf_->tensor(name) : st_->find(name);
  if (!v) fail(path_, ": missing tensor ", name);
  return matrix_from_view(*v, name, rows, cols);
}

WeightMatrix WeightStore::stacked_st_matrix(const std::string& prefix, int64_t index,
                                           int64_t count, int64_t rows, int64_t cols) const {
  JINX_CHECK(st_ != nullptr, "stacked_st_matrix: a safetensors checkpoint");
  JINX_CHECK(index >= 0 && index < count, "stacked_st_matrix: index ", index, " of ", count);
  const std::string name = prefix + ".weight";
  if (config_.quant_bits != 0 && st_->find(prefix + ".scales")) {
    const auto [bits, group] = config_.quant_of(prefix);
    auto w = mlx_weight(*st_, prefix, bits, group, index, count);
    JINX_CHECK(w.has_value(), prefix, ": not a valid MLX-quantized weight");
    if (w->rows != rows || w->cols != cols)
      fail(prefix, ": expected [", count, ", ", rows, ", ", cols, "], MLX weight is [", count, ", ",
           w->rows, ", ", w->cols, "]");
    return *w;
  }
  const TensorView* v = st_->find(name);
  if (!v) fail(path_, ": missing tensor ", name);
  if (v->shape.size() != 3 || v->shape[0] != count || v->shape[1] != rows || v->shape[2] != cols)
    fail(name, ": expected shape [", count, ", ", rows, ", ", cols, "], file has ", v->shape_str());
  auto rb = bytes_for(v->dtype, cols);
  if (!rb) fail(name, ": unsupported weight type ", jinx::name(v->dtype));
  const size_t bytes = *rb * static_cast<size_t>(rows);
  JINX_CHECK(bytes * static_cast<size_t>(count) <= v->nbytes, name, ": tensor data too short");
  TensorView one = *v;
  one.shape = {rows, cols};
  one.data = static_cast<const uint8_t*>(v->data) + bytes * static_cast<size_t>(index);
  one.nbytes = bytes;
  return matrix_from_view(one, name, rows, cols);
}

WeightMatrix WeightStore::stacked_matrix(const std::string& gguf_name, int64_t index, int64_t count,
                                         int64_t rows, int64_t cols) const {
  JINX_CHECK(gguf_ != nullptr, "stacked_matrix: only GGUF files stack matrices");
  JINX_CHECK(index >= 0 && index < count, "stacked_matrix: index ", index, " of ", count);
  const TensorView* v = gguf_->tensor(gguf_name);
  if (!v) fail(path_, ": missing tensor ", gguf_name);
  if (v->shape.size() != 3 || v->shape[0] != count || v->shape[1] != rows || v->shape[2] != cols)
    fail(gguf_name, ": expected shape [", count, ", ", rows, ", ", cols, "], file has ",
         v->shape_str());
  TensorView one = *v;
  one.shape = {rows, cols};
  auto rb = bytes_for(v->dtype, cols);
  if (!rb) fail(gguf_name, ": unsupported weight type ", jinx::name(v->dtype));
  const size_t bytes = *rb * static_cast<size_t>(rows);
  JINX_CHECK(bytes * static_cast<size_t>(count) <= v->nbytes, gguf_name, ": tensor data too short");
  one.data = static_cast<const uint8_t*>(v->data) + bytes * static_cast<size_t>(index);
  one.nbytes = bytes;
  return matrix_from_view(one, gguf_name, rows, cols);
}

std::vector<float> WeightStore::vector(const std::string& hf_name, int64_t n) const {
  const std::string name = file_name(hf_name);
  const TensorView* v = gguf_ ? gguf_->tensor(name) : st_->find(name);
  if (!v) fail(path_, ": missing tensor ", name);
  if (v->numel() != n) fail(name, ": expected ", n, " values, file has ", v->shape_str());
  if (v->dtype != DType::F32 && v->dtype != DType::F16 && v->dtype != DType::BF16)
    fail(name, ": expected a float tensor, got ", jinx::name(v->dtype));
  auto nb = bytes_for(v->dtype, n);
  JINX_CHECK(nb && *nb <= v->nbytes, name, ": tensor data too short");
  std::vector<float> out(static_cast<size_t>(n));
  cpu::dequantize_row(v->dtype, v->data, out.data(), n);
  return out;
}

std::string WeightStore::dtype_summary() const {
  std::map<std::string, int> counts;
  auto add = [&](const TensorView& v) { counts[std::string(name(v.dtype))]++; };
  if (gguf_) {
    for (const auto& t : gguf_->tensors()) add(t.view);
  } else {
    for (const auto& [n, v] : st_->tensors()) add(*v);
  }
  std::string s;
  for (const auto& [k, c] : counts) s += (s.empty() ? "" : ", ") + k + " x " + std::to_string(c);
  if (config_.quant_bits)
    s += str(" (MLX ", config_.quant_bits, "-bit, group ", config_.quant_group_size, ")");
  return s;
}

size_t WeightStore::total_bytes() const {
  size_t total = 0;
  if (gguf_) {
    for (const auto& t : gguf_->tensors()) total += t.view.nbytes;
  } else {
    for (const auto& [n, v] : st_->tensors()) total += v->nbytes;
  }
  return total;
}

}  // namespace jinx
