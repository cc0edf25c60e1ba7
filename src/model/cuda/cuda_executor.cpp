// The forward pass on an NVIDIA GPU: the weights copied to device memory once (BF16, Q8_0 /
// Q4_0 repacked for aligned loads, Q4_K / Q4_1 / MLX 4-bit as the 4-bit affine Q4A; every other
// format expanded to BF16; see model/device_repack.h), a paged KV pool sized from free device
// memory, and per step the decoder layers of model/decoder.cpp as a sequence of
// kernels from backend/cuda on one stream. The projections that read the same input are stacked
// into one matrix at upload (q|k|v, gate|up) so that a decode step streams each layer's input
// once and launches fewer kernels.
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

#include "backend/cpu/attention.h"
#include "backend/cpu/kernels.h"
#include "backend/cuda/gemv_jit.h"
#include "backend/cuda/ops.h"
#include "core/check.h"
#include "core/log.h"
#include "model/device_repack.h"
#include "model/executor.h"

namespace jinx {
namespace {

using cuda::check;

void check_blas_ok(cublasStatus_t st) {
  if (st != CUBLAS_STATUS_SUCCESS) fail("cuBLAS: setting the workspace failed (", int(st), ")");
}

// Device memory freed with the executor.
class DeviceArena {
 public:
  ~DeviceArena() {
    for (void* p : ptrs_) cudaFree(p);
  }
  void* alloc(size_t bytes) {
    void* p = nullptr;
    check(cudaMalloc(&p, std::max<size_t>(bytes, 256)),
          str("cudaMalloc ", bytes >> 20, " MiB").c_str());
    ptrs_.push_back(p);
    total_ += bytes;
    return p;
  }
  template <typename T>
  T* upload(const T* host, size_t n) {
    T* d = static_cast<T*>(alloc(n * sizeof(T)));
    check(cudaMemcpy(d, host, n * sizeof(T), cudaMemcpyHostToDevice), "upload");
    return d;
  }
  size_t total() const { return total_; }

 private:
  std::vector<void*> ptrs_;
  size_t total_ = 0;
};

// A device buffer that grows to the largest size asked of it. Growing waits for the device
// first: with overlap scheduling a step still in flight may be using the old buffer.
struct GrowBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  ~GrowBuffer() { cudaFree(ptr); }
  template <typename T>
  T* get(size_t n) {
    const size_t need = std::max<size_t>(n * sizeof(T), 256);
    if (need > bytes) {
      if (ptr) check(cudaDeviceSynchronize(), "synchronize before a buffer grows");
      cudaFree(ptr);
      ptr = nullptr;
      bytes = 0;
      check(cudaMalloc(&ptr, need), "cudaMalloc (activations)");
      bytes = need;
    }
    return static_cast<T*>(ptr);
  }
};

// Page-locked host memory for one step's uploads or downloads. Steps alternate between two, so
// that a step's copies may still be pending while the next step is staged (overlap
// scheduling); growing waits for the stream first.
struct PinnedBuffer {
  void* ptr = nullptr;
  size_t bytes = 0;
  ~PinnedBuffer() {
    if (ptr) cudaFreeHost(ptr);
  }
  uint8_t* get(size_t n, cudaStream_t s) {
    if (n > bytes) {
      check(cudaStreamSynchronize(s), "synchronize before a pinned buffer grows");
      if (ptr) cudaFreeHost(ptr);
      ptr = nullptr;
      bytes = 0;
      check(cudaMallocHost(&ptr, std::max<size_t>(n, 4096)), "cudaMallocHost (step staging)");
      bytes = std::max<size_t>(n, 4096);
    }
    return static_cast<uint8_t*>(ptr);
  }
};

// Arrays packed into one upload: add() them, then copy() stages them in pinned memory and
// sends them in one transfer; at(i) is array i's device address.
class Upload {
 public:
  template <typename T>
  size_t add(std::span<const T> a) {
    offset_ = (offset_ + 15) / 16 * 16;
    parts_.push_back({a.data(), a.size_bytes(), offset_});
    offset_ += a.size_bytes();
    return parts_.size() - 1;
  }
  void copy(PinnedBuffer& host, GrowBuffer& dev, cudaStream_t s) {
    uint8_t* h = host.get(offset_, s);
    for (const Part& p : parts_)
      if (p.bytes) std::memcpy(h + p.offset, p.src, p.bytes);
    base_ = dev.get<uint8_t>(offset_);
    if (offset_)
      check(cudaMemcpyAsync(base_, h, offset_, cudaMemcpyHostToDevice, s), "upload step");
  }
  template <typename T>
  T* at(size_t i) const {
    return reinterpret_cast<T*>(base_ + parts_[i].offset);
  }

 private:
  struct Part {
    const void* src;
    size_t bytes, offset;
  };
  std::vector<Part> parts_;
  size_t offset_ = 0;
  uint8_t* base_ = nullptr;
};

struct DevLinear {
  cuda::DeviceMatrix w;
  const float* bias = nullptr;  // [w.rows] or null
};

struct DevLayer {
  const float* attn_norm = nullptr;
  const float* ffn_norm = nullptr;
  const float* q_norm = nullptr;  // Qwen3
  const float* k_norm = nullptr;
  DevLinear qkv, o, gate_up, down;
};

// Stacks the rows of `parts` (same cols) into one device matrix, in the format and layout
// model/device_repack.h picks on the host; its label (e.g. "Q4A from Q4_K") is added to
// `formats` once.
cuda::DeviceMatrix upload_stacked(const std::vector<const WeightMatrix*>& parts, DeviceArena& arena,
                                  std::vector<std::string>& formats) {
  static_assert(kDeviceQ4A == cuda::kQ4A, "host and device tags of the 4-bit affine format");
  const HostDeviceMatrix h = pack_stacked(parts);
  JINX_CHECK(cuda::supported_weight_dtype(h.dtype), "no device format ", name(h.dtype));
  if (std::find(formats.begin(), formats.end(), h.label) == formats.end())
    formats.push_back(h.label);
  cuda::DeviceMatrix m;
  m.dtype = h.dtype;
  m.rows = h.rows;
  m.cols = h.cols;
  m.row_bytes = h.row_bytes;
  m.data = arena.upload(h.data.data(), h.data.size());
  if (!h.scales.empty()) m.scales = arena.upload(h.scales.data(), h.scales.size());
  if (!h.offsets.empty()) m.offsets = arena.upload(h.offsets.data(), h.offsets.size());
  return m;
}

const float* upload_vec(const std::vector<float>& v, DeviceArena& arena) {
  return v.empty() ? nullptr : arena.upload(v.data(), v.size());
}

// Biases of stacked projections side by side (zeros for a part without one); null when none has.
const float* upload_biases(const std::vector<const Linear*>& parts, DeviceArena& arena) {
  bool any = false;
  for (const Linear* l : parts) any = any || !l->bias.empty();
  if (!any) return nullptr;
  std::vector<float> b;
  for (const Linear* l : parts) {
    if (l->bias.empty()) {
      b.insert(b.end(), static_cast<size_t>(l->w.rows), 0.0f);
    } else {
      b.insert(b.end(), l->bias.begin(), l->bias.end());
    }
  }
  return arena.upload(b.data(), b.size());
}

DevLinear upload_linear(const std::vector<const Linear*>& parts, DeviceArena& arena,
                        std::vector<std::string>& formats) {
  std::vector<const WeightMatrix*> ws;
  for (const Linear* l : parts) ws.push_back(&l->w);
  return {upload_stacked(ws, arena, formats), upload_biases(parts, arena)};
}

class CudaExecutor final : public Executor {
 public:
  CudaExecutor(std::shared_ptr<const Model> model, const ExecutorOptions& o, int device);
  ~CudaExecutor() override;
  void forward_batch(const ForwardBatch& batch, float* logits, int32_t* tokens) override;
  // Enqueues the step and returns; its picked tokens reach `tokens` in wait(). Rows whose
  // logits are wanted are copied to `logits` before submit() returns (pageable memory: the
  // copy waits for the step), so only steps that need no logits overlap.
  void submit(const ForwardBatch& batch, float* logits, int32_t* tokens) override;
  void wait() override;
  bool runs_async() const override { return true; }
  bool samples_on_device() const override { return true; }
  int64_t n_kv_blocks() const override { return n_blocks_; }
  size_t kv_bytes() const override { return kv_bytes_; }
  std::string describe() const override {
    const std::string jit = cuda::gemv_jit_describe();
    return description_ + (cuda::pdl_enabled() ? ", programmatic dependent launch" : "") +
           (fuse_norm_ ? "" : ", norms unfused") +
           (gate_silu_   ? ""
            : fuse_silu_ ? ", SiLU in the down GEMV's input"
                         : ", SiLU unfused") +
           (cuda::attention_merge_in_kernel() ? ", attention merged by the last block" : "") +
           (fuse_rope_ ? "" : ", RoPE unfused") + (jit.empty() ? "" : ", " + jit);
  }

 private:
  void upload_weights();
  void allocate_kv(const ExecutorOptions& o);
  void check_batch(const ForwardBatch& b) const;
  void forward_eager(const ForwardBatch& b, int slot);
  // Device pointers to one step's metadata.
  struct StepMeta {
    const int32_t* tokens = nullptr;     // [n]
    const int32_t* positions = nullptr;  // [n]
    const int64_t* slots = nullptr;      // [n]
    const int32_t* out_rows = nullptr;   // [n_out]
    bool all_rows_out = false;           // out_rows is 0, 1, ..., n - 1 (every decode step)
    bool decode_only = false;            // one new row per sequence
    cuda::AttnBatch ab;
  };
  // Enqueues the whole forward pass (no copies, no sync): logits [n_out, vocab] to logits_.
  void run(int64_t n, int64_t n_out, const StepMeta& m);
  void layer(int64_t li, int64_t n, const StepMeta& m);
  void size_buffers(int64_t n, int64_t n_out);
  // Decode steps (one new token per sequence, every row sampled) replay a CUDA graph captured
  // once per padded batch size.
  bool graph_eligible(const ForwardBatch& b) const;
  void forward_graph(const ForwardBatch& b, int slot);
  // Draws the kPickSample rows' tokens over the argmax of every row (outside any graph: the
  // parameters change every step), copies the tokens to pinned memory when any row is picked,
  // and the logits of the kPickLogits rows (in runs of consecutive rows) to `logits`. Then
  // records the slot's event; wait() finishes.
  void fetch_results(const ForwardBatch& b, int64_t n_out, float* logits, int slot);
  void setup_graphs(const ExecutorOptions& o);
  void warm_up(const ExecutorOptions& o);
  void drop_graphs();
  std::vector<void*> buffer_ptrs() const;

  std::shared_ptr<const Model> model_;
  const ModelConfig& c_;
  int device_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  DeviceArena arena_;
  cuda::DeviceMatrix embed_, lm_head_;
  const float* final_norm_ = nullptr;
  const float* inv_freq_ = nullptr;
  std::vector<DevLayer> layers_;
  std::vector<cuda::PagedKv> kv_;
  int64_t n_blocks_ = 0, block_size_ = 0;
  size_t kv_bytes_ = 0;
  std::string description_;
  std::vector<std::string> weight_formats_;  // device formats of the weights, e.g. "Q4A from Q4_K"
  // Per-step buffers.
  GrowBuffer x_, h_, qkv_, att_, gu_, act_, out_h_, logits_, work_, scratch_, argmax_, argmax_keys_;
  bool fuse_norm_ = true;   // the norms applied inside the decode GEMVs
  bool gate_silu_ = true;   // SiLU x up in the gate/up GEMV (cuda::matmul_gated_silu)
  bool fuse_silu_ = false;  // else: SiLU x up staged as the down GEMV's input
  bool fuse_rope_ = true;   // decode steps: RoPE and the KV store inside the attention kernel
  GrowBuffer sampling_;     // RowSampling [n_out] then pick [n_out], for sample_rows
  GrowBuffer step_meta_;    // an eager step's metadata, one upload
  // Per slot (steps alternate): staged uploads, picked tokens coming back, and the event that
  // marks the step done.
  PinnedBuffer upload_host_[2], sampling_host_[2], picks_host_[2];
  cudaEvent_t done_[2] = {nullptr, nullptr};
  struct Pending {
    int slot = -1;  // -1: an empty step
    int32_t* tokens = nullptr;
    int64_t n_out = 0;
  };
  std::deque<Pending> pending_;  // submitted, not yet waited for (oldest first, at most 2)
  int next_slot_ = 0;
  std::vector<uint8_t> prev_picked_;  // per output row of the last step: its token is on the device
  int64_t max_out_ = 1;               // argmax_ capacity, allocated once (placeholders read it)
  // CUDA graphs for decode: sizes 1, 2, 4, ... up to max_seqs (at most kMaxSplitTokens).
  struct Graph {
    int64_t size = 0;
    cudaGraphExec_t exec = nullptr;
  };
  // Captures one decode step of sz rows (metadata m) into g; throws on failure.
  void capture(Graph* g, const StepMeta& m, int64_t sz);
  std::vector<Graph> graphs_;
  int64_t graph_width_ = 0;    // block-table columns of the graph layout
  int64_t graph_max_ctx_ = 0;  // longest context a graph step may hold
  int64_t graph_split_len_ = 0;
  // The graphs' metadata: a pinned host block per slot and one device twin, laid out for the
  // largest size (each graph uses a prefix of every array).
  void* meta_host_[2] = {nullptr, nullptr};
  GrowBuffer meta_dev_;
  size_t meta_bytes_ = 0;
  std::vector<void*> graph_ptrs_;  // buffer addresses the graphs were captured with
  GrowBuffer blas_workspace_;
};

CudaExecutor::CudaExecutor(std::shared_ptr<const Model> model, const ExecutorOptions& o, int device)
    : model_(std::move(model)), c_(model_->config()), device_(device) {
  // For comparisons: JINX_FUSE=0 runs norms, SiLU and RoPE as kernels of their own,
  // JINX_FUSE=norm fuses only the norms (and RoPE), JINX_FUSE=rope only RoPE into attention,
  // JINX_FUSE=silu-input stages SiLU x up as the down GEMV's input instead of computing it in
  // the gate/up GEMV (the default: norms into the GEMVs that read them, SiLU x up in the gate/up
  // GEMV's epilogue, RoPE and the KV store into decode attention).
  const std::string fuse = std::getenv("JINX_FUSE") ? std::getenv("JINX_FUSE") : "";
  fuse_norm_ = fuse != "0" && fuse != "rope";
  gate_silu_ = fuse.empty();
  fuse_silu_ = fuse == "silu-input";
  const char* fr = std::getenv("JINX_FUSE_ROPE");  // 0: rope_kv_store as a kernel of its own
  fuse_rope_ = fuse != "0" && !(fr && std::string(fr) == "0");
  check(cudaSetDevice(device_), "cudaSetDevice");
  check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
  for (cudaEvent_t& e : done_)
    check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
  if (cublasCreate(&blas_) != CUBLAS_STATUS_SUCCESS) fail("cuBLAS: cannot create a handle");
  upload_weights();
  // Run-time compiled GEMVs (unless JINX_NVRTC=0) are built now, before any graph capture.
  cuda::matmul_prepare(lm_head_);
  for (const DevLayer& d : layers_) {
    for (const DevLinear* l : {&d.qkv, &d.o, &d.gate_up, &d.down}) cuda::matmul_prepare(l->w);
    if (gate_silu_) cuda::matmul_prepare(d.gate_up.w, true);
  }
  allocate_kv(o);
  if (o.cuda_graphs) setup_graphs(o);
  const char* wu = std::getenv("JINX_WARMUP");
  if (!(wu && std::string(wu) == "0")) warm_up(o);
}

// Steps on made-up input before the first request, so that no request pays for what the
// first use of each path costs (loading kernels, cuBLAS's first GEMM, capturing the decode
// graphs): a prefill of up to 64 tokens (no more than a step or the model takes) into the
// pool's first blocks (whose KV rows the sequences those blocks go to overwrite before reading
// them), then one decode step per graph size made of padding rows (token 0 at position 0, no KV
// stored, a one-token context in block 0: what every graph replay pads with). JINX_WARMUP=0
// skips it.
void CudaExecutor::warm_up(const ExecutorOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t model_len = o.max_model_len > 0 ? o.max_model_len : c_.max_position_embeddings;
  const int64_t P =
      std::min({int64_t{64}, n_blocks_ * block_size_, o.max_batched_tokens, model_len});
  auto run = [&](int64_t n_seqs, int64_t n_tokens, bool prefill) {
    std::vector<int32_t> tokens(n_tokens, 0), positions(n_tokens, 0), qstart(n_seqs + 1);
    std::vector<int32_t> ctx(n_seqs), out_rows(n_seqs), picks(n_seqs);
    std::vector<int64_t> slots(n_tokens, -1);
    const int64_t width = prefill ? (n_tokens + block_size_ - 1) / block_size_ : 1;
    std::vector<int32_t> tables(n_seqs * width, 0);
    for (int64_t s = 0; s <= n_seqs; ++s)  // prefill: one sequence of n_tokens rows
      qstart[s] = static_cast<int32_t>(prefill ? s * n_tokens : s);
    for (int64_t s = 0; s < n_seqs; ++s) {
      ctx[s] = static_cast<int32_t>(prefill ? n_tokens : 1);
      out_rows[s] = static_cast<int32_t>(prefill ? n_tokens - 1 : s);
    }
    if (prefill) {
      for (int64_t t = 0; t < n_tokens; ++t) {
        positions[t] = static_cast<int32_t>(t);
        slots[t] = t;
      }
      for (int64_t i = 0; i < width; ++i) tables[i] = static_cast<int32_t>(i);
    }
    const std::vector<uint8_t> pick(n_seqs, sampling::kPickArgmax);
    ForwardBatch b;
    b.tokens = tokens;
    b.positions = positions;
    b.slot_mapping = slots;
    b.attn = cpu::AttnBatch{n_seqs, qstart.data(), ctx.data(), tables.data(), width};
    b.out_rows = out_rows;
    b.pick = pick;
    submit(b, nullptr, picks.data());
    wait();
  };
  if (P >= 2) run(1, P, true);
  for (const Graph& g : graphs_) run(g.size, g.size, false);
  if (graphs_.empty()) run(1, 1, false);  // eager decode kernels
  prev_picked_.clear();
  log_info(
      "cuda executor warm-up (", P, "-token prefill, ", graphs_.size(),
      " decode graphs captured): ",
      static_cast<int>(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count()),
      " ms");
}

CudaExecutor::~CudaExecutor() {
  if (stream_) cudaStreamSynchronize(stream_);
  drop_graphs();
  for (void* h : meta_host_)
    if (h) cudaFreeHost(h);
  for (cudaEvent_t e : done_)
    if (e) cudaEventDestroy(e);
  if (blas_) cublasDestroy(blas_);
  if (stream_) cudaStreamDestroy(stream_);
}

void CudaExecutor::upload_weights() {
  const ModelWeights& w = model_->weights();
  std::vector<std::string>& f = weight_formats_;
  embed_ = upload_stacked({&w.embed}, arena_, f);
  // Tied heads share the embedding's device copy.
  lm_head_ = w.lm_head.data == w.embed.data ? embed_ : upload_stacked({&w.lm_head}, arena_, f);
  final_norm_ = upload_vec(w.final_norm, arena_);
  const std::vector<float> inv_freq = c_.rope_inv_freq();
  inv_freq_ = upload_vec(inv_freq, arena_);
  for (const LayerWeights& L : w.layers) {
    DevLayer d;
    d.attn_norm = upload_vec(L.attn_norm, arena_);
    d.ffn_norm = upload_vec(L.ffn_norm, arena_);
    d.q_norm = upload_vec(L.q_norm, arena_);
    d.k_norm = upload_vec(L.k_norm, arena_);
    d.qkv = upload_linear({&L.q, &L.k, &L.v}, arena_, f);
    d.o = upload_linear({&L.o}, arena_, f);
    d.gate_up = upload_linear({&L.gate, &L.up}, arena_, f);
    d.down = upload_linear({&L.down}, arena_, f);
    layers_.push_back(d);
  }
}

void CudaExecutor::allocate_kv(const ExecutorOptions& o) {
  if (!cpu::is_kv_dtype(o.kv_dtype))
    fail("KV cache dtype must be f32, f16, bf16, int8 or fp8 on CUDA, not ", name(o.kv_dtype));
  block_size_ = o.block_size;
  const size_t per_block = PagedKvStorage::bytes_per_block(c_, o.block_size, o.kv_dtype);
  // Activations for a full step, claimed now so that the pool does not take their memory.
  const int64_t T = std::max<int64_t>(o.max_batched_tokens, 1);
  const int64_t q_dim = c_.n_heads * c_.head_dim, kv_dim = c_.n_kv_heads * c_.head_dim;
  x_.get<float>(T * c_.hidden_size);
  h_.get<float>(T * c_.hidden_size);
  qkv_.get<float>(T * (q_dim + 2 * kv_dim));
  att_.get<float>(T * q_dim);
  gu_.get<float>(T * 2 * c_.intermediate_size);
  act_.get<float>(T * c_.intermediate_size);
  logits_.get<float>(std::max<int64_t>(o.max_seqs, 1) * c_.vocab_size);
  // Allocated once: a step's placeholders read the step before's picks from argmax_.
  max_out_ = std::max<int64_t>(o.max_seqs, 1);
  argmax_.get<int32_t>(max_out_);
  argmax_keys_.get<unsigned long long>(max_out_);
  size_t scratch = cuda::matmul_scratch_bytes(lm_head_, T);
  for (const DevLayer& d : layers_)
    for (const DevLinear* l : {&d.qkv, &d.o, &d.gate_up, &d.down})
      scratch = std::max(scratch, cuda::matmul_scratch_bytes(l->w, T));
  scratch_.get<uint8_t>(scratch);
  const size_t work_bytes =
      cuda::attention_work_bytes(cuda::kMaxSplitTokens, c_.n_heads, c_.head_dim);
  check(cudaMemset(work_.get<uint8_t>(work_bytes), 0, work_bytes), "zero attention work memory");
  if (o.n_blocks > 0) {
    n_blocks_ = o.n_blocks;
  } else {
    size_t free_b = 0, total_b = 0;
    check(cudaMemGetInfo(&free_b, &total_b), "cudaMemGetInfo");
    const double util = std::clamp(o.gpu_memory_utilization, 0.05, 0.99);
    const double reserve = static_cast<double>(total_b) * (1.0 - util);  // left to others
    const double avail = static_cast<double>(free_b) - reserve - 256.0 * (1 << 20);
    n_blocks_ = avail > 0 ? static_cast<int64_t>(avail / static_cast<double>(per_block)) : 0;
    n_blocks_ = std::min<int64_t>(n_blocks_, int64_t{1} << 30 >> 4);  // block ids are int32
  }
  if (n_blocks_ < 1)
    fail("no GPU memory is left for the KV cache after the weights (", arena_.total() >> 20,
         " MiB); raise --gpu-memory-utilization");
  const size_t half = static_cast<size_t>(n_blocks_ * o.block_size * c_.n_kv_heads) *
                      cpu::kv_row_bytes(o.kv_dtype, c_.head_dim);
  for (int64_t i = 0; i < c_.n_layers; ++i) {
    cuda::PagedKv kv;
    kv.k = arena_.alloc(half);
    kv.v = arena_.alloc(half);
    kv.dtype = o.kv_dtype;
    kv.n_blocks = n_blocks_;
    kv.block_size = o.block_size;
    kv.n_kv_heads = c_.n_kv_heads;
    kv.head_dim = c_.head_dim;
    kv_.push_back(kv);
  }
  kv_bytes_ = half * 2 * static_cast<size_t>(c_.n_layers);
  std::string formats;
  for (const std::string& f : weight_formats_) formats += (formats.empty() ? "" : ", ") + f;
  description_ = str("cuda:", device_, " ", cuda::describe_device(device_), ", weights ",
                     (arena_.total() - kv_bytes_) >> 20, " MiB (", formats, "), KV pool ",
                     n_blocks_, " blocks (", kv_bytes_ >> 20, " MiB, ", name(o.kv_dtype), ")");
}

// The kernels trust their metadata; everything is checked here first, as the CPU kernels do.
void CudaExecutor::check_batch(const ForwardBatch& b) const {
  const int64_t n = static_cast<int64_t>(b.tokens.size());
  JINX_CHECK(static_cast<int64_t>(b.positions.size()) == n, "one position per token");
  JINX_CHECK(static_cast<int64_t>(b.slot_mapping.size()) == n, "one KV slot per token");
  const cpu::AttnBatch& a = b.attn;
  JINX_CHECK(a.n_seqs > 0 && a.query_start[0] == 0 && a.query_start[a.n_seqs] == n,
             "sequence boundaries must cover the batch");
  for (int64_t t = 0; t < n; ++t) {
    const int32_t tok = b.tokens[t];
    if (tok < 0) {  // a placeholder for a token the step before picked (Executor::submit)
      const int64_t k = -int64_t{tok} - 1;
      if (k >= static_cast<int64_t>(prev_picked_.size()) || !prev_picked_[k])
        fail("placeholder token ", tok, " names no picked row of the previous step");
    } else if (tok >= c_.vocab_size) {
      fail("token id ", tok, " is outside the vocabulary (", c_.vocab_size, ")");
    }
    JINX_CHECK(b.slot_mapping[t] < n_blocks_ * block_size_, "KV slot ", b.slot_mapping[t],
               " outside the pool");
  }
  for (int64_t s = 0; s < a.n_seqs; ++s) {
    const int64_t n_new = int64_t{a.query_start[s + 1]} - a.query_start[s];
    const int64_t ctx = a.context_len[s];
    JINX_CHECK(n_new >= 0 && ctx >= n_new, "sequence ", s, ": bad context length");
    JINX_CHECK(ctx <= a.max_blocks_per_seq * block_size_, "sequence ", s, " exceeds its table");
    const int32_t* bt = a.block_tables + s * a.max_blocks_per_seq;
    for (int64_t i = 0; i < (ctx + block_size_ - 1) / block_size_; ++i)
      JINX_CHECK(bt[i] >= 0 && bt[i] < n_blocks_, "sequence ", s, " block ", bt[i],
                 " outside the pool");
  }
  for (int32_t r : b.out_rows) JINX_CHECK(r >= 0 && r < n, "output row out of range");
}

void CudaExecutor::layer(int64_t li, int64_t n, const StepMeta& m) {
  const DevLayer& L = layers_[static_cast<size_t>(li)];
  const int64_t H = c_.hidden_size, hd = c_.head_dim, ff = c_.intermediate_size;
  const int64_t q_dim = c_.n_heads * hd, kv_dim = c_.n_kv_heads * hd, ld = q_dim + 2 * kv_dim;
  const float eps = c_.rms_norm_eps;
  float *x = x_.get<float>(0), *h = h_.get<float>(0);
  float* qkv = qkv_.get<float>(0);
  const cuda::MatmulContext mc{
      stream_, blas_, scratch_.ptr, scratch_.bytes, blas_workspace_.ptr, blas_workspace_.bytes};
  // The residual stream x: each norm is applied by the matmul that reads it (inside the GEMV
  // for decode; h is the scratch for the unfused path), and the o and down projections add
  // their output to x in their epilogue.
  using In = cuda::MatmulInput;
  cuda::matmul(L.qkv.w, x, n, qkv, ld, mc, L.qkv.bias,
               In{In::kRmsNorm, L.attn_norm, eps, h, fuse_norm_});
  if (L.q_norm) {
    cuda::rmsnorm_heads(qkv, ld, n, c_.n_heads, hd, L.q_norm, eps, stream_);
    cuda::rmsnorm_heads(qkv + q_dim, ld, n, c_.n_kv_heads, hd, L.k_norm, eps, stream_);
  }
  const cuda::PagedKv& kv = kv_[static_cast<size_t>(li)];
  // Decode steps rotate and store the new K/V inside the attention kernel.
  const bool fuse_rope = fuse_rope_ && m.decode_only && cuda::attention_fuses_rope(kv);
  const cuda::AttnNewKv new_kv{qkv + q_dim, qkv + q_dim + kv_dim, ld,     m.positions,
                               inv_freq_,   c_.rope_interleaved,  m.slots};
  if (!fuse_rope)
    cuda::rope_kv_store(qkv, qkv + q_dim, qkv + q_dim + kv_dim, ld, n, c_.n_heads, m.positions,
                        inv_freq_, c_.rope_interleaved, kv, m.slots, stream_);
  float* att = att_.get<float>(0);
  cuda::paged_attention(qkv, ld, att, c_.n_heads, kv, m.ab, c_.attn_scale(), work_.ptr, stream_,
                        fuse_rope ? &new_kv : nullptr);
  cuda::matmul(L.o.w, att, n, x, H, mc, L.o.bias, In{}, true);
  float* gu = gu_.get<float>(0);
  float* act = act_.get<float>(0);
  if (gate_silu_ && cuda::matmul_gates(L.gate_up.w, n)) {
    cuda::matmul_gated_silu(L.gate_up.w, x, n, act, ff, mc, L.gate_up.bias,
                            In{In::kRmsNorm, L.ffn_norm, eps, h, fuse_norm_});
    cuda::matmul(L.down.w, act, n, x, H, mc, L.down.bias, In{}, true);
    return;
  }
  cuda::matmul(L.gate_up.w, x, n, gu, 2 * ff, mc, L.gate_up.bias,
               In{In::kRmsNorm, L.ffn_norm, eps, h, fuse_norm_});
  cuda::matmul(L.down.w, gu, n, x, H, mc, L.down.bias,
               In{In::kSiluMul, nullptr, 0.0f, act, fuse_silu_}, true);
}

void CudaExecutor::size_buffers(int64_t n, int64_t n_out) {
  const int64_t H = c_.hidden_size, q_dim = c_.n_heads * c_.head_dim;
  const int64_t kv_dim = c_.n_kv_heads * c_.head_dim, ff = c_.intermediate_size;
  x_.get<float>(n * H);
  h_.get<float>(n * H);
  qkv_.get<float>(n * (q_dim + 2 * kv_dim));
  att_.get<float>(n * q_dim);
  gu_.get<float>(n * 2 * ff);
  act_.get<float>(n * ff);
  out_h_.get<float>(std::max<int64_t>(n_out, 1) * H);
  logits_.get<float>(std::max<int64_t>(n_out, 1) * c_.vocab_size);
  argmax_.get<int32_t>(std::max<int64_t>(n_out, 1));
  argmax_keys_.get<unsigned long long>(std::max<int64_t>(n_out, 1));
  size_t scratch = cuda::matmul_scratch_bytes(lm_head_, n_out);
  for (const DevLayer& d : layers_)
    for (const DevLinear* l : {&d.qkv, &d.o, &d.gate_up, &d.down})
      scratch = std::max(scratch, cuda::matmul_scratch_bytes(l->w, n));
  scratch_.get<uint8_t>(scratch);
}

void CudaExecutor::run(int64_t n, int64_t n_out, const StepMeta& m) {
  cuda::embed(embed_, m.tokens, n, x_.get<float>(0), stream_, argmax_.get<int32_t>(0));
  for (int64_t li = 0; li < c_.n_layers; ++li) layer(li, n, m);
  if (n_out == 0) return;
  const int64_t H = c_.hidden_size;
  float *x = x_.get<float>(0), *h = h_.get<float>(0), *out_h = out_h_.get<float>(0);
  const cuda::MatmulContext mc{
      stream_, blas_, scratch_.ptr, scratch_.bytes, blas_workspace_.ptr, blas_workspace_.bytes};
  float* logits = logits_.get<float>(0);
  if (m.all_rows_out) {
    // Every row samples (decode): no gather. (The norm stays a kernel of its own: fused, each
    // of the head GEMV's ~40k blocks would re-normalise the input row before streaming its
    // weights, which the largest kernel of the step may not afford; unmeasured.)
    cuda::rmsnorm(x, final_norm_, h, n, H, c_.rms_norm_eps, stream_);
    cuda::matmul(lm_head_, h, n_out, logits, c_.vocab_size, mc);
  } else {
    // The final norm over every row (cheap), then only the rows that sample go through the
    // output head.
    cuda::rmsnorm(x, final_norm_, h, n, H, c_.rms_norm_eps, stream_);
    cuda::gather_rows(h, H, m.out_rows, n_out, out_h, stream_);
    cuda::matmul(lm_head_, out_h, n_out, logits, c_.vocab_size, mc);
  }
  // Every row's argmax (one small launch): greedy rows then need only their id back.
  cuda::argmax_rows(logits, n_out, c_.vocab_size, argmax_.get<int32_t>(0),
                    argmax_keys_.get<unsigned long long>(0), stream_);
}

std::vector<void*> CudaExecutor::buffer_ptrs() const {
  return {x_.ptr,      h_.ptr,           qkv_.ptr,     att_.ptr,  gu_.ptr,
          act_.ptr,    out_h_.ptr,       logits_.ptr,  work_.ptr, scratch_.ptr,
          argmax_.ptr, argmax_keys_.ptr, meta_dev_.ptr};
}

void CudaExecutor::fetch_results(const ForwardBatch& b, int64_t n_out, float* logits, int slot) {
  const int64_t V = c_.vocab_size;
  auto picked = [&](uint8_t what) {
    return std::find(b.pick.begin(), b.pick.end(), what) != b.pick.end();
  };
  if (picked(sampling::kPickSample)) {
    // One transfer of the rows' parameters and picks, then one block per sampled row.
    const size_t pbytes = static_cast<size_t>(n_out) * sizeof(sampling::RowSampling);
    const size_t bytes = pbytes + static_cast<size_t>(n_out);
    uint8_t* h = sampling_host_[slot].get(bytes, stream_);
    std::memcpy(h, b.sampling.data(), pbytes);
    std::memcpy(h + pbytes, b.pick.data(), static_cast<size_t>(n_out));
    auto* d = sampling_.get<uint8_t>(bytes);
    check(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, stream_),
          "copy sampling parameters");
    cuda::sample_rows(logits_.get<float>(0), n_out, V, d + pbytes,
                      reinterpret_cast<const sampling::RowSampling*>(d), argmax_.get<int32_t>(0),
                      stream_);
  }
  if (picked(sampling::kPickArgmax) || picked(sampling::kPickSample)) {
    uint8_t* h = picks_host_[slot].get(static_cast<size_t>(n_out) * 4, stream_);
    check(cudaMemcpyAsync(h, argmax_.ptr, static_cast<size_t>(n_out) * 4, cudaMemcpyDeviceToHost,
                          stream_),
          "copy tokens");
  }
  auto wants_logits = [&](int64_t i) {
    return b.pick.empty() || b.pick[static_cast<size_t>(i)] == sampling::kPickLogits;
  };
  for (int64_t i = 0; i < n_out;) {
    if (!wants_logits(i)) {
      ++i;
      continue;
    }
    int64_t j = i;
    while (j < n_out && wants_logits(j)) ++j;
    check(cudaMemcpyAsync(logits + i * V, static_cast<float*>(logits_.ptr) + i * V,
                          static_cast<size_t>((j - i) * V) * 4, cudaMemcpyDeviceToHost, stream_),
          "copy logits");
    i = j;
  }
  check(cudaEventRecord(done_[slot], stream_), "record step event");
}

void CudaExecutor::forward_batch(const ForwardBatch& b, float* logits, int32_t* tokens) {
  submit(b, logits, tokens);
  wait();
}

void CudaExecutor::submit(const ForwardBatch& b, float* logits, int32_t* tokens) {
  JINX_CHECK(pending_.size() < 2, "submit(): two steps are already in flight");
  const int64_t n = static_cast<int64_t>(b.tokens.size());
  const int64_t n_out = static_cast<int64_t>(b.out_rows.size());
  if (n == 0) {
    pending_.push_back(Pending{});
    prev_picked_.clear();
    return;
  }
  check_batch(b);
  JINX_CHECK(b.pick.empty() || b.pick.size() == b.out_rows.size(),
             "pick must have one entry per output row");
  for (uint8_t p : b.pick) JINX_CHECK(p <= sampling::kPickSample, "bad pick ", int(p));
  JINX_CHECK(std::find(b.pick.begin(), b.pick.end(), sampling::kPickSample) == b.pick.end() ||
                 b.sampling.size() == b.out_rows.size(),
             "sampled rows need one RowSampling per output row");
  JINX_CHECK(c_.vocab_size < (int64_t{1} << 31), "vocabulary too large");
  const bool any_picked = std::any_of(b.pick.begin(), b.pick.end(), [](uint8_t p) {
    return p == sampling::kPickArgmax || p == sampling::kPickSample;
  });
  JINX_CHECK(!any_picked || tokens != nullptr, "forward_batch: token rows without an output");
  const bool placeholders =
      std::any_of(b.tokens.begin(), b.tokens.end(), [](int32_t t) { return t < 0; });
  // (argmax_ must not move under a step that reads the step before's picks from it)
  JINX_CHECK(!placeholders || n_out <= max_out_, "more output rows than sequences");
  check(cudaSetDevice(device_), "cudaSetDevice");
  const int slot = next_slot_;
  next_slot_ ^= 1;
  if (graph_eligible(b)) {
    forward_graph(b, slot);
  } else {
    forward_eager(b, slot);
  }
  fetch_results(b, n_out, logits, slot);
  pending_.push_back(Pending{slot, any_picked ? tokens : nullptr, n_out});
  prev_picked_.assign(static_cast<size_t>(n_out), 0);
  for (size_t k = 0; k < b.pick.size(); ++k)
    prev_picked_[k] = b.pick[k] == sampling::kPickArgmax || b.pick[k] == sampling::kPickSample;
  if (!graphs_.empty() && buffer_ptrs() != graph_ptrs_) drop_graphs();  // a buffer moved
}

void CudaExecutor::wait() {
  JINX_CHECK(!pending_.empty(), "wait(): no step in flight");
  const Pending p = pending_.front();
  pending_.pop_front();
  if (p.slot < 0) return;
  check(cudaEventSynchronize(done_[p.slot]), "forward");
  if (p.tokens) std::memcpy(p.tokens, picks_host_[p.slot].ptr, static_cast<size_t>(p.n_out) * 4);
}

void CudaExecutor::forward_eager(const ForwardBatch& b, int slot) {
  const int64_t n = static_cast<int64_t>(b.tokens.size());
  const int64_t n_out = static_cast<int64_t>(b.out_rows.size());
  size_buffers(n, n_out);
  const cpu::AttnBatch& a = b.attn;
  // Sequences with many new rows go to the tensor-core prefill kernel, tile by tile.
  const std::vector<int32_t> tiles = cuda::make_prefill_tiles(a.query_start, a.n_seqs, kv_[0]);
  Upload up;
  const size_t i_tok = up.add(b.tokens), i_pos = up.add(b.positions);
  const size_t i_slot = up.add(b.slot_mapping), i_out = up.add(b.out_rows);
  const size_t i_qs = up.add(std::span<const int32_t>(a.query_start, a.n_seqs + 1));
  const size_t i_ctx = up.add(std::span<const int32_t>(a.context_len, a.n_seqs));
  const size_t i_tab =
      up.add(std::span<const int32_t>(a.block_tables, a.n_seqs * a.max_blocks_per_seq));
  const size_t i_tiles = up.add(std::span<const int32_t>(tiles));
  up.copy(upload_host_[slot], step_meta_, stream_);
  StepMeta m;
  m.tokens = up.at<const int32_t>(i_tok);
  m.positions = up.at<const int32_t>(i_pos);
  m.slots = up.at<const int64_t>(i_slot);
  m.out_rows = up.at<const int32_t>(i_out);
  m.all_rows_out = n_out == n;
  for (int64_t i = 0; m.all_rows_out && i < n_out; ++i) m.all_rows_out = b.out_rows[i] == i;
  m.decode_only = a.n_seqs == n && tiles.empty();
  for (int64_t i = 0; m.decode_only && i < a.n_seqs; ++i)
    m.decode_only = a.query_start[i + 1] - a.query_start[i] == 1;
  m.ab.n_seqs = a.n_seqs;
  m.ab.n_tokens = n;
  m.ab.query_start = up.at<const int32_t>(i_qs);
  m.ab.context_len = up.at<const int32_t>(i_ctx);
  m.ab.block_tables = up.at<const int32_t>(i_tab);
  m.ab.max_blocks_per_seq = a.max_blocks_per_seq;
  m.ab.max_context_len = *std::max_element(a.context_len, a.context_len + a.n_seqs);
  if (!tiles.empty()) {
    m.ab.prefill_tiles = up.at<const int32_t>(i_tiles);
    m.ab.n_prefill_tiles = static_cast<int64_t>(tiles.size() / 2);
  }
  run(n, n_out, m);
}

void CudaExecutor::setup_graphs(const ExecutorOptions& o) {
  const int64_t max_size = std::min<int64_t>(o.max_seqs, cuda::kMaxSplitTokens);
  const int64_t model_len = o.max_model_len > 0 ? o.max_model_len : c_.max_position_embeddings;
  graph_max_ctx_ = std::min(model_len, n_blocks_ * block_size_);
  graph_width_ = (graph_max_ctx_ + block_size_ - 1) / block_size_;
  graph_split_len_ = cuda::kMaxSplits;  // pieces per row (fixed_split_len)
  for (int64_t sz = 1; sz <= max_size; sz *= 2) graphs_.push_back({sz, nullptr});
  if (graphs_.empty()) return;
  const int64_t B = graphs_.back().size;
  // tokens, positions, out_rows, context_len [B]; query_start [B + 1]; tables [B, W]; then
  // slots [B] (int64, 8-aligned)
  meta_bytes_ = static_cast<size_t>(4 * (5 * B + 1 + B * graph_width_) + 8 + 8 * B);
  for (void*& h : meta_host_)
    check(cudaMallocHost(&h, meta_bytes_), "cudaMallocHost (graph metadata)");
  meta_dev_.get<uint8_t>(meta_bytes_);
  // cuBLAS may not allocate while a stream is being captured: give it its workspace now.
  constexpr size_t kBlasWorkspace = size_t{32} << 20;
  check_blas_ok(
      cublasSetWorkspace(blas_, blas_workspace_.get<uint8_t>(kBlasWorkspace), kBlasWorkspace));
  size_buffers(B, B);
  graph_ptrs_ = buffer_ptrs();
}

void CudaExecutor::drop_graphs() {
  for (Graph& g : graphs_) {
    if (g.exec) cudaGraphExecDestroy(g.exec);
    g.exec = nullptr;
  }
  graph_ptrs_ = buffer_ptrs();
}

bool CudaExecutor::graph_eligible(const ForwardBatch& b) const {
  const int64_t n = static_cast<int64_t>(b.tokens.size());
  if (graphs_.empty() || n > graphs_.back().size || b.attn.n_seqs != n) return false;
  if (static_cast<int64_t>(b.out_rows.size()) != n) return false;
  for (int64_t i = 0; i < n; ++i) {  // one new token per sequence, every row sampled
    if (b.out_rows[i] != i || b.attn.query_start[i + 1] != i + 1) return false;
    if (b.attn.context_len[i] > graph_max_ctx_) return false;
  }
  return true;
}

// Pads the batch to the graph's size (padding rows: token 0 at position 0, KV slot -1 so
// nothing is stored, a one-token context in block 0; their outputs are ignored), copies the
// metadata in one transfer and replays the graph, capturing it on first use.
void CudaExecutor::forward_graph(const ForwardBatch& b, int slot) {
  const int64_t n = static_cast<int64_t>(b.tokens.size());
  Graph* g = &graphs_.front();
  while (g->size < n) ++g;
  const int64_t B = graphs_.back().size, W = graph_width_, sz = g->size;
  auto* h = static_cast<uint8_t*>(meta_host_[slot]);
  auto* tokens = reinterpret_cast<int32_t*>(h);
  auto* positions = tokens + B;
  auto* out_rows = positions + B;
  auto* ctx = out_rows + B;
  auto* qstart = ctx + B;
  auto* tables = qstart + B + 1;
  const size_t slots_off = (4 * static_cast<size_t>(5 * B + 1 + B * W) + 7) / 8 * 8;
  auto* slots = reinterpret_cast<int64_t*>(h + slots_off);
  const cpu::AttnBatch& a = b.attn;
  for (int64_t i = 0; i < sz; ++i) {
    const bool real = i < n;
    tokens[i] = real ? b.tokens[i] : 0;
    positions[i] = real ? b.positions[i] : 0;
    out_rows[i] = static_cast<int32_t>(i);
    ctx[i] = real ? a.context_len[i] : 1;
    qstart[i] = static_cast<int32_t>(i);
    slots[i] = real ? b.slot_mapping[i] : -1;
    int32_t* row = tables + i * W;
    const int64_t used = real ? std::min<int64_t>(W, (ctx[i] + block_size_ - 1) / block_size_) : 0;
    if (used > 0) std::copy_n(a.block_tables + i * a.max_blocks_per_seq, used, row);
    std::fill(row + used, row + W, 0);
  }
  qstart[sz] = static_cast<int32_t>(sz);
  // Two copies: everything up to this size's block-table rows, then the slots.
  auto* d = static_cast<uint8_t*>(meta_dev_.ptr);
  const size_t head = reinterpret_cast<uint8_t*>(tables + sz * W) - h;
  check(cudaMemcpyAsync(d, h, head, cudaMemcpyHostToDevice, stream_), "copy graph metadata");
  check(cudaMemcpyAsync(d + slots_off, slots, 8 * static_cast<size_t>(sz), cudaMemcpyHostToDevice,
                        stream_),
        "copy graph slots");
  if (!g->exec) {
    StepMeta m;
    m.tokens = reinterpret_cast<const int32_t*>(d);
    m.positions = m.tokens + B;
    m.out_rows = m.positions + B;
    m.ab.context_len = m.out_rows + B;
    m.ab.query_start = m.ab.context_len + B;
    m.ab.block_tables = m.ab.query_start + B + 1;
    m.slots = reinterpret_cast<const int64_t*>(d + slots_off);
    m.ab.n_seqs = sz;
    m.ab.n_tokens = sz;
    m.ab.max_blocks_per_seq = W;
    m.ab.max_context_len = graph_max_ctx_;
    m.ab.fixed_split_len = graph_split_len_;
    m.all_rows_out = true;  // out_rows[i] = i
    m.decode_only = true;
    try {
      capture(g, m, sz);
    } catch (const Error& e) {
      if (!cuda::pdl_enabled()) throw;
      // A driver that takes programmatic launches on a stream but not into a graph: without.
      log_warn("CUDA graph capture with programmatic dependent launch failed (", e.what(),
               "); turning it off");
      cuda::pdl_disable();
      capture(g, m, sz);
    }
  }
  check(cudaGraphLaunch(g->exec, stream_), "graph launch");
}

void CudaExecutor::capture(Graph* g, const StepMeta& m, int64_t sz) {
  cudaGraph_t graph = nullptr;
  check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal), "begin capture");
  try {
    run(sz, sz, m);
  } catch (...) {
    cudaStreamEndCapture(stream_, &graph);
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    throw;
  }
  const cudaError_t ended = cudaStreamEndCapture(stream_, &graph);
  if (ended != cudaSuccess) {
    if (graph) cudaGraphDestroy(graph);
    cudaGetLastError();
    check(ended, "end capture");
  }
  const cudaError_t e = cudaGraphInstantiate(&g->exec, graph, 0);
  cudaGraphDestroy(graph);
  if (e != cudaSuccess) {
    g->exec = nullptr;
    cudaGetLastError();
    check(e, "instantiate graph");
  }
}

}  // namespace

std::unique_ptr<Executor> make_cuda_executor(std::shared_ptr<const Model> model,
                                             const ExecutorOptions& options, int device) {
  auto e = std::make_unique<CudaExecutor>(std::move(model), options, device);
  log_info("executor: ", e->describe());
  return e;
}

}  // namespace jinx
