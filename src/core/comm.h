// A group of processes that run one model together (tensor parallelism): each holds a shard
// of the weights and of the KV cache, and they combine their partial results with collectives.
// Every rank calls the same collectives in the same order. The transport lives elsewhere
// (dist/: MPI); core only names the operations.
#pragma once

#include <cstddef>

namespace jinx {

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // data [n] becomes the element-wise sum over the ranks, on every rank.
  virtual void all_reduce_sum(float* data, size_t n) = 0;
  // root's bytes [n] are copied to every other rank's data.
  virtual void broadcast(void* data, size_t n, int root) = 0;
};

}  // namespace jinx
