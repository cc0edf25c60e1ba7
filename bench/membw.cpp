// Memory read bandwidth probe: streams a 512 MiB buffer with N threads (AVX-512 loads where
// the compiler uses them) and prints the best of several passes in GB/s.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  const size_t n = (512u << 20) / sizeof(float);
  std::vector<float> buf(n, 1.0f);
  double best = 0;
  for (int pass = 0; pass < 5; ++pass) {
    std::vector<double> sums(threads);
    auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t)
      ts.emplace_back([&, t] {
        const size_t b = n / threads * t, e = t + 1 == threads ? n : n / threads * (t + 1);
        float acc[16] = {};
        for (size_t i = b; i + 16 <= e; i += 16)
          for (int k = 0; k < 16; ++k) acc[k] += buf[i + k];
        double s = 0;
        for (float a : acc) s += a;
        sums[t] = s;
      });
    for (auto& th : ts) th.join();
    double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double gbs = n * sizeof(float) / sec / 1e9;
    if (gbs > best) best = gbs;
    if (sums[0] < 0) std::printf("?");
  }
  std::printf("%.1f\n", best);
  return 0;
}
