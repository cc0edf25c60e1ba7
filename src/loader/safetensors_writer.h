// Writes a safetensors file: an 8-byte little-endian header length, the JSON header, the data.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace jinx {

struct SafetensorsEntry {
  std::string name;
  DType dtype;                 // F32, F16 or BF16 (and the integer types)
  std::vector<int64_t> shape;
  // Fills `out` with the tensor's bytes (nbytes of them), called once, in file order: lets a
  // writer stream gigabytes without holding them all.
  std::function<void(uint8_t* out, size_t nbytes)> fill;
};

// Throws jinx::Error when the file cannot be written.
void write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& tensors);

}  // namespace jinx
