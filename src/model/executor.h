// Where the forward pass runs: an Executor owns a device's KV pool (and, on a GPU, the weights'
// device copies) and runs Model's forward pass over a ForwardBatch there. The engine talks to it
// only through this interface, so the scheduler and batch builder are the same for every device.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

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
  WeightQuant quantize = WeightQuant::kNone;  // what the model was loaded with (TP workers
                                              // load the same)
  // CPU: the kernels' thread pool, shared with another executor that never runs at the same
  // time (a draft model's); null: the executor makes its own of `threads` threads. Two pools
  // would each spin after their passes on the same cores.
  std::shared_ptr<ThreadPool> pool;
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

  // Overlap scheduling. submit() starts a step as forward_batch() does but may return before it
  // ran; its outputs are written, and `logits` / `tokens` must stay valid, until the wait()
  // that completes it (wait() completes the oldest submitted step). At most two steps are
  // submitted and not yet waited for. A token id < 0 in batch.tokens is a placeholder:
  // -(k + 1) stands for the token that the step submitted just before this one picked for its
  // output row k (a kPickArgmax or kPickSample row), so the caller can submit a decode step
  // before it knows its input. The default runs the step at once, with placeholders replaced.
  virtual void submit(const ForwardBatch& batch, float* logits, int32_t* tokens);
  virtual void wait() {}
  // Whether submit() returns before the step ran (a GPU), so that overlap scheduling pays.
  virtual bool runs_async() const { return false; }
  // Only where embeddings cannot run on the host model alone (tensor parallelism: every rank
  // must run the same passes): Model::embed over the group. Callers check the inputs first.
  virtual void embed(std::span<const std::vector<int32_t>> seqs, Pooling pooling, bool normalize,
                     float* out);
  virtual int64_t n_kv_blocks() const = 0;
  virtual size_t kv_bytes() const = 0;
  // One line for logs and `jinx info`: device, weights, KV pool.
  virtual std::string describe() const = 0;

 private:
  std::vector<int32_t> last_picks_;  // the default submit(): the last step's picks, or -1
};

// A step's tokens with placeholders (see Executor::submit) replaced by the previous step's
// picks (`prev_picks`, one per output row, -1 where that row was not picked). Throws
// jinx::Error for a placeholder that names no picked row.
std::vector<int32_t> resolve_placeholders(std::span<const int32_t> tokens,
                                          std::span<const int32_t> prev_picks);
// The picks a step leaves for the next one's placeholders: tokens[k] where pick[k] is
// kPickArgmax or kPickSample, else -1.
std::vector<int32_t> picks_of(std::span<const uint8_t> pick, const int32_t* tokens, size_t n_out);

// Throws jinx::Error for an unknown device, a CUDA device in a build without CUDA, a missing
// GPU, or memory that cannot hold the weights and one block per sequence.
std::unique_ptr<Executor> make_executor(std::shared_ptr<const Model> model,
                                        const ExecutorOptions& options);

// The CPU executor (make_executor's choice for "cpu" on one process).
std::unique_ptr<Executor> make_cpu_executor(std::shared_ptr<const Model> model,
                                            const ExecutorOptions& options);

// Tensor parallelism on the CPU (model/tp_executor.cpp). Rank 0's executor for a sharded
// model: each step is broadcast to the group, every rank runs its shard, rank 0 gets the
// logits. Its construction tells the workers to load their shards (jinx::Error if one cannot);
// its destruction releases them.
std::unique_ptr<Executor> make_tp_executor(std::shared_ptr<const Model> model,
                                           const ExecutorOptions& options);
// What ranks other than 0 run instead of a command: load a shard when rank 0 makes a TP
// executor, run its steps, free it when that executor goes, until rank 0 calls
// end_tp_workers(). Returns the process exit code.
int run_tp_worker(std::shared_ptr<Communicator> comm);
// Rank 0, once at exit: lets the workers' run_tp_worker() return.
void end_tp_workers(Communicator& comm);

// Whether this build has the CUDA backend, and the GPUs the driver shows (0 without either).
bool cuda_built();
int cuda_device_count();

#ifdef JINX_CUDA
std::unique_ptr<Executor> make_cuda_executor(std::shared_ptr<const Model> model,
                                             const ExecutorOptions& options, int device);
#endif

}  // namespace jinx
