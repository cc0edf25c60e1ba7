// What the CUDA tests share: the skip on a machine without a GPU, a device buffer that frees
// itself, random data.
#pragma once

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "backend/cuda/ops.h"

#define SKIP_WITHOUT_GPU() \
  if (::jinx::cuda::device_count() == 0) GTEST_SKIP() << "no CUDA GPU visible: skipped"

namespace jinx::test_support {

// count elements of device memory (uninitialised), or a copy of a host vector.
template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) {
    cuda::check(cudaMalloc(reinterpret_cast<void**>(&p), std::max<size_t>(1, n) * sizeof(T)),
                "test alloc");
  }
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) { put(h); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  ~Dev() { cudaFree(p); }
  void put(const std::vector<T>& h) {
    cuda::check(cudaMemcpy(p, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice), "put");
  }
  std::vector<T> get() const {
    std::vector<T> h(n);
    cuda::check(cudaDeviceSynchronize(), "sync");
    cuda::check(cudaMemcpy(h.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost), "get");
    return h;
  }
};

inline std::vector<float> randn(size_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace jinx::test_support
