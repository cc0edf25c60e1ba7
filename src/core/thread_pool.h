// A fork/join pool for the kernels: the calling thread works too, workers spin briefly before
// sleeping, so one parallel_for costs a few microseconds (a decode step runs ~170 of them).
//
// Ranges are claimed dynamically and the caller waits only for ranges that were claimed, never
// for a worker to show up: on a loaded machine a worker that gets no core simply takes no part,
// instead of stalling every step for a scheduler time slice.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace jinx {

class ThreadPool {
 public:
  // n_threads counts the caller; 0 means one per hardware thread.
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(begin, end) over disjoint ranges covering [0, n), each at most `grain` long,
  // handed out dynamically. Returns when every range is done. Not re-entrant.
  template <typename F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    if (n_threads_ == 1 || n <= grain) {
      for (int64_t b = 0; b < n; b += grain) fn(b, b + grain < n ? b + grain : n);
      return;
    }
    run(n, grain, &fn, [](void* ctx, int64_t b, int64_t e) { (*static_cast<F*>(ctx))(b, e); });
  }

  // Splits [0, n) into one even range per thread.
  template <typename F>
  void parallel_for(int64_t n, F&& fn) {
    parallel_for(n, (n + n_threads_ - 1) / n_threads_, std::forward<F>(fn));
  }

 private:
  using Trampoline = void (*)(void*, int64_t, int64_t);
  void run(int64_t n, int64_t grain, void* ctx, Trampoline tramp);
  void worker_loop();
  void work_on_job();

  int n_threads_;
  std::vector<std::thread> workers_;
  // Even: a job is published (or none); odd: the caller is replacing the job fields.
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> active_{0};     // workers inside work_on_job
  std::atomic<int64_t> next_{0};   // next unclaimed index
  std::atomic<int64_t> done_{0};   // indices completed
  std::atomic<bool> stop_{false};
  int64_t n_ = 0, grain_ = 1;
  void* ctx_ = nullptr;
  Trampoline tramp_ = nullptr;
};

}  // namespace jinx
