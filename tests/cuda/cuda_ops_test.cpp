// Op parity: every CUDA kernel against its CPU twin (backend/cpu) or a plain reference, on random
// shapes. Skipped, with the reason printed, where no GPU is visible.
#include <gtest/gtest.h>
#include <cublas_v2.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "backend/cpu/attention.h"
#include "backend/cpu/kernels.h"
#include "backend/cpu/quantize.h"
#include "backend/cuda/gemv_jit.h"
#include "backend/cuda/blas_lt.h"
#include "backend/cuda/ops.h"
#include "backend/cuda/qgemm.h"
#include "backend/sample_select.h"
#include "core/check.h"
#include "core/half.h"
#include "core/quant_blocks.h"
#include "model/device_repack.h"
#include "../support/cuda_test_util.h"

namespace jinx {
namespace {

using test_support::Dev;
using test_support::randn;

// max |a - b| / max(1e-6, max |b|)
double rel_err(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0, e = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    m = std::max(m, std::fabs(double(b[i])));
    e = std::max(e, std::fabs(double(a[i]) - b[i]));
  }
  return e / std::max(1e-6, m);
}

// A random weight in both layouts: the CPU's (GGUF blocks / bf16 rows) and the device's.
struct TestWeight {
  std::vector<uint8_t> cpu_bytes;
  std::vector<uint8_t> dev_quants;
  std::vector<uint16_t> dev_scales;
  WeightMatrix cpu;
};

TestWeight make_weight(DType dt, int64_t rows, int64_t cols, std::mt19937& rng) {
  TestWeight w;
  std::uniform_int_distribution<int> q8(-127, 127), q4(0, 15);
  std::uniform_real_distribution<float> sc(0.001f, 0.02f);
  const int64_t nb = cols / 32;
  if (dt == DType::BF16) {
    auto v = randn(rows * cols, rng, 0.05f);
    w.cpu_bytes.resize(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
      const uint16_t h = f32_to_bf16(v[i]);
      std::memcpy(&w.cpu_bytes[i * 2], &h, 2);
    }
    w.dev_quants = w.cpu_bytes;
    w.cpu.row_bytes = cols * 2;
  } else {
    const size_t bb = dt == DType::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ4_0);
    const size_t qb = dt == DType::Q8_0 ? 32 : 16;
    w.cpu_bytes.resize(rows * nb * bb);
    w.dev_quants.resize(rows * nb * qb);
    w.dev_scales.resize(rows * nb);
    for (int64_t i = 0; i < rows * nb; ++i) {
      const uint16_t d = f32_to_f16(sc(rng));
      w.dev_scales[i] = d;
      std::memcpy(&w.cpu_bytes[i * bb], &d, 2);
      for (size_t j = 0; j < qb; ++j) {
        const uint8_t b = dt == DType::Q8_0 ? static_cast<uint8_t>(static_cast<int8_t>(q8(rng)))
                                            : static_cast<uint8_t>(q4(rng) | q4(rng) << 4);
        w.cpu_bytes[i * bb + 2 + j] = b;
        w.dev_quants[i * qb + j] = b;
      }
    }
    w.cpu.row_bytes = nb * bb;
  }
  w.cpu.dtype = dt;
  w.cpu.data = w.cpu_bytes.data();
  w.cpu.rows = rows;
  w.cpu.cols = cols;
  return w;
}

// A TestWeight on the device: its codes and scales, and the DeviceMatrix over them.
struct DevWeight {
  Dev<uint8_t> dq;
  Dev<uint16_t> ds;
  cuda::DeviceMatrix dm;
  DevWeight(const TestWeight& w, DType dt, int64_t rows, int64_t cols)
      : dq(w.dev_quants), ds(std::max<size_t>(1, w.dev_scales.size())) {
    if (!w.dev_scales.empty()) ds.put(w.dev_scales);
    dm = cuda::DeviceMatrix{dt, dq.p, w.dev_scales.empty() ? nullptr : ds.p, rows, cols,
                            static_cast<size_t>(dt == DType::BF16   ? cols * 2
                                                : dt == DType::Q8_0 ? cols
                                                                    : cols / 2)};
  }
};

// What the matmul parity tests share: a cuBLAS handle, two CPU threads and the CPU reference
// in exact fp32 activations (on the dequantized weights), undone when the test ends.
struct MatmulBench {
  cublasHandle_t blas = nullptr;
  ThreadPool pool{2};
  MatmulBench() {
    if (cublasCreate(&blas) != CUBLAS_STATUS_SUCCESS) blas = nullptr;
    cpu::set_exact_activations(true);
  }
  ~MatmulBench() {
    cpu::set_exact_activations(false);
    if (blas) cublasDestroy(blas);
  }
};

// cuda::matmul of dm (n tokens, with a bias, output rows padded by 3) against cpu::matmul of
// the same weights (cpu), x read `skew` floats past a 16-byte boundary. GEMV: fp32 throughout
// (1e-4); cuBLAS: activations (and expanded weights) rounded to bf16, 2^-9 relative (2e-2).
void expect_matmul_matches_cpu(const cuda::DeviceMatrix& dm, const WeightMatrix& cpu, int64_t n,
                               int64_t skew, std::mt19937& rng, cublasHandle_t blas,
                               ThreadPool& pool, const std::string& what) {
  const int64_t rows = dm.rows, cols = dm.cols;
  auto x = randn(n * cols + skew, rng);
  std::vector<float> ref(n * rows);
  cpu::matmul(cpu, x.data() + skew, n, ref.data(), rows, pool);
  auto bias = randn(rows, rng);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) ref[t * rows + r] += bias[r];
  Dev<float> dx(x), dy(n * (rows + 3)), db(bias);
  Dev<uint8_t> scratch(cuda::matmul_scratch_bytes(dm, n) + 1);
  cuda::MatmulContext mc{nullptr, blas, scratch.p, scratch.n};
  cuda::matmul(dm, dx.p + skew, n, dy.p, rows + 3, mc, db.p);
  auto y = dy.get();
  std::vector<float> got(n * rows);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) got[t * rows + r] = y[t * (rows + 3) + r];
  const double tol = cuda::matmul_uses_gemv(dm, n) ? 1e-4 : 2e-2;
  EXPECT_LE(rel_err(got, ref), tol) << what << " " << rows << "x" << cols << " n=" << n;
}

TEST(CudaOps, MatmulMatchesCpuForEveryFormatAndTokenCount) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(1);
  MatmulBench env;
  ASSERT_NE(env.blas, nullptr);
  cublasHandle_t blas = env.blas;
  ThreadPool& pool = env.pool;
  struct Shape { int64_t rows, cols; };
  for (DType dt : {DType::BF16, DType::Q8_0, DType::Q4_0}) {
    // Rows from 8192 up take one warp per row (groups of 4 chunks: 896 columns in one group,
    // 2080 in three, the last partial); fewer rows four warps per row.
    for (Shape sh : {Shape{37, 64}, Shape{256, 896}, Shape{129, 4864}, Shape{1000, 96},
                     Shape{8192, 896}, Shape{8200, 2080}}) {
      TestWeight w = make_weight(dt, sh.rows, sh.cols, rng);
      DevWeight dw(w, dt, sh.rows, sh.cols);
      const cuda::DeviceMatrix& dm = dw.dm;
      for (int64_t n : {1, 2, 5, 8, 9, 33, 65})
        expect_matmul_matches_cpu(dm, w.cpu, n, 0, rng, blas, pool, std::string(name(dt)));
    }
  }
}

// The A/B variant that gives a warp two adjacent rows (set_gemv_row_pairs; single-token,
// precompiled kernels only), odd row counts included, one and four warps per row.
TEST(CudaOps, RowPairGemvMatchesCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(13);
  MatmulBench env;
  ASSERT_NE(env.blas, nullptr);
  const bool jit_was = cuda::gemv_jit_enabled();
  cuda::gemv_jit_enable(false);
  cuda::set_gemv_row_pairs(true);
  struct Shape { int64_t rows, cols; };
  for (DType dt : {DType::BF16, DType::Q8_0, DType::Q4_0}) {
    for (Shape sh : {Shape{37, 64}, Shape{256, 896}, Shape{129, 4864}, Shape{8193, 896},
                     Shape{8200, 2080}}) {
      TestWeight w = make_weight(dt, sh.rows, sh.cols, rng);
      DevWeight dw(w, dt, sh.rows, sh.cols);
      const cuda::DeviceMatrix& dm = dw.dm;
      expect_matmul_matches_cpu(dm, w.cpu, 1, 0, rng, env.blas, env.pool,
                                std::string(name(dt)) + " row pairs");
    }
  }
  cuda::set_gemv_row_pairs(false);
  cuda::gemv_jit_enable(jit_was);
}

// The input transforms the decode GEMV applies while staging its input (RMSNorm; SiLU x up of
// gate|up rows), fused and not, and the accumulating epilogue (y += W x + bias), against the
// CPU reference: norm / SiLU in double, then cpu::matmul.
TEST(CudaOps, MatmulInputTransformsAndAccumulate) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(11);
  MatmulBench env;
  ASSERT_NE(env.blas, nullptr);
  cublasHandle_t blas = env.blas;
  ThreadPool& pool = env.pool;
  using In = cuda::MatmulInput;
  struct Case { DType dt; int64_t rows, cols; In::Kind kind; };
  const Case cases[] = {{DType::BF16, 256, 896, In::kRmsNorm},
                        {DType::Q8_0, 1152, 896, In::kRmsNorm},
                        {DType::Q4_0, 64, 3584, In::kRmsNorm},
                        {DType::BF16, 896, 4864, In::kSiluMul},
                        {DType::Q8_0, 300, 1024, In::kSiluMul}};
  for (const Case& c : cases) {
    TestWeight w = make_weight(c.dt, c.rows, c.cols, rng);
    DevWeight dw(w, c.dt, c.rows, c.cols);
    const cuda::DeviceMatrix& dm = dw.dm;
    auto norm_w = randn(c.cols, rng);
    Dev<float> dnorm(norm_w);
    for (int64_t n : {1, 2, 5, 8, 9}) {
      const int64_t x_ld = c.kind == In::kSiluMul ? 2 * c.cols : c.cols;
      auto x = randn(n * x_ld, rng, 2.0f);
      std::vector<float> in(n * c.cols);
      const float eps = 1e-6f;
      for (int64_t t = 0; t < n; ++t) {
        double ss = 0.0;
        for (int64_t i = 0; i < c.cols; ++i) ss += double(x[t * x_ld + i]) * x[t * x_ld + i];
        const double inv = 1.0 / std::sqrt(ss / c.cols + eps);
        for (int64_t i = 0; i < c.cols; ++i) {
          const double g = x[t * x_ld + i];
          in[t * c.cols + i] = static_cast<float>(
              c.kind == In::kRmsNorm ? g * inv * norm_w[i]
                                     : g / (1.0 + std::exp(-g)) * x[t * x_ld + c.cols + i]);
        }
      }
      std::vector<float> ref(n * c.rows);
      cpu::matmul(w.cpu, in.data(), n, ref.data(), c.rows, pool);
      auto bias = randn(c.rows, rng), y0 = randn(n * c.rows, rng);
      for (int64_t i = 0; i < n * c.rows; ++i) ref[i] += bias[i % c.rows] + y0[i];
      for (bool fuse : {true, false}) {
        Dev<float> dx(x), dy(y0), db(bias), tmp(n * c.cols);
        Dev<uint8_t> scratch(cuda::matmul_scratch_bytes(dm, n) + 1);
        cuda::MatmulContext mc{nullptr, blas, scratch.p, scratch.n};
        const In spec{c.kind, dnorm.p, eps, tmp.p, fuse};
        cuda::matmul(dm, dx.p, n, dy.p, c.rows, mc, db.p, spec, true);
        const bool fused = cuda::matmul_fuses_input(dm, spec, n);
        if (!fuse || n > cuda::kGemvMaxTokens) {
          EXPECT_FALSE(fused);
        } else if (n * c.cols * 4 <= 48 * 1024) {
          EXPECT_TRUE(fused);
        }
        const double tol = cuda::matmul_uses_gemv(dm, n) ? 2e-4 : 2e-2;
        EXPECT_LE(rel_err(dy.get(), ref), tol)
            << name(c.dt) << " " << c.rows << "x" << c.cols << " kind " << int(c.kind)
            << " n=" << n << " fused " << fused;
      }
    }
  }
}

// The gate/up GEMV with SiLU x up in its epilogue (cuda::matmul_gated_silu): [gate; up]
// stacked, one warp (or four) per output reading both rows, with a bias and the RMSNorm input
// fused or not, against the CPU: norm in double, cpu::matmul of the whole stack, then
// silu(g) * u in double.
TEST(CudaOps, GatedSiluMatmulMatchesCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(12);
  MatmulBench env;
  ASSERT_NE(env.blas, nullptr);
  using In = cuda::MatmulInput;
  struct Case { DType dt; int64_t ff, cols; };
  const Case cases[] = {{DType::BF16, 4864, 896},  // 9728 rows: one warp per output
                        {DType::BF16, 300, 4864},  // four warps per output
                        {DType::BF16, 4100, 2080},
                        {DType::Q8_0, 4096, 1024},
                        {DType::Q4_0, 200, 3584}};
  for (const Case& c : cases) {
    const int64_t rows = 2 * c.ff;
    TestWeight w = make_weight(c.dt, rows, c.cols, rng);
    DevWeight dw(w, c.dt, rows, c.cols);
    const cuda::DeviceMatrix& dm = dw.dm;
    EXPECT_FALSE(cuda::matmul_gates(dm, cuda::kGemvMaxTokens + 1));
    auto norm_w = randn(c.cols, rng);
    Dev<float> dnorm(norm_w);
    for (int64_t n : {1, 2, 5, 8}) {
      ASSERT_TRUE(cuda::matmul_gates(dm, n));
      auto x = randn(n * c.cols, rng, 2.0f);
      auto bias = randn(rows, rng);
      for (int mode = 0; mode < 3; ++mode) {  // plain input, norm fused, norm unfused
        const float eps = 1e-6f;
        std::vector<float> in = x;
        if (mode > 0) {
          for (int64_t t = 0; t < n; ++t) {
            double ss = 0.0;
            for (int64_t i = 0; i < c.cols; ++i) ss += double(x[t * c.cols + i]) * x[t * c.cols + i];
            const double inv = 1.0 / std::sqrt(ss / c.cols + eps);
            for (int64_t i = 0; i < c.cols; ++i)
              in[t * c.cols + i] = static_cast<float>(x[t * c.cols + i] * inv * norm_w[i]);
          }
        }
        std::vector<float> gu(n * rows), ref(n * c.ff);
        cpu::matmul(w.cpu, in.data(), n, gu.data(), rows, env.pool);
        for (int64_t t = 0; t < n; ++t)
          for (int64_t r = 0; r < c.ff; ++r) {
            const double g = double(gu[t * rows + r]) + bias[r];
            const double u = double(gu[t * rows + c.ff + r]) + bias[c.ff + r];
            ref[t * c.ff + r] = static_cast<float>(g / (1.0 + std::exp(-g)) * u);
          }
        // Output rows padded by 5 (ldy > ff); the padding must stay untouched.
        const int64_t ldy = c.ff + 5;
        std::vector<float> y0(n * ldy, 7.0f);
        Dev<float> dx(x), dy(y0), db(bias), tmp(n * c.cols);
        cuda::MatmulContext mc{nullptr, env.blas, nullptr, 0};
        const In spec = mode == 0 ? In{} : In{In::kRmsNorm, dnorm.p, eps, tmp.p, mode == 1};
        cuda::matmul_gated_silu(dm, dx.p, n, dy.p, ldy, mc, db.p, spec);
        const auto y = dy.get();
        std::vector<float> got(n * c.ff);
        for (int64_t t = 0; t < n; ++t) {
          for (int64_t r = 0; r < c.ff; ++r) got[t * c.ff + r] = y[t * ldy + r];
          for (int64_t r = c.ff; r < ldy; ++r) ASSERT_EQ(y[t * ldy + r], 7.0f);
        }
        EXPECT_LE(rel_err(got, ref), 2e-4)
            << name(c.dt) << " ff " << c.ff << " cols " << c.cols << " n=" << n << " mode " << mode;
      }
    }
  }
}

TEST(CudaOps, OddColumnsUseTheScalarPath) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(2);
  ThreadPool pool(1);
  TestWeight w = make_weight(DType::BF16, 19, 50, rng);
  Dev<uint8_t> dq(w.dev_quants);
  cuda::DeviceMatrix dm{DType::BF16, dq.p, nullptr, 19, 50, 100};
  auto x = randn(3 * 50, rng);
  std::vector<float> ref(3 * 19);
  cpu::matmul(w.cpu, x.data(), 3, ref.data(), 19, pool);
  Dev<float> dx(x), dy(3 * 19);
  cuda::matmul(dm, dx.p, 3, dy.p, 19, cuda::MatmulContext{});
  EXPECT_LE(rel_err(dy.get(), ref), 1e-5);
}

TEST(CudaOps, EmbedGathersDequantizedRows) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(3);
  for (DType dt : {DType::BF16, DType::Q8_0, DType::Q4_0}) {
    TestWeight w = make_weight(dt, 50, 64, rng);
    Dev<uint8_t> dq(w.dev_quants);
    Dev<uint16_t> ds(std::max<size_t>(1, w.dev_scales.size()));
    if (!w.dev_scales.empty()) ds.put(w.dev_scales);
    cuda::DeviceMatrix dm{dt, dq.p, ds.p, 50, 64,
                          static_cast<size_t>(dt == DType::BF16 ? 128 : dt == DType::Q8_0 ? 64 : 32)};
    std::vector<int32_t> ids = {0, 49, 7, 7, 23};
    Dev<int32_t> dids(ids);
    Dev<float> out(ids.size() * 64);
    cuda::embed(dm, dids.p, ids.size(), out.p, nullptr);
    std::vector<float> ref(ids.size() * 64);
    for (size_t i = 0; i < ids.size(); ++i) cpu::weight_row(w.cpu, ids[i], &ref[i * 64]);
    const std::vector<float> got = out.get();
    EXPECT_LE(rel_err(got, ref), 1e-6) << name(dt);
    // Overlap scheduling: -(k + 1) reads the previous step's pick k on the device; the same
    // rows as the ids themselves.
    Dev<int32_t> dph(std::vector<int32_t>{0, -2, 7, -1, 23}), prev(std::vector<int32_t>{7, 49, 3});
    Dev<float> out2(ids.size() * 64);
    cuda::embed(dm, dph.p, ids.size(), out2.p, nullptr, prev.p);
    EXPECT_EQ(out2.get(), got) << name(dt) << " with placeholders";
  }
}

// 4-bit affine weights (Q4A) from Q4_K, Q4_1 and MLX 4-bit matrices, laid out by the host
// repack of the CUDA executor (model/device_repack.h, tested bit for bit against
// cpu::weight_row in the CPU build); the GPU's products against cpu::matmul on the source.
struct AffineWeight {
  std::vector<uint8_t> bytes;  // the source matrix (GGUF blocks or MLX words + scales + biases)
  WeightMatrix cpu;
  HostDeviceMatrix host;
  std::unique_ptr<Dev<uint8_t>> data, scales;
  std::unique_ptr<Dev<float>> offsets;
  cuda::DeviceMatrix dev;
};

// kind: Q4_K or Q4_1 (GGUF blocks), or U32 for MLX 4-bit with bf16 scales (group 64).
std::unique_ptr<AffineWeight> make_affine(DType kind, int64_t rows, int64_t cols,
                                          std::mt19937& rng) {
  auto w = std::make_unique<AffineWeight>();
  auto x = randn(rows * cols, rng, 0.05f);
  ThreadPool pool(1);
  if (kind == DType::Q4_1) {  // random blocks: d > 0, m < 0 as a fit of such weights gives
    std::uniform_real_distribution<float> d(0.001f, 0.01f), m(-0.08f, -0.01f);
    w->bytes.resize(rows * cols / 32 * sizeof(BlockQ4_1));
    for (size_t b = 0; b < w->bytes.size(); b += sizeof(BlockQ4_1)) {
      const uint16_t dh = f32_to_f16(d(rng)), mh = f32_to_f16(m(rng));
      std::memcpy(&w->bytes[b], &dh, 2);
      std::memcpy(&w->bytes[b + 2], &mh, 2);
      for (int j = 0; j < 16; ++j) w->bytes[b + 4 + j] = static_cast<uint8_t>(rng());
    }
    w->cpu = {DType::Q4_1, w->bytes.data(), rows, cols, static_cast<size_t>(cols / 32 * 20), {}};
  } else if (kind == DType::Q4_K) {
    WeightMatrix dense{DType::F32, x.data(), rows, cols, static_cast<size_t>(cols) * 4, {}};
    w->cpu = cpu::quantize_matrix(dense, DType::Q4_K, &w->bytes, pool);
  } else {
    std::vector<uint16_t> xb(x.size());
    for (size_t i = 0; i < x.size(); ++i) xb[i] = f32_to_bf16(x[i]);
    WeightMatrix dense{DType::BF16, xb.data(), rows, cols, static_cast<size_t>(cols) * 2, {}};
    w->cpu = cpu::quantize_matrix_mlx(dense, 4, 64, &w->bytes, pool);
  }
  w->host = pack_stacked({&w->cpu});
  EXPECT_EQ(w->host.dtype, cuda::kQ4A) << w->host.label;
  w->data = std::make_unique<Dev<uint8_t>>(w->host.data);
  w->scales = std::make_unique<Dev<uint8_t>>(w->host.scales);
  w->offsets = std::make_unique<Dev<float>>(w->host.offsets);
  w->dev = {w->host.dtype, w->data->p, w->scales->p, rows, cols, w->host.row_bytes, w->offsets->p};
  return w;
}

TEST(CudaOps, Q4AMatmulMatchesCpuForEveryTokenCount) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(8);
  MatmulBench env;
  ASSERT_NE(env.blas, nullptr);
  cublasHandle_t blas = env.blas;
  ThreadPool& pool = env.pool;
  struct Shape { int64_t rows, cols; };
  for (DType kind : {DType::Q4_K, DType::Q4_1, DType::U32}) {
    for (Shape sh : {Shape{37, 256}, Shape{256, 1024}, Shape{129, 4864}, Shape{9000, 512}}) {
      auto w = make_affine(kind, sh.rows, sh.cols, rng);
      const std::string what = w->host.label;
      // n == 3: x one float off 16-byte alignment, so the scalar kernel (load_weight) runs;
      // 65 takes cuBLAS.
      for (int64_t n : {1, 2, 3, 5, 8, 9, 33, 65})
        expect_matmul_matches_cpu(w->dev, w->cpu, n, n == 3 ? 1 : 0, rng, blas, pool, what);
    }
  }
}

// The tensor-core GEMM of qgemm.cu for every format, accumulating into y with a bias, against
// the CPU (operands rounded to bf16: 2e-2, as cuBLAS) and against the path it replaced (expand
// to bf16 + cuBLAS, JINX_QGEMM=0), whose rounding is the same: only the order of the fp32 sums
// differs. Partial tiles in rows (37, 129, 200), tokens and columns (96: a step and a half).
void expect_qgemm_matches(const cuda::DeviceMatrix& dm, const WeightMatrix& cpu, int64_t n,
                          std::mt19937& rng, MatmulBench& env, const std::string& what) {
  const int64_t rows = dm.rows, cols = dm.cols, ldy = rows + 5;
  auto x = randn(n * cols, rng);
  auto y0 = randn(n * ldy, rng);
  auto bias = randn(rows, rng);
  std::vector<float> ref(n * rows);
  cpu::matmul(cpu, x.data(), n, ref.data(), rows, env.pool);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) ref[t * rows + r] += bias[r] + y0[t * ldy + r];
  Dev<float> dx(x), dy(y0), dy_blas(y0), db(bias);
  ASSERT_TRUE(cuda::qgemm_supported(dm, dx.p)) << what;
  cuda::qgemm(dm, dx.p, n, dy.p, ldy, db.p, true, nullptr);
  cuda::set_qgemm_mode(cuda::kQgemmOff);
  Dev<uint8_t> scratch(cuda::matmul_scratch_bytes(dm, n) + 1);
  cuda::MatmulContext mc{nullptr, env.blas, scratch.p, scratch.n};
  cuda::matmul(dm, dx.p, n, dy_blas.p, ldy, mc, db.p, {}, true);
  cuda::set_qgemm_mode(cuda::kQgemmQuantized);
  const auto y = dy.get(), yb = dy_blas.get();
  std::vector<float> got(n * rows), blas(n * rows);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t r = 0; r < rows; ++r) {
      got[t * rows + r] = y[t * ldy + r];
      blas[t * rows + r] = yb[t * ldy + r];
    }
  for (int64_t t = 0; t < n; ++t)  // the padding between rows of y is left alone
    for (int64_t r = rows; r < ldy; ++r) ASSERT_EQ(y[t * ldy + r], y0[t * ldy + r]) << what;
  const std::string shape = what + " " + std::to_string(rows) + "x" + std::to_string(cols) +
                            " n=" + std::to_string(n);
  EXPECT_LE(rel_err(got, ref), 2e-2) << shape;
  // Up to the GEMV's token counts the old path kept x in fp32: the bf16 rounding of x differs.
  EXPECT_LE(rel_err(got, blas), cuda::matmul_uses_gemv(dm, n) ? 2e-2 : 1e-4) << shape;
}

TEST(CudaOps, QgemmMatchesCpuAndCublas) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(21);
  MatmulBench env;
  ASSERT_NE(env.blas, nullptr);
  struct Shape { int64_t rows, cols; };
  for (DType dt : {DType::BF16, DType::Q8_0, DType::Q4_0}) {
    for (Shape sh : {Shape{37, 64}, Shape{200, 96}, Shape{1152, 896}, Shape{129, 4864}}) {
      TestWeight w = make_weight(dt, sh.rows, sh.cols, rng);
      DevWeight dw(w, dt, sh.rows, sh.cols);
      for (int64_t n : {1, 65, 100, 257})
        expect_qgemm_matches(dw.dm, w.cpu, n, rng, env, std::string(name(dt)));
    }
  }
  for (DType kind : {DType::Q4_K, DType::Q4_1, DType::U32}) {
    for (Shape sh : {Shape{37, 256}, Shape{129, 4864}}) {
      auto w = make_affine(kind, sh.rows, sh.cols, rng);
      for (int64_t n : {3, 65, 130})
        expect_qgemm_matches(w->dev, w->cpu, n, rng, env, w->host.label);
    }
  }
}

// matmul() past the GEMV sends quantized weights to the GEMM kernel by default, needing no
// scratch; an input it cannot read (x off 16-byte alignment) then takes the GEMV.
TEST(CudaOps, MatmulRoutesQuantizedGemmsWithoutScratch) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(22);
  MatmulBench env;
  ASSERT_EQ(cuda::qgemm_mode(), cuda::kQgemmQuantized) << "run without JINX_QGEMM set";
  TestWeight w = make_weight(DType::Q4_0, 300, 512, rng);
  DevWeight dw(w, DType::Q4_0, 300, 512);
  EXPECT_EQ(cuda::matmul_scratch_bytes(dw.dm, 200), 0u);
  for (int64_t skew : {0, 1})
    expect_matmul_matches_cpu(dw.dm, w.cpu, 200, skew, rng, env.blas, env.pool, "Q4_0");
}

// BF16 GEMMs past the GEMV run on cuBLASLt, the bias in its epilogue; against cuBLAS
// (JINX_CUBLASLT=0: cublasGemmEx and the bias kernel) the same bf16 products summed in another
// order, with and without a bias, accumulating into y or not, with a workspace and without.
TEST(CudaOps, CublasLtMatchesCublas) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(23);
  MatmulBench env;
  ASSERT_NE(env.blas, nullptr);
  ASSERT_TRUE(cuda::blas_lt_enabled()) << "run without JINX_CUBLASLT set";
  Dev<uint8_t> workspace(size_t{32} << 20);
  struct Shape { int64_t rows, cols; };
  const int64_t before = cuda::blas_lt_gemms();
  int64_t calls = 0;
  for (Shape sh : {Shape{37, 64}, Shape{1152, 896}, Shape{129, 4864}}) {
    TestWeight w = make_weight(DType::BF16, sh.rows, sh.cols, rng);
    DevWeight dw(w, DType::BF16, sh.rows, sh.cols);
    const int64_t ldy = sh.rows + 3;
    for (int64_t n : {9, 100})
      for (int variant = 0; variant < 8; ++variant) {
        const bool with_bias = variant & 1, accumulate = variant & 2, with_ws = variant & 4;
        auto x = randn(n * sh.cols, rng);
        auto y0 = randn(n * ldy, rng);
        auto bias = randn(sh.rows, rng);
        Dev<float> dx(x), dy(y0), dy_blas(y0), db(bias);
        Dev<uint8_t> scratch(cuda::matmul_scratch_bytes(dw.dm, n) + 1);
        cuda::MatmulContext mc{nullptr, env.blas, scratch.p, scratch.n};
        if (with_ws) {
          mc.workspace = workspace.p;
          mc.workspace_bytes = workspace.n;
        }
        const float* b = with_bias ? db.p : nullptr;
        cuda::matmul(dw.dm, dx.p, n, dy.p, ldy, mc, b, {}, accumulate);
        cuda::set_blas_lt_enabled(false);
        cuda::matmul(dw.dm, dx.p, n, dy_blas.p, ldy, mc, b, {}, accumulate);
        cuda::set_blas_lt_enabled(true);
        ++calls;
        EXPECT_LE(rel_err(dy.get(), dy_blas.get()), 1e-4)
            << sh.rows << "x" << sh.cols << " n=" << n << " bias " << with_bias << " accumulate "
            << accumulate << " workspace " << with_ws;
      }
  }
  EXPECT_EQ(cuda::blas_lt_gemms() - before, calls) << "cuBLASLt refused some GEMMs";
}

// The embedding table of a Q4_K / MLX 4-bit checkpoint stays Q4A: rows gathered exactly.
TEST(CudaOps, EmbedGathersQ4ARows) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(9);
  for (DType kind : {DType::Q4_K, DType::Q4_1, DType::U32}) {
    auto w = make_affine(kind, 50, 512, rng);
    std::vector<int32_t> ids = {0, 49, 7, 7, 23};
    Dev<int32_t> dids(ids);
    Dev<float> out(ids.size() * 512);
    cuda::embed(w->dev, dids.p, ids.size(), out.p, nullptr);
    std::vector<float> ref(ids.size() * 512);
    for (size_t i = 0; i < ids.size(); ++i) cpu::weight_row(w->cpu, ids[i], &ref[i * 512]);
    // fmaf(s, q, m) with s * q exact is the CPU's s * q + m: equal values (Q4A holds them).
    EXPECT_EQ(rel_err(out.get(), ref), 0.0) << w->host.label;
  }
}

TEST(CudaOps, NormsRopeSiluGatherArgmax) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(4);
  const int64_t n = 5, H = 896;
  auto x = randn(n * H, rng), r = randn(n * H, rng), w = randn(H, rng);
  // rmsnorm and the fused residual add
  std::vector<float> ref(n * H), xr(n * H);
  for (size_t i = 0; i < xr.size(); ++i) xr[i] = x[i] + r[i];
  cpu::rmsnorm(xr.data(), w.data(), ref.data(), n, H, 1e-6f);
  Dev<float> dx(x), dr(r), dw(w), dout(n * H);
  cuda::add_rmsnorm(dx.p, dr.p, dw.p, dout.p, n, H, 1e-6f, nullptr);
  EXPECT_LE(rel_err(dout.get(), ref), 1e-5);
  EXPECT_LE(rel_err(dx.get(), xr), 1e-7);
  cpu::rmsnorm(x.data(), w.data(), ref.data(), n, H, 1e-6f);
  dx.put(x);
  cuda::rmsnorm(dx.p, dw.p, dout.p, n, H, 1e-6f, nullptr);
  EXPECT_LE(rel_err(dout.get(), ref), 1e-5);

  // per-head norm and rope over a strided q|k layout
  const int64_t hd = 64, nq = 3, nk = 2, ld = (nq + nk) * hd + 7;
  auto qk = randn(n * ld, rng), hw = randn(hd, rng);
  std::vector<int32_t> pos = {0, 1, 17, 300, 4095};
  std::vector<float> inv(hd / 2);
  for (int64_t i = 0; i < hd / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / hd);
  for (bool interleaved : {false, true}) {
    std::vector<float> ref_qk = qk;
    for (int64_t t = 0; t < n; ++t)
      for (int64_t h = 0; h < nq + nk; ++h) {
        float* v = &ref_qk[t * ld + h * hd];
        cpu::rmsnorm(v, hw.data(), v, 1, hd, 1e-6f);
        for (int64_t i = 0; i < hd / 2; ++i) {
          const double a = double(pos[t]) * inv[i];
          const int64_t p = interleaved ? 2 * i : i, q = interleaved ? 2 * i + 1 : i + hd / 2;
          const double x0 = v[p], x1 = v[q];
          v[p] = float(x0 * std::cos(a) - x1 * std::sin(a));
          v[q] = float(x1 * std::cos(a) + x0 * std::sin(a));
        }
      }
    Dev<float> dqk(qk), dhw(hw), dinv(inv);
    Dev<int32_t> dpos(pos);
    cuda::rmsnorm_heads(dqk.p, ld, n, nq + nk, hd, dhw.p, 1e-6f, nullptr);
    cuda::rope(dqk.p, dqk.p + nq * hd, ld, n, nq, nk, hd, dpos.p, dinv.p, interleaved, nullptr);
    auto got = dqk.get();
    for (int64_t t = 0; t < n; ++t)  // the padding columns stay as they were
      for (int64_t c = (nq + nk) * hd; c < ld; ++c) ref_qk[t * ld + c] = qk[t * ld + c];
    EXPECT_LE(rel_err(got, ref_qk), 2e-4) << "interleaved " << interleaved;
  }

  // silu x gate over [n, 2 ff]
  const int64_t ff = 300;
  auto gu = randn(n * 2 * ff, rng);
  std::vector<float> sref(n * ff);
  for (int64_t t = 0; t < n; ++t) {
    std::copy_n(&gu[t * 2 * ff], ff, &sref[t * ff]);
    cpu::silu_mul(&sref[t * ff], &gu[t * 2 * ff + ff], ff);
  }
  Dev<float> dgu(gu), dact(n * ff);
  cuda::silu_mul(dgu.p, n, ff, dact.p, nullptr);
  EXPECT_LE(rel_err(dact.get(), sref), 1e-5);

  // gather and argmax (ties: lowest index)
  std::vector<int32_t> rows = {4, 0, 2};
  Dev<int32_t> drows(rows);
  Dev<float> g(rows.size() * H);
  dx.put(x);
  cuda::gather_rows(dx.p, H, drows.p, rows.size(), g.p, nullptr);
  auto gh = g.get();
  for (size_t i = 0; i < rows.size(); ++i)
    EXPECT_EQ(0, std::memcmp(&gh[i * H], &x[rows[i] * H], H * 4));
  const int64_t V = 151936;
  auto big = randn(3 * V, rng);
  big[1 * V + 777] = 50.0f;
  big[1 * V + 99999] = 50.0f;
  big[2 * V + V - 1] = 60.0f;
  big[2 * V + 5] = std::nanf("");  // ignored
  Dev<float> dbig(big);
  Dev<int32_t> am(3);
  Dev<unsigned long long> keys(3);
  cuda::argmax_rows(dbig.p, 3, V, am.p, keys.p, nullptr);
  auto a = am.get();
  EXPECT_EQ(a[0], std::max_element(big.begin(), big.begin() + V) - big.begin());
  EXPECT_EQ(a[1], 777);
  EXPECT_EQ(a[2], V - 1);
}

// Sampling on the device against the same code run on the host (backend/sample_select.h,
// which tests/engine/sample_select_test.cpp checks against a sorting reference): the same
// token for every row, over vocabularies, temperatures, top-k/top-p/min-p and ties; rows not
// picked for sampling keep their value; a NaN row gives -1.
TEST(CudaOps, SampleRowsMatchHost) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(21);
  std::uniform_real_distribution<double> uni(0.0, 1.0);
  for (int64_t V : {1, 7, 1000, 32000, 151936}) {
    const int64_t n_rows = V > 50000 ? 24 : 64;
    std::vector<float> x = randn(static_cast<size_t>(n_rows * V), rng, 3.0f);
    std::vector<sampling::RowSampling> params(static_cast<size_t>(n_rows));
    std::vector<uint8_t> pick(static_cast<size_t>(n_rows), sampling::kPickSample);
    for (int64_t r = 0; r < n_rows; ++r) {
      sampling::RowSampling& p = params[static_cast<size_t>(r)];
      const int k = static_cast<int>(r % 8);
      p.temperature = 0.3f + 0.2f * static_cast<float>(k);
      p.top_k = k % 3 == 0 ? 0 : k % 3 == 1 ? 40 : static_cast<int32_t>(V - 1);
      p.top_p = k % 4 == 0 ? 1.0f : 0.5f + 0.1f * static_cast<float>(k % 4);
      p.min_p = k % 2 ? 0.05f : 0.0f;
      p.u = r == 0 ? 0.0 : r == 1 ? std::nextafter(1.0, 0.0) : uni(rng);
      if (r % 5 == 4)  // ties: a row of rounded logits
        for (int64_t j = 0; j < V; ++j) x[r * V + j] = std::round(x[r * V + j]);
    }
    if (n_rows > 3) pick[3] = sampling::kPickArgmax;
    if (n_rows > 6) x[6 * V + V / 2] = std::nanf("");
    Dev<float> dx(x);
    Dev<sampling::RowSampling> dp(params);
    Dev<uint8_t> dpick(pick);
    Dev<int32_t> dout(std::vector<int32_t>(static_cast<size_t>(n_rows), -7));
    cuda::sample_rows(dx.p, n_rows, V, dpick.p, dp.p, dout.p, nullptr);
    const std::vector<int32_t> got = dout.get();
    for (int64_t r = 0; r < n_rows; ++r) {
      if (pick[static_cast<size_t>(r)] != sampling::kPickSample) {
        EXPECT_EQ(got[static_cast<size_t>(r)], -7) << "row " << r << " was not to be sampled";
        continue;
      }
      sampling::HostBlock blk;
      sampling::Shared sh{};
      int32_t want = -2;
      sampling::sample_row(blk, sh, &x[static_cast<size_t>(r * V)], static_cast<int32_t>(V),
                           params[static_cast<size_t>(r)], &want);
      EXPECT_EQ(got[static_cast<size_t>(r)], want) << "V " << V << " row " << r;
    }
    if (n_rows > 6) {
      EXPECT_EQ(got[6], -1);
    }
  }
}

// Paged attention against the CPU kernel: random block tables, block sizes, GQA ratios, head
// sizes, KV dtypes, chunk sizes 1..130 over cached prefixes, and long decodes that split.
TEST(CudaOps, PagedAttentionMatchesCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(5);
  ThreadPool pool(2);
  struct Case { int64_t hd, n_kv, group, bs; DType dt; std::vector<std::pair<int, int>> seqs; };
  // seqs: (new tokens, cached tokens before this step)
  std::vector<Case> cases = {
      {64, 2, 7, 16, DType::F32, {{1, 0}, {1, 40}, {7, 9}, {64, 0}}},
      {64, 2, 7, 16, DType::BF16, {{1, 1500}, {1, 3}, {1, 700}}},
      {128, 8, 2, 16, DType::F16, {{130, 20}, {1, 77}}},
      {128, 4, 1, 3, DType::F32, {{5, 11}, {1, 0}, {33, 2}}},
      {64, 3, 3, 16, DType::BF16, {{512, 0}}},
      {96, 1, 9, 8, DType::F32, {{1, 4000}}},
      {80, 2, 4, 16, DType::F32, {{3, 5}, {1, 1}}},
      {256, 1, 2, 16, DType::BF16, {{2, 300}}},
      // The tensor-core prefill kernel (bf16 KV, head_dim 64/128, >= 16 new rows), mixed with
      // decode rows and short chunks that stay on the row kernel, over cached prefixes.
      {128, 2, 7, 16, DType::BF16, {{100, 37}, {1, 200}, {17, 0}, {64, 64}, {15, 3}}},
      {64, 2, 7, 3, DType::BF16, {{300, 0}, {1, 1000}, {16, 129}}},
      {128, 8, 1, 16, DType::BF16, {{65, 500}}},
      // Quantized caches (codes + a scale per row; the CPU's bytes, read by the row kernel).
      {64, 2, 7, 16, DType::I8, {{1, 1500}, {1, 3}, {20, 700}}},
      {128, 4, 2, 16, DType::F8_E4M3, {{1, 300}, {33, 0}, {1, 4000}}},
      {80, 2, 4, 3, DType::I8, {{3, 5}, {1, 1}}},
      {96, 1, 9, 8, DType::F8_E4M3, {{1, 2000}, {5, 7}}},
  };
  for (const Case& c : cases) {
    const int64_t n_heads = c.n_kv * c.group, kv_dim = c.n_kv * c.hd;
    int64_t n_tokens = 0, max_ctx = 0, total_blocks = 0;
    for (auto [nn, cached] : c.seqs) {
      n_tokens += nn;
      max_ctx = std::max<int64_t>(max_ctx, nn + cached);
      total_blocks += (nn + cached + c.bs - 1) / c.bs;
    }
    const int64_t n_blocks = total_blocks + 5, max_blocks = (max_ctx + c.bs - 1) / c.bs;
    std::vector<int32_t> perm(n_blocks);
    for (int64_t i = 0; i < n_blocks; ++i) perm[i] = static_cast<int32_t>(i);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<int32_t> qstart{0}, ctx, tables(c.seqs.size() * max_blocks, -1);
    size_t next = 0;
    for (size_t s = 0; s < c.seqs.size(); ++s) {
      const int64_t len = c.seqs[s].first + c.seqs[s].second;
      for (int64_t b = 0; b < (len + c.bs - 1) / c.bs; ++b) tables[s * max_blocks + b] = perm[next++];
      qstart.push_back(qstart.back() + c.seqs[s].first);
      ctx.push_back(static_cast<int32_t>(len));
    }
    // Fill every slot of every sequence (prefix and new tokens) with random K/V on both sides.
    const size_t half = n_blocks * c.bs * c.n_kv * cpu::kv_row_bytes(c.dt, c.hd);
    std::vector<uint8_t> kh(half), vh(half);
    cpu::PagedKv ckv{kh.data(), vh.data(), c.dt, n_blocks, c.bs, c.n_kv, c.hd};
    for (size_t s = 0; s < c.seqs.size(); ++s) {
      const int64_t len = ctx[s];
      auto k = randn(len * kv_dim, rng), v = randn(len * kv_dim, rng);
      std::vector<int64_t> slots(len);
      for (int64_t p = 0; p < len; ++p)
        slots[p] = int64_t{tables[s * max_blocks + p / c.bs]} * c.bs + p % c.bs;
      cpu::kv_store(ckv, k.data(), v.data(), slots.data(), len, pool);
    }
    auto q = randn(n_tokens * n_heads * c.hd, rng);
    std::vector<float> ref(q.size());
    cpu::AttnBatch cb{static_cast<int64_t>(c.seqs.size()), qstart.data(), ctx.data(),
                      tables.data(), max_blocks};
    cpu::paged_attention(q.data(), ref.data(), n_heads, ckv, cb, 0.0f, pool);

    Dev<uint8_t> dk(kh), dv(vh);
    Dev<int32_t> dqs(qstart), dctx(ctx), dtab(tables);
    Dev<float> dq(q), dout(q.size());
    Dev<uint8_t> work(cuda::attention_work_bytes(n_tokens, n_heads, c.hd) + 1);
    cuda::check(cudaMemset(work.p, 0, work.n), "zero work");
    cuda::PagedKv gkv{dk.p, dv.p, c.dt, n_blocks, c.bs, c.n_kv, c.hd};
    cuda::AttnBatch gb{static_cast<int64_t>(c.seqs.size()), n_tokens, dqs.p, dctx.p, dtab.p,
                       max_blocks, max_ctx};
    const std::vector<int32_t> tiles =
        cuda::make_prefill_tiles(qstart.data(), static_cast<int64_t>(c.seqs.size()), gkv);
    Dev<int32_t> dtiles(std::max<size_t>(1, tiles.size()));
    if (!tiles.empty()) dtiles.put(tiles);
    gb.prefill_tiles = dtiles.p;
    gb.n_prefill_tiles = static_cast<int64_t>(tiles.size() / 2);
    cuda::paged_attention(dq.p, n_heads * c.hd, dout.p, n_heads, gkv, gb, 0.0f, work.p, nullptr);
    {  // Split rows merged by their last block equal a second merge kernel's output, bit for
       // bit, and a second launch (its counters reset by the first) gives the same again.
      const std::vector<float> first = dout.get();
      const bool was = cuda::attention_merge_in_kernel();
      for (bool in_kernel : {false, true}) {
        cuda::set_attention_merge_in_kernel(in_kernel);
        cuda::check(cudaMemset(dout.p, 0, dout.n * sizeof(float)), "clear out");
        cuda::paged_attention(dq.p, n_heads * c.hd, dout.p, n_heads, gkv, gb, 0.0f, work.p,
                              nullptr);
        EXPECT_EQ(dout.get(), first) << "merge in kernel " << in_kernel << ", hd " << c.hd;
      }
      cuda::set_attention_merge_in_kernel(was);
    }
    // Row kernel: fp32 math on the stored K/V. Prefill tiles: q and P rounded to bf16 for the
    // tensor cores (2^-9 relative each), as FlashAttention does.
    const double tol = tiles.empty() ? 1e-4 : 1e-2;
    const double err = rel_err(dout.get(), ref);
    std::printf("attention hd %lld kv %lld group %lld bs %lld %s: %zu prefill tiles, rel err %.3g\n",
                (long long)c.hd, (long long)c.n_kv, (long long)c.group, (long long)c.bs,
                std::string(name(c.dt)).c_str(), tiles.size() / 2, err);
    EXPECT_LE(err, tol) << "hd " << c.hd << " kv " << c.n_kv << " group " << c.group << " bs "
                        << c.bs << " " << name(c.dt);
    // The decode rows (left to the row kernel) keep the tight bound.
    if (!tiles.empty()) {
      auto got = dout.get();
      double m = 1e-6, e = 0;
      for (size_t s = 0; s < c.seqs.size(); ++s) {
        if (qstart[s + 1] - qstart[s] >= cuda::kPrefillMinRows) continue;
        for (int64_t i = int64_t{qstart[s]} * n_heads * c.hd;
             i < int64_t{qstart[s + 1]} * n_heads * c.hd; ++i) {
          m = std::max(m, std::fabs(double(ref[i])));
          e = std::max(e, std::fabs(double(got[i]) - ref[i]));
        }
      }
      EXPECT_LE(e / m, 1e-4) << "row-kernel rows next to prefill tiles";
    }
  }
}

TEST(CudaOps, KvStoreRoundsLikeTheCpu) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(6);
  ThreadPool pool(1);
  const int64_t n_blocks = 4, bs = 4, n_kv = 2, hd = 64, dim = n_kv * hd, ld = dim * 2 + 3;
  for (DType dt : {DType::F32, DType::F16, DType::BF16, DType::I8, DType::F8_E4M3}) {
    const size_t bytes = n_blocks * bs * n_kv * cpu::kv_row_bytes(dt, hd);
    std::vector<uint8_t> kc(bytes, 0), vc(bytes, 0);
    cpu::PagedKv ckv{kc.data(), vc.data(), dt, n_blocks, bs, n_kv, hd};
    auto kv = randn(5 * ld, rng);
    std::vector<int64_t> slots = {3, 15, -1, 8, 0};
    std::vector<float> k(5 * dim), v(5 * dim);
    for (int t = 0; t < 5; ++t) {
      std::copy_n(&kv[t * ld], dim, &k[t * dim]);
      std::copy_n(&kv[t * ld + dim], dim, &v[t * dim]);
    }
    cpu::kv_store(ckv, k.data(), v.data(), slots.data(), 5, pool);
    Dev<uint8_t> dk(std::vector<uint8_t>(bytes, 0)), dv(std::vector<uint8_t>(bytes, 0));
    Dev<float> dkv(kv);
    Dev<int64_t> ds(slots);
    cuda::PagedKv gkv{dk.p, dv.p, dt, n_blocks, bs, n_kv, hd};
    cuda::kv_store(gkv, dkv.p, dkv.p + dim, ld, ds.p, 5, nullptr);
    EXPECT_EQ(dk.get(), kc) << name(dt);
    EXPECT_EQ(dv.get(), vc) << name(dt);
  }
}

// The fused rope + KV store equals rope() then kv_store() (both held against the CPU above).
TEST(CudaOps, RopeKvStoreEqualsRopeThenStore) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(8);
  const int64_t n = 6, hd = 64, nq = 7, nk = 2, ld = (nq + 2 * nk) * hd, n_blocks = 4, bs = 4;
  auto qkv = randn(n * ld, rng);
  std::vector<int32_t> pos = {0, 3, 9, 17, 100, 2047};
  std::vector<int64_t> slots = {0, 5, -1, 15, 7, 2};
  std::vector<float> inv(hd / 2);
  for (int64_t i = 0; i < hd / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / hd);
  Dev<int32_t> dpos(pos);
  Dev<int64_t> dslots(slots);
  Dev<float> dinv(inv);
  for (DType dt : {DType::F32, DType::BF16, DType::I8}) {
    const size_t bytes = n_blocks * bs * nk * cpu::kv_row_bytes(dt, hd);
    Dev<uint8_t> k1(std::vector<uint8_t>(bytes, 0)), v1(std::vector<uint8_t>(bytes, 0));
    Dev<uint8_t> k2(std::vector<uint8_t>(bytes, 0)), v2(std::vector<uint8_t>(bytes, 0));
    Dev<float> a(qkv), b(qkv);
    cuda::PagedKv kv1{k1.p, v1.p, dt, n_blocks, bs, nk, hd}, kv2{k2.p, v2.p, dt, n_blocks, bs, nk, hd};
    cuda::rope(a.p, a.p + nq * hd, ld, n, nq, nk, hd, dpos.p, dinv.p, false, nullptr);
    cuda::kv_store(kv1, a.p + nq * hd, a.p + (nq + nk) * hd, ld, dslots.p, n, nullptr);
    cuda::rope_kv_store(b.p, b.p + nq * hd, b.p + (nq + nk) * hd, ld, n, nq, dpos.p, dinv.p,
                        false, kv2, dslots.p, nullptr);
    EXPECT_EQ(k1.get(), k2.get()) << name(dt);
    EXPECT_EQ(v1.get(), v2.get()) << name(dt);
    auto qa = a.get(), qb = b.get();
    for (int64_t t = 0; t < n; ++t)
      EXPECT_EQ(0, std::memcmp(&qa[t * ld], &qb[t * ld], nq * hd * 4)) << "q of token " << t;
  }
}

// Decode steps with RoPE and the KV store inside the attention kernel (AttnNewKv) against the
// separate rope_kv_store() then paged_attention(): the same cache contents and outputs, over
// short and split contexts, GQA groups of more than 8 heads, and both merges of split rows.
TEST(CudaOps, AttentionWithFusedRopeEqualsSeparateKernels) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(12);
  struct Case { int64_t hd, n_kv, group, bs; DType dt; std::vector<int32_t> ctx; };
  const Case cases[] = {
      {64, 2, 7, 16, DType::BF16, {1, 40, 1500, 33}},
      {128, 1, 9, 8, DType::F32, {3, 700}},
      {64, 4, 2, 16, DType::F16, {17, 2, 90}},
  };
  for (const Case& c : cases) {
    for (bool merge_in_kernel : {true, false}) {
      const bool was = cuda::attention_merge_in_kernel();
      cuda::set_attention_merge_in_kernel(merge_in_kernel);
      const int64_t n = static_cast<int64_t>(c.ctx.size()), nq = c.n_kv * c.group;
      const int64_t ld = (nq + 2 * c.n_kv) * c.hd, kv_dim = c.n_kv * c.hd;
      int64_t max_ctx = 0, total = 0;
      for (int32_t x : c.ctx) {
        max_ctx = std::max<int64_t>(max_ctx, x);
        total += (x + c.bs - 1) / c.bs;
      }
      const int64_t n_blocks = total + 3, max_blocks = (max_ctx + c.bs - 1) / c.bs;
      std::vector<int32_t> qstart{0}, tables(n * max_blocks, -1), pos;
      std::vector<int64_t> new_slots, old_slots;
      int32_t next = 0;
      for (int64_t s = 0; s < n; ++s) {
        for (int64_t b = 0; b < (c.ctx[s] + c.bs - 1) / c.bs; ++b) tables[s * max_blocks + b] = next++;
        qstart.push_back(static_cast<int32_t>(s + 1));
        pos.push_back(c.ctx[s] - 1);
        for (int32_t p = 0; p < c.ctx[s]; ++p) {
          const int64_t slot = int64_t{tables[s * max_blocks + p / c.bs]} * c.bs + p % c.bs;
          (p + 1 == c.ctx[s] ? new_slots : old_slots).push_back(slot);
        }
      }
      new_slots.back() = -1;  // a padding row of a graph: stores nothing (its output is ignored)
      // The cached prefixes, the same in both caches.
      const size_t bytes = n_blocks * c.bs * c.n_kv * cpu::kv_row_bytes(c.dt, c.hd);
      Dev<uint8_t> k1(std::vector<uint8_t>(bytes, 0)), v1(std::vector<uint8_t>(bytes, 0));
      Dev<uint8_t> k2(std::vector<uint8_t>(bytes, 0)), v2(std::vector<uint8_t>(bytes, 0));
      cuda::PagedKv kv1{k1.p, v1.p, c.dt, n_blocks, c.bs, c.n_kv, c.hd};
      cuda::PagedKv kv2{k2.p, v2.p, c.dt, n_blocks, c.bs, c.n_kv, c.hd};
      if (!old_slots.empty()) {
        auto kvp = randn(old_slots.size() * 2 * kv_dim, rng);
        Dev<float> dkvp(kvp);
        Dev<int64_t> dos(old_slots);
        for (const cuda::PagedKv* kv : {&kv1, &kv2})
          cuda::kv_store(*kv, dkvp.p, dkvp.p + kv_dim, 2 * kv_dim, dos.p,
                         static_cast<int64_t>(old_slots.size()), nullptr);
      }
      auto qkv = randn(n * ld, rng);
      std::vector<float> inv(c.hd / 2);
      for (int64_t i = 0; i < c.hd / 2; ++i) inv[i] = std::pow(10000.0f, -2.0f * i / c.hd);
      Dev<float> a(qkv), b(qkv), dinv(inv), out1(n * nq * c.hd), out2(n * nq * c.hd);
      Dev<int32_t> dpos(pos), dqs(qstart), dtab(tables), dctx(c.ctx);
      Dev<int64_t> dslots(new_slots);
      Dev<uint8_t> work(cuda::attention_work_bytes(n, nq, c.hd));
      cuda::check(cudaMemset(work.p, 0, work.n), "zero work");
      cuda::AttnBatch ab{n, n, dqs.p, dctx.p, dtab.p, max_blocks, max_ctx};
      cuda::rope_kv_store(a.p, a.p + nq * c.hd, a.p + (nq + c.n_kv) * c.hd, ld, n, nq, dpos.p,
                          dinv.p, false, kv1, dslots.p, nullptr);
      cuda::paged_attention(a.p, ld, out1.p, nq, kv1, ab, 0.0f, work.p, nullptr);
      const cuda::AttnNewKv nk{b.p + nq * c.hd, b.p + (nq + c.n_kv) * c.hd, ld, dpos.p, dinv.p,
                               false, dslots.p};
      cuda::paged_attention(b.p, ld, out2.p, nq, kv2, ab, 0.0f, work.p, nullptr, &nk);
      cuda::set_attention_merge_in_kernel(was);
      const std::string what = str("hd ", c.hd, " group ", c.group, " ", name(c.dt), " merge ",
                                   merge_in_kernel ? "in kernel" : "kernel");
      EXPECT_EQ(k1.get(), k2.get()) << what;
      EXPECT_EQ(v1.get(), v2.get()) << what;
      auto o1 = out1.get(), o2 = out2.get();
      o1.resize((n - 1) * nq * c.hd);  // not the padding row
      o2.resize(o1.size());
      EXPECT_LE(rel_err(o2, o1), 1e-6) << what;
      EXPECT_EQ(b.get(), qkv) << what << ": q, k and v stay as they were";
    }
  }
}

}  // namespace
}  // namespace jinx
