// GGUF (v2 and v3, little-endian) reader: metadata and tensor infos over a memory-mapped file.
//
// Everything is parsed eagerly in the constructor and validated against the file size before any
// allocation or arithmetic (counts, string lengths, dims, offsets, overlaps, duplicates): a bad
// file throws jinx::Error("<path>: <reason>"), it never crashes.
//
// Zero-copy storage: strings (keys, string values, elements of string arrays) are
// std::string_view into the mapping; arrays of numbers are a pointer to their raw little-endian
// bytes in the mapping and are decoded on access; arrays of strings keep one string_view per
// element (16 bytes each: a 150k-token vocab costs ~2.4 MB and no string copies); arrays of arrays
// are vectors of GgufValue. All views live as long as the GgufFile that produced them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"

namespace jinx {

// GGUF metadata value types (gguf_type in the spec); the numbers are the on-disk tags.
enum class GgufType : uint32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};

std::string_view gguf_type_name(GgufType t);  // "u8", ..., "str", "arr"
bool gguf_type_is_int(GgufType t);            // U8..I64 (not Bool)
bool gguf_type_is_float(GgufType t);          // F32, F64
size_t gguf_type_size(GgufType t);            // bytes of a scalar type; 0 for String/Array

class GgufValue {
 public:
  GgufType type() const { return type_; }
  bool is_array() const { return type_ == GgufType::Array; }
  GgufType elem_type() const { return elem_type_; }  // arrays only
  size_t size() const { return count_; }             // array length; 0 for scalars

  // Scalars. nullopt when the value is not of a fitting type.
  // as_int: any integer type or bool (nullopt for a u64 above INT64_MAX).
  std::optional<int64_t> as_int() const;
  std::optional<uint64_t> as_uint() const;  // non-negative integers and bool
  // as_float: f32, f64 or any integer type.
  std::optional<double> as_float() const;
  std::optional<std::string_view> as_string() const;
  std::optional<bool> as_bool() const;

  // Element i of an array as a scalar (or nested array) value. Checks i < size().
  GgufValue at(size_t i) const;
  // Arrays of strings: the elements (empty for other types).
  const std::vector<std::string_view>& strings() const { return strings_; }
  // Arrays of arrays: the elements (empty for other types).
  const std::vector<GgufValue>& items() const { return items_; }

  // Short human-readable form for `jinx info`: "u32 32", "arr[str,49152] [\"a\", ...]".
  std::string describe(size_t max_items = 8) const;

 private:
  friend class GgufParser;
  GgufType type_ = GgufType::U8;
  GgufType elem_type_ = GgufType::U8;
  int64_t i_ = 0;   // signed integers, bool
  uint64_t u_ = 0;  // unsigned integers
  double f_ = 0;    // f32, f64
  std::string_view str_;
  const uint8_t* raw_ = nullptr;  // arrays of numbers: count_ elements, little-endian
  size_t count_ = 0;
  std::vector<std::string_view> strings_;
  std::vector<GgufValue> items_;
};

struct GgufKV {
  std::string_view key;
  GgufValue value;
};

struct GgufTensor {
  std::string name;
  uint32_t ggml_type = 0;
  std::vector<int64_t> ne;  // GGML order: ne[0] is the contiguous dimension
  uint64_t offset = 0;      // relative to the data section
  TensorView view;          // row-major shape (ne reversed), data points into the mapping
};

// GGML type name for a type id ("Q5_0"), or "type_<id>" when unknown.
std::string ggml_type_name(uint32_t ggml_type);
// The jinx DType for a GGML type id, or nullopt when jinx does not support it.
std::optional<DType> dtype_from_ggml(uint32_t ggml_type);

class GgufFile {
 public:
  // Maps and parses the file; throws jinx::Error("<path>: <reason>") on anything wrong.
  explicit GgufFile(const std::string& path);
  GgufFile(GgufFile&&) = default;
  GgufFile& operator=(GgufFile&&) = default;

  const std::string& path() const { return file_->path(); }
  int version() const { return version_; }
  size_t alignment() const { return alignment_; }
  size_t data_offset() const { return data_offset_; }  // file offset of the data section
  const MappedFile& file() const { return *file_; }

  // Metadata in file order.
  const std::vector<GgufKV>& metadata() const { return kvs_; }
  const GgufValue* find(std::string_view key) const;

  // Typed getters: nullopt (or empty) when the key is missing; jinx::Error naming the key when
  // it has a type that does not fit.
  std::optional<int64_t> get_int(std::string_view key) const;   // integers and bool
  std::optional<double> get_float(std::string_view key) const;  // f32, f64 and integers
  std::optional<std::string> get_string(std::string_view key) const;
  std::optional<bool> get_bool(std::string_view key) const;
  std::vector<std::string> get_string_array(std::string_view key) const;
  std::vector<float> get_float_array(std::string_view key) const;  // f32/f64/integer arrays
  std::vector<int64_t> get_int_array(std::string_view key) const;  // integer/bool arrays

  // general.architecture; throws when missing or not a string.
  std::string architecture() const;

  // Tensors in file order.
  const std::vector<GgufTensor>& tensors() const { return tensors_; }
  const GgufTensor* find_tensor(std::string_view name) const;
  const TensorView* tensor(std::string_view name) const;

 private:
  friend class GgufParser;
  std::unique_ptr<MappedFile> file_;
  int version_ = 0;
  size_t alignment_ = 32;
  size_t data_offset_ = 0;
  std::vector<GgufKV> kvs_;
  std::unordered_map<std::string_view, size_t> kv_index_;  // keys view the mapping
  std::vector<GgufTensor> tensors_;
  std::unordered_map<std::string_view, size_t> tensor_index_;  // names view the mapping
};

}  // namespace jinx
