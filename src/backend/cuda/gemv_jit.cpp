#include "backend/cuda/gemv_jit.h"

#include <cuda_runtime_api.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <map>
#include <mutex>
#include <tuple>

#include "backend/cuda/nvrtc.h"
#include "backend/cuda/ops.h"
#include "core/check.h"
#include "core/log.h"

namespace jinx::cuda {
namespace {

// backend/cuda/gemv.cuh, verbatim (embedded at configure time by src/CMakeLists.txt).
const char kGemvSource[] =
#include "gemv_cuh.inc"
    ;

constexpr int kMaxTokens = 8;  // kGemvMaxTokens of ops.h (matmul.cu checks)

const char* weight_name(int w) {
  static const char* kNames[] = {"bf16", "q8_0", "q4_0", "q4a"};
  return kNames[w];
}

void check_shape(const GemvJitShape& s) {
  JINX_CHECK(s.weight >= 0 && s.weight <= 3, "gemv jit: weight format ", s.weight);
  JINX_CHECK(s.rows > 0 && s.cols > 0 && s.cols % 32 == 0, "gemv jit: shape ", s.rows, "x", s.cols);
  const int64_t min_row = s.weight == 0 ? 2 * s.cols : s.weight == 1 ? s.cols : s.cols / 2;
  JINX_CHECK(s.row_bytes >= min_row && s.row_bytes % 16 == 0, "gemv jit: row_bytes ", s.row_bytes,
             " for ", s.cols, " columns");
  JINX_CHECK(s.wpr == 1 || s.wpr == 4, "gemv jit: warps per row ", s.wpr);
  JINX_CHECK(!s.gated || s.rows % 2 == 0, "gemv jit: gated rows ", s.rows, " are not [gate; up]");
}

struct Built {
  bool failed = false;
  GemvJitKernels kernels;
};

// Everything built in this process, by (device, shape): built once, loaded for good.
struct Registry {
  std::mutex mu;
  std::map<std::tuple<int, int, int64_t, int64_t, int64_t, int, bool>, Built> built;
  jit::KernelCache cache{jit::kernel_cache_dir_from_env()};
};
Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: kernels may launch until exit
  return *r;
}

GemvJitKernels load(const std::vector<uint8_t>& cubin) {
  cudaLibrary_t lib = nullptr;
  check(cudaLibraryLoadData(&lib, cubin.data(), nullptr, nullptr, 0, nullptr, nullptr, 0),
        "cudaLibraryLoadData (run-time compiled gemv)");
  GemvJitKernels k;
  for (int nt = 1; nt <= kMaxTokens; ++nt) {
    cudaKernel_t h = nullptr;
    check(cudaLibraryGetKernel(&h, lib, gemv_jit_kernel_name(nt).c_str()),
          "cudaLibraryGetKernel (run-time compiled gemv)");
    k.kernel[nt - 1] = reinterpret_cast<const void*>(h);
    // Loads it into the current context now (module loading may be lazy), so that nothing is
    // loaded during a graph capture and a kernel the device cannot run is found here.
    cudaFuncAttributes attr{};
    check(cudaFuncGetAttributes(&attr, k.kernel[nt - 1]), "run-time compiled gemv attributes");
  }
  return k;
}

}  // namespace

namespace {
std::atomic<bool>& jit_switch() {
  static std::atomic<bool> on{[] {
    const char* env = std::getenv("JINX_NVRTC");
    return !(env != nullptr && std::string(env) == "0");
  }()};
  return on;
}
}  // namespace

bool gemv_jit_enabled() {
  return jit_switch().load(std::memory_order_relaxed);
}
void gemv_jit_enable(bool on) {
  jit_switch().store(on);
}

std::string gemv_jit_kernel_name(int n_tokens) {
  return str("jinx_gemv_nt", n_tokens);
}

std::vector<std::string> gemv_jit_options() {
  // nvcc's defaults for the precompiled kernels (FMA contraction on, IEEE division and square
  // root, no flush to zero), spelled out so that both builds do the same arithmetic.
  return {"--std=c++17", "--fmad=true", "--prec-div=true", "--prec-sqrt=true", "--ftz=false"};
}

std::string gemv_jit_program_name(const GemvJitShape& s) {
  return str("jinx_gemv_", weight_name(s.weight), "_", s.rows, "x", s.cols, "_rb", s.row_bytes,
             "_wpr", s.wpr, s.gated ? "_gated" : "", ".cu");
}

std::string gemv_jit_source(const GemvJitShape& s) {
  check_shape(s);
  std::string src = kGemvSource;
  // The header is the main file here.
  if (const size_t p = src.find("#pragma once"); p != std::string::npos) src.erase(p, 12);
  src += str("\n// Run-time specialisation: ", gemv_jit_program_name(s), "\n",
             "using JinxShape = jinx::cuda::gemv::StaticShape<", s.rows, "ll, ", s.cols, "ll, ",
             s.row_bytes, "ll>;\n");
  for (int nt = 1; nt <= kMaxTokens; ++nt) {
    src += str("extern \"C\" __global__ void ", gemv_jit_kernel_name(nt),
               "(jinx::cuda::gemv::Matrix w, const float* x, float* y, long long ldy,\n"
               "    const float* bias, jinx::cuda::gemv::Io io) {\n"
               "  jinx::cuda::gemv::gemv_block<jinx::cuda::gemv::Weight(",
               s.weight, "), ", nt, ", ", s.wpr, ", ", s.gated ? "jinx::cuda::gemv::kGated" : "jinx::cuda::gemv::kOneRow", ", ",
               gemv_group(s.weight, s.cols, s.wpr), ">(JinxShape{}, w, x, y, ldy, bias, io);\n}\n");
  }
  return src;
}

std::string device_arch(int device) {
  int major = 0, minor = 0;
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
        "compute capability");
  check(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
        "compute capability");
  return str("sm_", major, minor, major == 9 && minor == 0 ? "a" : "");
}

const GemvJitKernels* gemv_jit_kernels(const GemvJitShape& s, bool build) {
  if (!jit::nvrtc_available()) return nullptr;  // logged once when first loaded
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return nullptr;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  const auto key = std::make_tuple(device, s.weight, s.rows, s.cols, s.row_bytes, s.wpr, s.gated);
  if (auto it = r.built.find(key); it != r.built.end())
    return it->second.failed ? nullptr : &it->second.kernels;
  if (!build) {
    static std::atomic<bool> logged{false};
    if (!logged.exchange(true))
      log_warn("run-time compiled gemv for ", gemv_jit_program_name(s),
               " was not built before a CUDA graph capture (matmul_prepare); the precompiled "
               "kernel runs in its place");
    return nullptr;
  }
  Built& b = r.built[key];
  try {
    const auto t0 = std::chrono::steady_clock::now();
    const jit::KernelCache::Stats before = r.cache.stats();
    const jit::Cubin cubin = r.cache.get(gemv_jit_source(s), gemv_jit_program_name(s),
                                         gemv_jit_options(), device_arch(device));
    b.kernels = load(*cubin);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    log_info("run-time compiled gemv ", gemv_jit_program_name(s), ": ",
             r.cache.stats().compiles > before.compiles ? "built" : "from the kernel cache", " in ",
             static_cast<int>(ms), " ms");
  } catch (const std::exception& e) {
    b.failed = true;
    cudaGetLastError();
    log_warn("run-time compiled gemv for ", gemv_jit_program_name(s), " failed (", e.what(),
             "); the precompiled kernel runs in its place");
    return nullptr;
  }
  return &b.kernels;
}

std::string gemv_jit_describe() {
  if (!gemv_jit_enabled()) return "";
  if (!jit::nvrtc_available())
    return "run-time compiled GEMVs unavailable (" + jit::nvrtc_unavailable_reason() + ")";
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mu);
  int built = 0, failed = 0;
  for (const auto& [key, b] : r.built) ++(b.failed ? failed : built);
  return str("run-time compiled GEMVs (NVRTC ", jit::nvrtc_version() / 1000, ".",
             jit::nvrtc_version() % 1000 / 10, "): ", built, " shapes built, ", failed, " failed");
}

}  // namespace jinx::cuda
