// Where the forward pass runs: an Executor owns a device's KV pool (and, on a GPU, the weights'
// device copies) and runs Model's forward pass over a ForwardBatch there. The engine talks to it
// only through this interface, so the scheduler and batch builder are the same for every device.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/dtype.h"
#include "model/model.h"
#include "model/paged_kv.h"

namespace jinx {

struct ExecutorOptions {
  std::string device = "cpu";  // "cpu", "cuda" or "cuda:N"
  int threads = 0;             // CPU threads (0: every core)
  int64_t block_size = 16;
  DType kv_dtype = DType::F32;
  // KV pool size in blocks; 0 on a GPU: as many as fit in gpu_memory_utilization of the device
  // memory after the weights and activations (on the CPU the caller always gives a count).
  int64_t n_blocks = 0;
  double gpu_memory_utilization = 0.9;
  int64_t max_batched_tokens = 512;  // most tokens in one forward pass (sizes GPU buffers)
  int64_t max_seqs = 64;             // most sequences in one forward pass
  int64_t max_model_len = 0;         // longest sequence (0: the model's context)
  bool cuda_graphs = true;           // replay decode steps as CUDA graphs (GPU only)
};

class Executor {
 public:
  virtual ~Executor() = default;
  // One step: stores the batch's K/V in the pool and writes logits [out_rows.size(), vocab]
  // (host memory) for the rows listed, except rows that batch.pick marks kPickArgmax or
  // kPickSample, whose logits may be left unwritten. tokens (host, [out_rows.size()], may be
  // null when no row is marked) receives each marked row's token: the argmax (ties to the
  // lowest id), or the drawn token (-1 where the logits hold a NaN or no finite max).
  virtual void forward_batch(const ForwardBatch& batch, float* logits,
                             int32_t* tokens = nullptr) = 0;
  // Whether kPickSample rows are drawn here (a GPU); else the caller samples from the logits.
  virtual bool samples_on_device() const { return false; }
  virtual int64_t n_kv_blocks() const = 0;
  virtual size_t kv_bytes() const = 0;
  // One line for logs and `jinx info`: device, weights, KV pool.
  virtual std::string describe() const = 0;
};

// Throws jinx::Error for an unknown device, a CUDA device in a build without CUDA, a missing
// GPU, or memory that cannot hold the weights and one block per sequence.
std::unique_ptr<Executor> make_executor(std::shared_ptr<const Model> model,
                                        const ExecutorOptions& options);

// Whether this build has the CUDA backend, and the GPUs the driver shows (0 without either).
bool cuda_built();
int cuda_device_count();

#ifdef JINX_CUDA
std::unique_ptr<Executor> make_cuda_executor(std::shared_ptr<const Model> model,
                                             const ExecutorOptions& options, int device);
#endif

}  // namespace jinx
