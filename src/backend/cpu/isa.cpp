#include <atomic>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include "backend/cpu/kernels.h"

namespace jinx::cpu {

namespace {

#if defined(__x86_64__)
// F16C from CPUID leaf 1 (ECX bit 29): clang before 15 rejects __builtin_cpu_supports("f16c").
// F16C uses the AVX register state, whose OS support the "avx2" check below already covers.
bool has_f16c() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  return (ecx & (1u << 29)) != 0;
}
#endif

Isa detect() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl"))
    return Isa::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c())
    return Isa::kAvx2;
#endif
  return Isa::kScalar;
}

// The kernel level in use: chosen once from the CPU, lowered only by tests and benchmarks.
std::atomic<Isa>& active() {
  static std::atomic<Isa> a{detect()};
  return a;
}

}  // namespace

Isa detected_isa() {
  static const Isa d = detect();
  return d;
}

Isa active_isa() { return active().load(std::memory_order_relaxed); }

void set_isa(Isa isa) {
  Isa d = detected_isa();
  active().store(static_cast<int>(isa) > static_cast<int>(d) ? d : isa);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512: return "avx512";
  }
  return "?";
}

}  // namespace jinx::cpu
