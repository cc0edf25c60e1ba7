// Where a model's tensors come from: a Hugging Face directory (safetensors, possibly
// MLX-quantized) or a GGUF file. Callers ask by Hugging Face name; GGUF names are translated.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "backend/weight.h"
#include "core/tensor.h"
#include "model/config.h"

namespace jinx {

class GgufFile;
class SafetensorsSet;

class WeightStore {
 public:
  // Opens a model directory or a .gguf file and reads its configuration.
  static std::unique_ptr<WeightStore> open(const std::string& path);
  ~WeightStore();

  const ModelConfig& config() const { return config_; }
  const std::string& path() const { return path_; }
  const GgufFile* gguf() const { return gguf_.get(); }
  bool is_gguf() const { return gguf_ != nullptr; }

  // A 2-D weight `<prefix>.weight` of shape [rows, cols] in its stored format (MLX-quantized
  // when the checkpoint is). Throws when missing or of another shape.
  WeightMatrix matrix(const std::string& prefix, int64_t rows, int64_t cols) const;
  // Matrix `index` of `count` stacked in the 3-D safetensors tensor `<prefix>.weight` (mlx-lm's
  // SwitchLinear: a MoE layer's experts, MLX-quantized or not), in place.
  WeightMatrix stacked_st_matrix(const std::string& prefix, int64_t index, int64_t count,
                                 int64_t rows, int64_t cols) const;
  // Matrix `index` of `count` stacked in one 3-D GGUF tensor `gguf_name` of shape
  // [count, rows, cols] (llama.cpp's MoE experts, e.g. blk.0.ffn_gate_exps.weight), in place.
  WeightMatrix stacked_matrix(const std::string& gguf_name, int64_t index, int64_t count,
                              int64_t rows, int64_t cols) const;
  bool has(const std::string& name) const;
  // The stored tensor of that (Hugging Face) name as the file holds it, or null.
  const TensorView* tensor(const std::string& name) const;
  // A 1-D tensor of n values, copied to fp32 (norm weights, biases: small).
  std::vector<float> vector(const std::string& name, int64_t n) const;
  // A short description of the storage formats in use, e.g. "Q4_1 x 120, F32 x 61".
  std::string dtype_summary() const;
  size_t total_bytes() const;

 private:
  WeightStore() = default;
  std::string file_name(const std::string& hf_name) const;

  std::string path_;
  ModelConfig config_;
  std::unique_ptr<GgufFile> gguf_;
  std::unique_ptr<SafetensorsSet> st_;
};

}  // namespace jinx
