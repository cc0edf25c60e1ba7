#include "core/thread_pool.h"

#include <immintrin.h>

namespace jinx {

namespace {
inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}
constexpr int kSpinIters = 20000;
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = static_cast<int>(std::thread::hardware_concurrency());
  n_threads_ = n_threads < 1 ? 1 : n_threads;
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true);
  generation_.fetch_add(2);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work_on_job() {
  for (;;) {
    int64_t b = next_.fetch_add(grain_);
    if (b >= n_) break;
    int64_t e = b + grain_ < n_ ? b + grain_ : n_;
    tramp_(ctx_, b, e);
    done_.fetch_add(e - b, std::memory_order_release);
  }
}

void ThreadPool::worker_loop() {
  uint64_t seen = 0;
  for (;;) {
    uint64_t g = generation_.load(std::memory_order_acquire);
    for (int i = 0; (g == seen || (g & 1)) && i < kSpinIters; ++i) {
      cpu_relax();
      g = generation_.load(std::memory_order_acquire);
    }
    if (g == seen || (g & 1)) {
      generation_.wait(g, std::memory_order_acquire);
      continue;
    }
    seen = g;
    if (stop_.load()) return;
    // Announce, then check the job is still the one seen (Dekker-style with run()'s odd bump):
    // a worker that arrives late backs out without touching the job fields.
    active_.fetch_add(1);
    if (generation_.load() == g) work_on_job();
    active_.fetch_sub(1);
  }
}

void ThreadPool::run(int64_t n, int64_t grain, void* ctx, Trampoline tramp) {
  generation_.fetch_add(1);  // odd: job fields being replaced
  for (int i = 0; active_.load() != 0; ++i) {  // late workers of the previous job leave
    if (i < kSpinIters) cpu_relax();
    else std::this_thread::yield();
  }
  n_ = n;
  grain_ = grain;
  ctx_ = ctx;
  tramp_ = tramp;
  next_.store(0);
  done_.store(0);
  generation_.fetch_add(1);  // even: published
  generation_.notify_all();
  work_on_job();
  // Wait only for ranges that workers claimed and are still computing.
  for (int i = 0; done_.load(std::memory_order_acquire) != n; ++i) {
    if (i < kSpinIters) cpu_relax();
    else std::this_thread::yield();
  }
}

}  // namespace jinx
