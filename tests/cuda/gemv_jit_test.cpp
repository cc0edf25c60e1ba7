// The GEMV compiled at run time (backend/cuda/gemv_jit.h) against the precompiled one, through
// cuda::matmul, on a GPU: equal outputs for Qwen2-0.5B's shapes and random ones, every weight
// format, 1..8 tokens, each input transform; and inside a CUDA graph. Skipped, with the reason
// printed, without a GPU or without libnvrtc (nvrtc_test.cpp tests the compiler side anywhere).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "backend/cuda/gemv_jit.h"
#include "backend/cuda/nvrtc.h"
#include "backend/cuda/ops.h"
#include "core/check.h"
#include "core/half.h"
#include "../support/cuda_test_util.h"

namespace jinx {
namespace {

using test_support::Dev;
using test_support::randn;

using cuda::GemvJitShape;

#define SKIP_WITHOUT_NVRTC()         \
  if (!cuda::jit::nvrtc_available()) \
  GTEST_SKIP() << "libnvrtc not loadable: " << cuda::jit::nvrtc_unavailable_reason()

// A random device matrix in format dt (layouts of ops.h's DeviceMatrix).
struct GpuWeight {
  std::vector<uint8_t> quants;
  std::vector<uint8_t> scales;  // f16 or fp32 bytes
  std::vector<float> offsets;
  std::unique_ptr<Dev<uint8_t>> dq, ds;
  std::unique_ptr<Dev<float>> doff;
  cuda::DeviceMatrix dm;
  GpuWeight(DType dt, int64_t rows, int64_t cols, std::mt19937& rng) {
    const int64_t nb = rows * cols / 32;
    std::uniform_int_distribution<int> byte(0, 255);
    std::uniform_real_distribution<float> sc(0.001f, 0.02f);
    if (dt == DType::BF16) {
      for (float v : randn(rows * cols, rng, 0.05f)) {
        const uint16_t h = f32_to_bf16(v);
        quants.push_back(static_cast<uint8_t>(h));
        quants.push_back(static_cast<uint8_t>(h >> 8));
      }
    } else {
      quants.resize(dt == DType::Q8_0 ? rows * cols : rows * cols / 2);
      for (auto& b : quants) b = static_cast<uint8_t>(byte(rng));
      for (int64_t i = 0; i < nb; ++i) {
        if (dt == cuda::kQ4A) {
          const float s = sc(rng);
          const uint8_t* p = reinterpret_cast<const uint8_t*>(&s);
          scales.insert(scales.end(), p, p + 4);
          offsets.push_back(-8.0f * s + sc(rng));
        } else {
          const uint16_t h = f32_to_f16(sc(rng));
          scales.push_back(static_cast<uint8_t>(h));
          scales.push_back(static_cast<uint8_t>(h >> 8));
        }
      }
    }
    dq = std::make_unique<Dev<uint8_t>>(quants);
    dm.dtype = dt;
    dm.data = dq->p;
    dm.rows = rows;
    dm.cols = cols;
    dm.row_bytes = quants.size() / rows;
    if (!scales.empty()) {
      ds = std::make_unique<Dev<uint8_t>>(scales);
      dm.scales = ds->p;
    }
    if (!offsets.empty()) {
      doff = std::make_unique<Dev<float>>(offsets);
      dm.offsets = doff->p;
    }
  }
  GemvJitShape shape() const {
    const int w = dm.dtype == DType::BF16   ? 0
                  : dm.dtype == DType::Q8_0 ? 1
                  : dm.dtype == DType::Q4_0 ? 2
                                            : 3;
    return {w, dm.rows, dm.cols, static_cast<int64_t>(dm.row_bytes), dm.rows < 8192 ? 4 : 1};
  }
};

// The JIT switch as it was before the test.
struct RestoreJit {
  bool was = cuda::gemv_jit_enabled();
  ~RestoreJit() { cuda::gemv_jit_enable(was); }
};

double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0, e = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(double(b[i])));
    e = std::max(e, std::fabs(double(a[i]) - b[i]));
  }
  return e / std::max(1e-30, m);
}

TEST(GemvJit, MatchesThePrecompiledKernel) {
  SKIP_WITHOUT_GPU();
  SKIP_WITHOUT_NVRTC();
  RestoreJit restore;
  std::mt19937 rng(8);
  struct Case {
    DType dt;
    int64_t rows, cols;
  };
  std::vector<Case> cases = {
      {DType::BF16, 896, 896},  {DType::BF16, 4864, 896}, {DType::BF16, 896, 4864},
      {DType::BF16, 1152, 896}, {DType::BF16, 9728, 896}, {DType::Q8_0, 896, 4864},
      {DType::Q4_0, 4864, 896}, {cuda::kQ4A, 896, 896},   {cuda::kQ4A, 9728, 896}};
  std::uniform_int_distribution<int64_t> rows(1, 3000), blocks(1, 160);
  for (int i = 0; i < 4; ++i) cases.push_back({DType::BF16, rows(rng), 32 * blocks(rng)});
  using In = cuda::MatmulInput;
  int identical = 0, total = 0;
  for (const Case& c : cases) {
    GpuWeight w(c.dt, c.rows, c.cols, rng);
    const std::string what = cuda::gemv_jit_program_name(w.shape());
    cuda::gemv_jit_enable(true);
    cuda::matmul_prepare(w.dm);
    ASSERT_NE(cuda::gemv_jit_kernels(w.shape(), false), nullptr) << what;
    const bool gated = c.rows % 2 == 0;  // also as [gate; up] with SiLU x up in the epilogue
    if (gated) {
      GemvJitShape gs = w.shape();
      gs.gated = true;
      cuda::matmul_prepare(w.dm, true);
      ASSERT_NE(cuda::gemv_jit_kernels(gs, false), nullptr) << what << " gated";
    }
    for (int64_t n = 1; n <= 8; ++n) {
      for (In::Kind kind : {In::kPlain, In::kRmsNorm, In::kSiluMul}) {
        const int64_t x_cols = kind == In::kSiluMul ? 2 * c.cols : c.cols;
        Dev<float> dx(randn(n * x_cols, rng)), dnorm(randn(c.cols, rng)), dbias(randn(c.rows, rng));
        Dev<float> tmp(std::vector<float>(n * c.cols));
        const std::vector<float> y0 = randn(n * (c.rows + 5), rng);
        In in;
        in.kind = kind;
        in.norm_w = dnorm.p;
        in.eps = 1e-6f;
        in.tmp = tmp.p;
        const bool acc = kind == In::kSiluMul;
        std::vector<float> out[2];
        for (int jit = 0; jit < 2; ++jit) {
          cuda::gemv_jit_enable(jit == 1);
          Dev<float> dy(y0);
          cuda::MatmulContext mc;  // no cuBLAS: the GEMV for every token count
          cuda::matmul(w.dm, dx.p, n, dy.p, c.rows + 5, mc, kind == In::kPlain ? dbias.p : nullptr,
                       in, acc);
          out[jit] = dy.get();
        }
        ++total;
        identical += out[0] == out[1];
        EXPECT_LE(rel_err(out[1], out[0]), 1e-6) << what << " n=" << n << " input " << kind;
        if (!gated || kind == In::kSiluMul) continue;
        for (int jit = 0; jit < 2; ++jit) {
          cuda::gemv_jit_enable(jit == 1);
          Dev<float> dy(y0);
          cuda::MatmulContext mc;
          cuda::matmul_gated_silu(w.dm, dx.p, n, dy.p, c.rows / 2 + 5, mc, dbias.p, in);
          out[jit] = dy.get();
        }
        ++total;
        identical += out[0] == out[1];
        EXPECT_LE(rel_err(out[1], out[0]), 1e-6) << what << " gated n=" << n << " input " << kind;
      }
    }
  }
  std::printf("[ gemv jit ] %d of %d outputs bit-identical to the precompiled kernel's\n",
              identical, total);
}

// A JIT kernel launches into a CUDA graph like the precompiled ones; a shape not prepared
// before the capture falls back to the precompiled kernel (nothing is compiled during one).
TEST(GemvJit, RunsInsideACudaGraph) {
  SKIP_WITHOUT_GPU();
  SKIP_WITHOUT_NVRTC();
  RestoreJit restore;
  std::mt19937 rng(9);
  GpuWeight prepared(DType::BF16, 896, 896, rng), unprepared(DType::BF16, 768, 640, rng);
  cudaStream_t s = nullptr;
  cuda::check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "stream");
  cuda::gemv_jit_enable(true);
  cuda::matmul_prepare(prepared.dm);
  for (GpuWeight* w : {&prepared, &unprepared}) {
    Dev<float> dx(randn(w->dm.cols, rng));
    Dev<float> eager(std::vector<float>(w->dm.rows)), replayed(std::vector<float>(w->dm.rows));
    cuda::MatmulContext mc;
    mc.stream = s;
    cuda::gemv_jit_enable(false);
    cuda::matmul(w->dm, dx.p, 1, eager.p, w->dm.rows, mc);
    cuda::gemv_jit_enable(true);
    cudaGraph_t g = nullptr;
    cudaGraphExec_t exec = nullptr;
    cuda::check(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), "begin capture");
    cuda::matmul(w->dm, dx.p, 1, replayed.p, w->dm.rows, mc);
    cuda::check(cudaStreamEndCapture(s, &g), "end capture");
    cuda::check(cudaGraphInstantiate(&exec, g, 0), "instantiate");
    cuda::check(cudaGraphLaunch(exec, s), "graph launch");
    cuda::check(cudaStreamSynchronize(s), "sync");
    EXPECT_LE(rel_err(replayed.get(), eager.get()), 1e-6) << w->dm.rows << "x" << w->dm.cols;
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(g);
  }
  EXPECT_NE(cuda::gemv_jit_kernels(prepared.shape(), false), nullptr);
  EXPECT_EQ(cuda::gemv_jit_kernels(unprepared.shape(), false), nullptr);
  cudaStreamDestroy(s);
}

}  // namespace
}  // namespace jinx
