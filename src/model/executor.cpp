#include "model/executor.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "core/check.h"
#include "core/thread_pool.h"

#ifdef JINX_CUDA
#include "backend/cuda/ops.h"
#endif

namespace jinx {
namespace {

class CpuExecutor final : public Executor {
 public:
  CpuExecutor(std::shared_ptr<const Model> model, const ExecutorOptions& o)
      : model_(std::move(model)),
        pool_(o.pool ? o.pool : std::make_shared<ThreadPool>(o.threads)),
        kv_(model_->config(), o.n_blocks, o.block_size, o.kv_dtype) {}

  void forward_batch(const ForwardBatch& batch, float* logits, int32_t* tokens) override {
    model_->forward_batch(batch, kv_, logits, *pool_);
    const int64_t V = model_->config().vocab_size;
    for (size_t i = 0; i < batch.pick.size(); ++i) {
      JINX_CHECK(batch.pick[i] != sampling::kPickSample,
                 "forward_batch: the CPU executor does not sample; the caller does");
      if (batch.pick[i] != sampling::kPickArgmax) continue;
      JINX_CHECK(tokens != nullptr, "forward_batch: argmax rows without an output");
      const float* row = logits + static_cast<int64_t>(i) * V;
      int64_t best = 0;
      for (int64_t j = 0; j < V; ++j) {
        if (std::isnan(row[j])) fail("the model produced NaN logits");
        if (row[j] > row[best]) best = j;
      }
      tokens[i] = static_cast<int32_t>(best);
    }
  }
  int64_t n_kv_blocks() const override { return kv_.n_blocks(); }
  size_t kv_bytes() const override { return kv_.bytes(); }
  std::string describe() const override {
    return str("cpu, ", pool_->size(), " threads, KV pool ", kv_.n_blocks(), " blocks (",
               kv_.bytes() >> 20, " MiB, ", name(kv_.dtype()), ")");
  }

 private:
  std::shared_ptr<const Model> model_;
  std::shared_ptr<ThreadPool> pool_;
  PagedKvStorage kv_;
};

}  // namespace

std::unique_ptr<Executor> make_cpu_executor(std::shared_ptr<const Model> model,
                                            const ExecutorOptions& o) {
  if (o.n_blocks <= 0) fail("the CPU KV pool needs a size in blocks");
  return std::make_unique<CpuExecutor>(std::move(model), o);
}

std::vector<int32_t> resolve_placeholders(std::span<const int32_t> tokens,
                                          std::span<const int32_t> prev_picks) {
  std::vector<int32_t> out(tokens.begin(), tokens.end());
  for (int32_t& t : out) {
    if (t >= 0) continue;
    const int64_t k = -int64_t{t} - 1;
    if (k >= static_cast<int64_t>(prev_picks.size()) || prev_picks[k] < 0)
      fail("placeholder token ", t, " names no picked row of the previous step (",
           prev_picks.size(), " output rows)");
    t = prev_picks[k];
  }
  return out;
}

std::vector<int32_t> picks_of(std::span<const uint8_t> pick, const int32_t* tokens, size_t n_out) {
  std::vector<int32_t> picks(n_out, -1);
  for (size_t k = 0; k < pick.size() && k < n_out; ++k)
    if (pick[k] == sampling::kPickArgmax || pick[k] == sampling::kPickSample) picks[k] = tokens[k];
  return picks;
}

void Executor::submit(const ForwardBatch& batch, float* logits, int32_t* tokens) {
  ForwardBatch b = batch;
  std::vector<int32_t> resolved;
  if (std::any_of(batch.tokens.begin(), batch.tokens.end(), [](int32_t t) { return t < 0; })) {
    resolved = resolve_placeholders(batch.tokens, last_picks_);
    b.tokens = resolved;
  }
  last_picks_.clear();
  forward_batch(b, logits, tokens);
  last_picks_ = picks_of(batch.pick, tokens, batch.out_rows.size());
}

void Executor::embed(std::span<const std::vector<int32_t>>, Pooling, bool, float*) {
  fail("this executor computes no embeddings (the host model does)");
}

bool cuda_built() {
#ifdef JINX_CUDA
  return true;
#else
  return false;
#endif
}

int cuda_device_count() {
#ifdef JINX_CUDA
  return cuda::device_count();
#else
  return 0;
#endif
}

std::unique_ptr<Executor> make_executor(std::shared_ptr<const Model> model,
                                        const ExecutorOptions& o) {
  JINX_CHECK(model != nullptr, "make_executor: no model");
  if (o.device == "cpu")
    return model->tp_size() > 1 ? make_tp_executor(std::move(model), o)
                                : make_cpu_executor(std::move(model), o);
  if (model->tp_size() > 1)
    fail("--device ", o.device, ": tensor parallelism runs on the CPU only so far (MPI)");
  if (!model->lora_summary().empty())
    fail("--device ", o.device, ": LoRA adapters run on the CPU only so far");
  if (o.device.rfind("cuda", 0) != 0) fail("unknown device \"", o.device, "\" (cpu, cuda, cuda:N)");
  int dev = 0;
  if (o.device.size() > 4) {
    const std::string_view n = std::string_view(o.device).substr(4);
    const char* end = n.data() + n.size();
    if (n[0] != ':' || std::from_chars(n.data() + 1, end, dev).ptr != end || dev < 0)
      fail("bad device \"", o.device, "\": use cuda or cuda:N");
  }
  if (model->config().n_experts > 0)
    fail("--device ", o.device,
         ": mixture-of-experts models run on the CPU only (the CUDA "
         "backend has no MoE kernels yet)");
  if (model->config().arch == Arch::kGemma3 || model->config().sliding_window > 0)
    fail("--device ", o.device,
         ": Gemma 3 and sliding-window models run on the CPU only (the CUDA backend has no "
         "sliding-window attention, post-norms or GELU gating yet)");
#ifdef JINX_CUDA
  const int n_dev = cuda::device_count();
  if (n_dev == 0) fail("--device ", o.device, ": no CUDA GPU is visible to this process");
  if (dev >= n_dev) fail("--device ", o.device, ": only ", n_dev, " CUDA GPU(s) present");
  return make_cuda_executor(std::move(model), o, dev);
#else
  fail("--device ", o.device, ": this build has no CUDA backend (configure with -DJINX_CUDA=ON)");
#endif
}

}  // namespace jinx
