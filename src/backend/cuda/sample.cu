// Sampling on the device (temperature, top-k, top-p, min-p): one block per row runs
// backend/sample_select.h, the same code the host tests run thread by thread.
#include "backend/cuda/common.cuh"
#include "backend/cuda/ops.h"
#include "backend/sample_select.h"

namespace jinx::cuda {

using detail::launch;
using detail::pdl_begin;

namespace {

__global__ void __launch_bounds__(sampling::kThreads)
    sample_kernel(const float* logits, int64_t vocab, const uint8_t* pick,
                  const sampling::RowSampling* params, int32_t* out) {
  pdl_begin();
  const int64_t r = blockIdx.x;
  if (pick[r] != sampling::kPickSample) return;  // the whole block: greedy or host rows
  __shared__ sampling::Shared s;
  sampling::DeviceBlock blk;
  sampling::sample_row(blk, s, logits + r * vocab, static_cast<int32_t>(vocab), params[r], out + r);
}

}  // namespace

void sample_rows(const float* logits, int64_t n_rows, int64_t vocab, const uint8_t* pick,
                 const sampling::RowSampling* params, int32_t* out, cudaStream_t s) {
  if (n_rows <= 0) return;
  launch(sample_kernel, static_cast<unsigned>(n_rows), sampling::kThreads, 0, s, "sample_kernel",
         logits, vocab, pick, params, out);
}

}  // namespace jinx::cuda
