// safetensors reader: one file (SafetensorsFile) or a model directory, single or sharded
// (SafetensorsSet), plus helpers that turn MLX-quantized and dense tensors into WeightMatrix.
//
// Format: u64 little-endian header length N, N bytes of JSON, then the data section. The JSON
// maps tensor names to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the
// data section) and may hold "__metadata__", a string -> string map. Every field is validated
// before use; tensors are exposed as zero-copy TensorViews into the memory map. Tensor data is
// not guaranteed to be aligned to its element size (the format does not promise it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "backend/weight.h"  // plain struct, header only: no link dependency on jinx_backend
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace jinx {

// Limits on what a header may declare; larger values are rejected as corrupt.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull * 1000 * 1000;
inline constexpr size_t kSafetensorsMaxDims = 8;

struct SafetensorsTensor {
  std::string name;
  TensorView view;
  size_t offset = 0;  // byte offset of the tensor inside the data section
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Throws jinx::Error naming the file (and the tensor) on any
  // malformed or inconsistent header.
  explicit SafetensorsFile(const std::string& path);
  SafetensorsFile(SafetensorsFile&&) noexcept = default;
  SafetensorsFile& operator=(SafetensorsFile&&) noexcept = default;

  const std::string& path() const { return file_->path(); }
  // nullptr when absent.
  const TensorView* find(std::string_view name) const;
  // All tensors, in the order of their data offsets.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  size_t header_bytes() const { return header_bytes_; }  // N, the JSON length
  size_t data_bytes() const { return data_bytes_; }      // size of the data section
  size_t file_bytes() const { return file_->size(); }

 private:
  void parse();

  std::unique_ptr<MappedFile> file_;  // owned by pointer so views survive moves
  std::vector<SafetensorsTensor> tensors_;
  std::map<std::string, size_t, std::less<>> index_;  // name -> position in tensors_
  std::map<std::string, std::string> metadata_;
  size_t header_bytes_ = 0;
  size_t data_bytes_ = 0;
};

class SafetensorsSet {
 public:
  using TensorMap = std::map<std::string, const TensorView*, std::less<>>;

  // Opens `dir`/model.safetensors when present, otherwise the shards listed in
  // `dir`/model.safetensors.index.json ("weight_map": tensor name -> shard file name).
  static SafetensorsSet open_dir(const std::string& dir);
  // One file, as a set of one shard.
  static SafetensorsSet open_file(const std::string& path);

  // nullptr when absent.
  const TensorView* find(std::string_view name) const;
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  // All (name, view) pairs of all shards, sorted by name.
  const TensorMap& tensors() const { return tensors_; }
  TensorMap::const_iterator begin() const { return tensors_.begin(); }
  TensorMap::const_iterator end() const { return tensors_.end(); }
  size_t size() const { return tensors_.size(); }
  // Sum of the byte sizes of all tensors.
  size_t total_bytes() const { return total_bytes_; }
  // Paths of the files opened, sorted by shard file name (model-00001-of-000NN first).
  std::vector<std::string> files() const;
  const std::vector<SafetensorsFile>& shards() const { return shards_; }

 private:
  void add_shard(SafetensorsFile file);

  std::vector<SafetensorsFile> shards_;
  TensorMap tensors_;  // views point into shards_ entries' own storage (stable across moves)
  size_t total_bytes_ = 0;
};

// MLX affine-quantized Linear/Embedding: when `<prefix>.scales` exists, validates
// `<prefix>.weight` (U32 [out, in * bits / 32]), `<prefix>.scales` and `<prefix>.biases`
// (same float dtype, [out, in / group_size]) and returns the packed matrix with cols = in.
// Returns nullopt when `<prefix>.scales` is absent (the weight is not MLX-quantized).
// Throws jinx::Error on any inconsistency.
// expert >= 0: the tensors are stacked, [n_experts, out, ...] (mlx-lm's SwitchLinear, a MoE
// layer's experts): expert `expert`'s matrix, as views into them.
std::optional<WeightMatrix> mlx_weight(const SafetensorsSet& set, std::string_view prefix, int bits,
                                       int group_size, int64_t expert = -1,
                                       int64_t n_experts = 0);

// A 2-D F32/F16/BF16 tensor as a dense WeightMatrix; nullopt for any other rank or dtype.
std::optional<WeightMatrix> dense_weight(const TensorView& view);

}  // namespace jinx
