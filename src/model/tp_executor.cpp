// Tensor parallelism on the CPU: rank 0 runs the engine (scheduler, sampler, HTTP) and
// broadcasts each step's flat batch; every rank runs the forward pass over its shard, the
// row-parallel layers summed by all-reduces inside Model::run, and only rank 0 computes the
// output head. The protocol is a fixed header then the step's arrays:
//   setup: model path, --quantize, threads, KV pool geometry -> each worker loads its shard,
//          and every rank reports whether it could (an all-reduce of failures);
//   step:  tokens, positions, KV slots, sequence starts, context lengths, block tables;
//   embed: sequences for Model::embed (the collectives inside it need every rank);
//   stop:  the executor is gone, the worker frees its shard and waits for the next setup;
//   quit:  rank 0 is exiting.
#include <algorithm>
#include <array>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "core/log.h"
#include "model/executor.h"

namespace jinx {

namespace {

enum Kind : int64_t { kSetup = 1, kStep = 2, kStop = 3, kQuit = 4, kEmbed = 5 };
// kind, then: setup {path bytes, quantize, threads, n_blocks, block_size, kv dtype, exact
// activations}; step {n_tokens, n_seqs, max_blocks}; embed {n_seqs, n_tokens, pooling,
// normalize}, then the lengths and the tokens.
using Header = std::array<int64_t, 8>;

template <typename T>
void bcast_vec(Communicator& c, std::vector<T>& v) {
  c.broadcast(v.data(), v.size() * sizeof(T), 0);
}

// Rank 0's side.
class TpExecutor final : public Executor {
 public:
  TpExecutor(std::shared_ptr<const Model> model, const ExecutorOptions& o)
      : comm_(model->comm()), model_(model), threads_(o.threads),
        inner_(make_cpu_executor(model, o)) {
    std::string path = model->path();
    Header h = {kSetup, static_cast<int64_t>(path.size()), static_cast<int64_t>(o.quantize),
                o.threads, o.n_blocks, o.block_size, static_cast<int64_t>(o.kv_dtype),
                cpu::exact_activations() ? 1 : 0};
    comm_->broadcast(h.data(), sizeof h, 0);
    comm_->broadcast(path.data(), path.size(), 0);
    float failed = 0.0f;  // workers add 1 each when their load failed
    comm_->all_reduce_sum(&failed, 1);
    if (failed > 0) {
      Header stop = {kStop};
      comm_->broadcast(stop.data(), sizeof stop, 0);
      fail("tensor parallelism: ", static_cast<int>(failed), " of ", comm_->size() - 1,
           " worker processes could not load ", path, " (see their messages)");
    }
  }
  ~TpExecutor() override {
    try {
      Header h = {kStop};
      comm_->broadcast(h.data(), sizeof h, 0);
    } catch (const std::exception& e) {
      log_warn("tensor parallelism: could not release the workers: ", e.what());
    }
  }

  void forward_batch(const ForwardBatch& b, float* logits, int32_t* tokens) override {
    const int64_t n = static_cast<int64_t>(b.tokens.size()), s = b.attn.n_seqs;
    Header h = {kStep, n, s, b.attn.max_blocks_per_seq};
    comm_->broadcast(h.data(), sizeof h, 0);
    auto send = [&](const void* p, size_t bytes) {
      comm_->broadcast(const_cast<void*>(p), bytes, 0);  // the root only reads
    };
    send(b.tokens.data(), n * sizeof(int32_t));
    send(b.positions.data(), n * sizeof(int32_t));
    send(b.slot_mapping.data(), n * sizeof(int64_t));
    send(b.attn.query_start, (s + 1) * sizeof(int32_t));
    send(b.attn.context_len, s * sizeof(int32_t));
    send(b.attn.block_tables, s * b.attn.max_blocks_per_seq * sizeof(int32_t));
    inner_->forward_batch(b, logits, tokens);
  }
  void embed(std::span<const std::vector<int32_t>> seqs, Pooling pooling, bool normalize,
             float* out) override {
    std::vector<int64_t> lengths;
    std::vector<int32_t> flat;
    for (const auto& s : seqs) {
      lengths.push_back(static_cast<int64_t>(s.size()));
      flat.insert(flat.end(), s.begin(), s.end());
    }
    Header h = {kEmbed, static_cast<int64_t>(seqs.size()), static_cast<int64_t>(flat.size()),
                static_cast<int64_t>(pooling), normalize ? 1 : 0};
    comm_->broadcast(h.data(), sizeof h, 0);
    bcast_vec(*comm_, lengths);
    bcast_vec(*comm_, flat);
    if (!pool_) pool_ = std::make_unique<ThreadPool>(threads_);
    model_->embed(seqs, pooling, normalize, out, *pool_);
  }
  int64_t n_kv_blocks() const override { return inner_->n_kv_blocks(); }
  size_t kv_bytes() const override { return inner_->kv_bytes(); }
  std::string describe() const override {
    return str(inner_->describe(), ", tensor parallel over ", comm_->size(),
               " processes (this one's shard)");
  }

 private:
  Communicator* comm_;
  std::shared_ptr<const Model> model_;
  int threads_;
  std::unique_ptr<Executor> inner_;
  std::unique_ptr<ThreadPool> pool_;  // for embed(), made by its first call
};

// A worker's shard and its KV pool, between a setup and a stop.
struct WorkerState {
  std::shared_ptr<const Model> model;
  std::unique_ptr<PagedKvStorage> kv;
  std::unique_ptr<ThreadPool> pool;
};

void worker_setup(const std::shared_ptr<Communicator>& comm, const Header& h, WorkerState* w) {
  std::string path(static_cast<size_t>(h[1]), '\0');
  comm->broadcast(path.data(), path.size(), 0);
  float failed = 0.0f;
  try {
    LoadOptions lo;
    lo.quantize = static_cast<WeightQuant>(h[2]);
    lo.threads = static_cast<int>(h[3]);
    lo.comm = comm;
    cpu::set_exact_activations(h[7] != 0);  // as rank 0 (JINX_EXACT_ACTIVATIONS, tests)
    w->model = Model::load(path, lo);
    w->kv = std::make_unique<PagedKvStorage>(w->model->config(), h[4], h[5],
                                             static_cast<DType>(h[6]));
    w->pool = std::make_unique<ThreadPool>(lo.threads);
  } catch (const std::exception& e) {
    log_warn("tensor-parallel worker ", comm->rank(), ": ", e.what());
    *w = WorkerState{};
    failed = 1.0f;
  }
  comm->all_reduce_sum(&failed, 1);
  if (failed > 0) *w = WorkerState{};  // rank 0 sends stop next
}

void worker_step(Communicator& comm, const Header& h, WorkerState& w) {
  const int64_t n = h[1], s = h[2], max_blocks = h[3];
  std::vector<int32_t> tokens(n), positions(n), qstart(s + 1), ctx(s), tables(s * max_blocks);
  std::vector<int64_t> slots(n);
  for (auto* v : {&tokens, &positions}) bcast_vec(comm, *v);
  bcast_vec(comm, slots);
  for (auto* v : {&qstart, &ctx, &tables}) bcast_vec(comm, *v);
  JINX_CHECK(w.model != nullptr, "a step reached a worker without a model");
  ForwardBatch b;
  b.tokens = tokens;
  b.positions = positions;
  b.slot_mapping = slots;
  b.attn = {s, qstart.data(), ctx.data(), tables.data(), max_blocks};
  w.model->forward_batch(b, *w.kv, nullptr, *w.pool);  // no output rows: rank 0 has the head
}

void worker_embed(Communicator& comm, const Header& h, WorkerState& w) {
  std::vector<int64_t> lengths(static_cast<size_t>(h[1]));
  std::vector<int32_t> flat(static_cast<size_t>(h[2]));
  bcast_vec(comm, lengths);
  bcast_vec(comm, flat);
  JINX_CHECK(w.model != nullptr, "embeddings reached a worker without a model");
  std::vector<std::vector<int32_t>> seqs;
  size_t at = 0;
  for (int64_t n : lengths) {
    seqs.emplace_back(flat.begin() + at, flat.begin() + at + n);
    at += static_cast<size_t>(n);
  }
  std::vector<float> out(seqs.size() * w.model->config().hidden_size);  // rank 0's result
  w.model->embed(seqs, static_cast<Pooling>(h[3]), h[4] != 0, out.data(), *w.pool);
}

}  // namespace

std::unique_ptr<Executor> make_tp_executor(std::shared_ptr<const Model> model,
                                           const ExecutorOptions& o) {
  JINX_CHECK(model->comm() != nullptr && model->tp_rank() == 0,
             "the tensor-parallel executor runs on rank 0 of a sharded model");
  return std::make_unique<TpExecutor>(std::move(model), o);
}

int run_tp_worker(std::shared_ptr<Communicator> comm) {
  WorkerState w;
  for (;;) {
    Header h{};
    comm->broadcast(h.data(), sizeof h, 0);
    switch (h[0]) {
      case kSetup:
        worker_setup(comm, h, &w);
        break;
      case kStep:
        // A failure here leaves the group out of step: no way on but to end this process
        // (the launcher then ends the others).
        try {
          worker_step(*comm, h, w);
        } catch (const std::exception& e) {
          log_warn("tensor-parallel worker ", comm->rank(), ": ", e.what());
          return 1;
        }
        break;
      case kEmbed:
        try {
          worker_embed(*comm, h, w);
        } catch (const std::exception& e) {
          log_warn("tensor-parallel worker ", comm->rank(), ": ", e.what());
          return 1;
        }
        break;
      case kStop:
        w = WorkerState{};
        break;
      case kQuit:
        return 0;
      default:
        log_warn("tensor-parallel worker ", comm->rank(), ": unknown message ", h[0]);
        return 1;
    }
  }
}

void end_tp_workers(Communicator& comm) {
  Header h = {kQuit};
  comm.broadcast(h.data(), sizeof h, 0);
}

}  // namespace jinx
