// GGUF v3 writer (little-endian, alignment 32): metadata key/values and tensors, streamed to
// disk one tensor at a time (a tensor's bytes are produced by a callback when it is written, so
// a multi-GB model never sits in memory whole).
//
// Every size is checked before it is written: key and string lengths, array counts, tensor
// shapes (positive, a whole number of blocks per row for block types), the byte count each
// callback must fill; duplicate keys or tensor names are refused. Errors throw jinx::Error.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/dtype.h"
#include "loader/gguf.h"

namespace jinx {

// The GGML type id of a jinx DType (F32 0, F16 1, Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8, Q2_K 10,
// Q3_K 11, Q4_K 12, Q5_K 13, Q6_K 14, IQ4_NL 20, IQ4_XS 23, MXFP4 39, BF16 30, I8 24, I16 25,
// I32 26, I64 27, F64 28); throws for a type GGUF cannot hold.
uint32_t ggml_type_of(DType t);

class GgufWriter {
 public:
  // Fills exactly `nbytes` bytes at `out` (the tensor's data, zeroed beforehand).
  using Fill = std::function<void(uint8_t* out, size_t nbytes)>;

  void add_u32(std::string_view key, uint32_t v);
  void add_i32(std::string_view key, int32_t v);
  void add_u64(std::string_view key, uint64_t v);
  void add_f32(std::string_view key, float v);
  void add_bool(std::string_view key, bool v);
  void add_string(std::string_view key, std::string_view v);
  void add_string_array(std::string_view key, const std::vector<std::string>& v);
  void add_i32_array(std::string_view key, const std::vector<int32_t>& v);
  void add_f32_array(std::string_view key, const std::vector<float>& v);
  // A value read from another GGUF, re-encoded (any type, nested arrays included).
  void add_value(std::string_view key, const GgufValue& v);
  bool has_key(std::string_view key) const { return keys_.count(std::string(key)) != 0; }

  // A tensor of row-major `shape` (1 to 4 dims; the last is contiguous, as GGML's ne[0]).
  void add_tensor(std::string name, DType dtype, std::vector<int64_t> shape, Fill fill);
  size_t n_tensors() const { return tensors_.size(); }

  // Writes the file (to path + ".tmp", renamed into place when complete). The callbacks run
  // here, in tensor order.
  void write(const std::string& path) const;

  static constexpr size_t kAlignment = 32;

 private:
  struct Tensor {
    std::string name;
    DType dtype;
    std::vector<int64_t> shape;
    size_t nbytes;
    size_t offset;  // in the data section
    Fill fill;
  };
  void begin_kv(std::string_view key, GgufType type);
  void put_string(std::string_view s);
  template <typename T>
  void put(T v);
  void put_value_body(const GgufValue& v);

  std::vector<uint8_t> kv_bytes_;  // encoded key/value pairs, in order
  uint64_t n_kv_ = 0;
  std::unordered_set<std::string> keys_;
  std::vector<Tensor> tensors_;
  std::unordered_set<std::string> names_;
  size_t data_bytes_ = 0;
};

}  // namespace jinx
