// A non-owning view of a tensor stored somewhere else (usually a memory-mapped file).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace jinx {

struct TensorView {
  DType dtype = DType::F32;
  std::vector<int64_t> shape;  // row-major: shape.back() is the contiguous dimension
  const void* data = nullptr;
  size_t nbytes = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }
  std::string shape_str() const;
};

}  // namespace jinx
