// cuBLASLt for the BF16 GEMMs of prefill and large batches. Column-major, as cuBLASLt sees our
// row-major arrays: y^T [rows, n] (ld ldy) = W [k, rows]^T (ld lda) x X^T [k, n] (ld k), so
// A = W transposed, B = X as it is, C = D = y; the bias is the epilogue's vector over D's rows.
//
// A plan (descriptors and the heuristic's first algorithm, ~20-50 us to find) is made once per
// shape, pointer alignment and workspace size and kept: a step's token count varies, so there
// may be many; past kMaxPlans they are all dropped and made again as they come. The plans and
// the handle are never freed at exit, so that nothing depends on the order of static
// destruction against the driver's.
#include "backend/cuda/blas_lt.h"

#include <cublasLt.h>

#include <atomic>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "core/log.h"

namespace jinx::cuda {

namespace {

std::atomic<bool>& lt_switch() {
  static std::atomic<bool> on{[] {
    const char* v = std::getenv("JINX_CUBLASLT");
    return v == nullptr || std::string(v) != "0";
  }()};
  return on;
}

// The alignment cuBLASLt may assume of a buffer: the largest power of two up to 256 dividing
// its address (the heuristic otherwise assumes 256 and may pick a kernel that needs it).
uint32_t alignment_of(const void* p) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 1 && a % al != 0) al >>= 1;
  return al;
}

struct Key {
  int64_t rows, n, k, lda, ldy;
  bool bias, accumulate;
  uint32_t align_w, align_x, align_y, align_bias;
  size_t workspace;
  int device;
  auto tie() const {
    return std::tie(rows, n, k, lda, ldy, bias, accumulate, align_w, align_x, align_y, align_bias,
                    workspace, device);
  }
  bool operator<(const Key& o) const { return tie() < o.tie(); }
};

struct Plan {
  bool ok = false;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};
constexpr size_t kMaxPlans = 4096;

void destroy(Plan& p) {
  if (p.op) cublasLtMatmulDescDestroy(p.op);
  for (cublasLtMatrixLayout_t l : {p.a, p.b, p.c})
    if (l) cublasLtMatrixLayoutDestroy(l);
  p = Plan{};
}

bool ok(cublasStatus_t st) {
  return st == CUBLAS_STATUS_SUCCESS;
}

template <typename T>
bool set_desc(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t attr, const T& v) {
  return ok(cublasLtMatmulDescSetAttribute(d, attr, &v, sizeof(v)));
}

template <typename T>
bool set_pref(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t attr, const T& v) {
  return ok(cublasLtMatmulPreferenceSetAttribute(p, attr, &v, sizeof(v)));
}

// The heuristic's first algorithm for the key (bias: the call's pointer, whose alignment the
// heuristic reads). A plan with ok == false: cuBLASLt cannot do it.
Plan make_plan(cublasLtHandle_t h, const Key& key, const float* bias) {
  Plan p;
  if (!ok(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F))) p.op = nullptr;
  if (p.op == nullptr) return p;
  bool good = set_desc(p.op, CUBLASLT_MATMUL_DESC_TRANSA, CUBLAS_OP_T) &&
              set_desc(p.op, CUBLASLT_MATMUL_DESC_TRANSB, CUBLAS_OP_N);
  if (key.bias) {
    good = good && set_desc(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, CUBLASLT_EPILOGUE_BIAS) &&
           set_desc(p.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, int32_t{CUDA_R_32F}) &&
           set_desc(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
  }
  good = good &&
         ok(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, static_cast<uint64_t>(key.k),
                                       static_cast<uint64_t>(key.rows), key.lda)) &&
         ok(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, static_cast<uint64_t>(key.k),
                                       static_cast<uint64_t>(key.n), key.k)) &&
         ok(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, static_cast<uint64_t>(key.rows),
                                       static_cast<uint64_t>(key.n), key.ldy));
  if (!good) return p;
  cublasLtMatmulPreference_t pref = nullptr;
  if (!ok(cublasLtMatmulPreferenceCreate(&pref))) return p;
  good = set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t{key.workspace}) &&
         set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_w) &&
         set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_x) &&
         set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_y) &&
         set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_y);
  cublasLtMatmulHeuristicResult_t r{};
  int found = 0;
  if (good &&
      ok(cublasLtMatmulAlgoGetHeuristic(h, p.op, p.a, p.b, p.c, p.c, pref, 1, &r, &found)) &&
      found > 0 && ok(r.state)) {
    p.algo = r.algo;
    p.ok = true;
  }
  cublasLtMatmulPreferenceDestroy(pref);
  return p;
}

class LtPlans {
 public:
  static LtPlans& instance() {
    static LtPlans* p = new LtPlans();  // never destroyed (see the top of the file)
    return *p;
  }

  bool gemm(const Key& key, const void* w, const void* x, float* y, const float* bias,
            void* workspace, cudaStream_t s) {
    std::lock_guard<std::mutex> lock(mu_);
    if (handle_ == nullptr) return false;
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      if (plans_.size() >= kMaxPlans) {
        for (auto& kv : plans_) destroy(kv.second);
        plans_.clear();
      }
      it = plans_.emplace(key, make_plan(handle_, key, bias)).first;
      if (!it->second.ok) {
        log_info("cuBLASLt: no algorithm for a ", key.rows, "x", key.k, " x ", key.n,
                 " bf16 GEMM; cuBLAS does it");
      }
    }
    Plan& p = it->second;
    if (!p.ok) return false;
    if (key.bias && !set_desc(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias)) return false;
    const float alpha = 1.0f, beta = key.accumulate ? 1.0f : 0.0f;
    const cublasStatus_t st = cublasLtMatmul(handle_, p.op, &alpha, w, p.a, x, p.b, &beta, y, p.c,
                                             y, p.c, &p.algo, workspace, key.workspace, s);
    if (!ok(st)) {
      p.ok = false;  // not again for this shape
      log_warn("cuBLASLt: a ", key.rows, "x", key.k, " x ", key.n, " GEMM failed (status ", int(st),
               "); cuBLAS does it from now on");
      return false;
    }
    ++done_;
    return true;
  }

  int64_t done() {
    std::lock_guard<std::mutex> lock(mu_);
    return done_;
  }

 private:
  LtPlans() {
    if (!ok(cublasLtCreate(&handle_))) {
      handle_ = nullptr;
      log_warn("cuBLASLt: cannot create a handle; BF16 GEMMs stay on cuBLAS");
    }
  }
  std::mutex mu_;
  cublasLtHandle_t handle_ = nullptr;
  std::map<Key, Plan> plans_;
  int64_t done_ = 0;
};

}  // namespace

bool blas_lt_enabled() {
  return lt_switch().load(std::memory_order_relaxed);
}

void set_blas_lt_enabled(bool on) {
  lt_switch().store(on);
}

int64_t blas_lt_gemms() {
  return LtPlans::instance().done();
}

bool blas_lt_gemm(const void* w, int64_t lda, const void* x, int64_t rows, int64_t n, int64_t k,
                  float* y, int64_t ldy, const float* bias, bool accumulate, void* workspace,
                  size_t workspace_bytes, cudaStream_t s) {
  if (!blas_lt_enabled() || rows <= 0 || n <= 0 || k <= 0) return false;
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) return false;
  const size_t ws = workspace != nullptr ? workspace_bytes : 0;
  const Key key{rows,
                n,
                k,
                lda,
                ldy,
                bias != nullptr,
                accumulate,
                alignment_of(w),
                alignment_of(x),
                alignment_of(y),
                bias != nullptr ? alignment_of(bias) : 256u,
                ws,
                device};
  return LtPlans::instance().gemm(key, w, x, y, bias, workspace, s);
}

}  // namespace jinx::cuda
