// A fork/join pool for the kernels: the calling thread works too, workers spin briefly before
// sleeping, so one parallel_for costs a few microseconds (a decode step runs ~170 of them).
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
      fn(int64_t{0}, n);
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
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> busy_{0};
  std::atomic<int64_t> next_{0};
  std::atomic<bool> stop_{false};
  int64_t n_ = 0, grain_ = 1;
  void* ctx_ = nullptr;
  Trampoline tramp_ = nullptr;
};

}  // namespace jinx
