// Run-time compiled kernels (backend/cuda/nvrtc.h, gemv_jit.h): NVRTC and the kernel cache.
// These need no GPU: they run wherever libnvrtc loads (and skip, saying why, where it does
// not). gemv_jit_test.cpp runs the compiled GEMV on a GPU.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "backend/cuda/gemv_jit.h"
#include "backend/cuda/nvrtc.h"
#include "core/check.h"

namespace jinx {
namespace {

namespace fs = std::filesystem;
using cuda::GemvJitShape;
namespace jit = cuda::jit;

#define SKIP_WITHOUT_NVRTC()                                         \
  if (!jit::nvrtc_available())                                       \
  GTEST_SKIP() << "libnvrtc not loadable, nothing to compile with: " \
               << jit::nvrtc_unavailable_reason()

const char kTinySource[] =
    "extern \"C\" __global__ void jinx_tiny(float* p) { p[threadIdx.x] = 2.0f; }\n";
const std::vector<std::string> kNoOptions;

bool is_elf(const std::vector<uint8_t>& b) {
  return b.size() >= 4 && b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F';
}

bool contains(const std::vector<uint8_t>& b, const std::string& s) {
  return std::search(b.begin(), b.end(), s.begin(), s.end()) != b.end();
}

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
void write_file(const std::string& path, const std::vector<uint8_t>& b) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

// A fresh directory under the system's temp dir, removed with its contents at the end.
struct TempDir {
  std::string path;
  TempDir() {
    std::string t = (fs::temp_directory_path() / "jinx-nvrtc-XXXXXX").string();
    JINX_CHECK(mkdtemp(t.data()) != nullptr, "mkdtemp");
    path = t;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(path))
      if (e.is_regular_file()) out.push_back(e.path().string());
    return out;
  }
};

// Sets (or with null, unsets) an environment variable for the scope, restoring it after.
struct ScopedEnv {
  std::string name;
  bool had = false;
  std::string old;
  ScopedEnv(const char* n, const char* v) : name(n) {
    if (const char* o = getenv(n)) {
      had = true;
      old = o;
    }
    if (v) {
      setenv(n, v, 1);
    } else {
      unsetenv(n);
    }
  }
  ~ScopedEnv() {
    if (had) {
      setenv(name.c_str(), old.c_str(), 1);
    } else {
      unsetenv(name.c_str());
    }
  }
};

GemvJitShape bf16_shape(int64_t rows, int64_t cols) {
  return {0, rows, cols, 2 * cols, rows < 8192 ? 4 : 1};
}

TEST(Nvrtc, CompilesTheGemvForSm80AndSm90a) {
  SKIP_WITHOUT_NVRTC();
  EXPECT_GE(jit::nvrtc_version(), 12000);
  const GemvJitShape s = bf16_shape(896, 896);
  const std::string src = cuda::gemv_jit_source(s);
  for (const char* arch : {"sm_80", "sm_90a"}) {
    const auto cubin =
        jit::compile(src, cuda::gemv_jit_program_name(s), cuda::gemv_jit_options(), arch);
    EXPECT_TRUE(is_elf(cubin)) << arch;
    // Unmangled names, one kernel per token count.
    for (int nt = 1; nt <= 8; ++nt)
      EXPECT_TRUE(contains(cubin, cuda::gemv_jit_kernel_name(nt))) << arch << " nt=" << nt;
  }
}

TEST(Nvrtc, CompilesTheQuantizedGemvs) {
  SKIP_WITHOUT_NVRTC();
  // Q8_0, Q4_0, Q4A with Qwen2-0.5B's down projection shape, a one-warp-per-row matrix, and the
  // gated gate/up shapes.
  for (const GemvJitShape s :
       {GemvJitShape{1, 896, 4864, 4864, 4}, GemvJitShape{2, 896, 4864, 2432, 4},
        GemvJitShape{3, 9728, 896, 448, 1},
        // The gate/up GEMV with SiLU x up in its epilogue, BF16 and Q4A.
        GemvJitShape{0, 9728, 896, 1792, 1, true}, GemvJitShape{3, 600, 896, 448, 4, true}}) {
    const auto cubin = jit::compile(cuda::gemv_jit_source(s), cuda::gemv_jit_program_name(s),
                                    cuda::gemv_jit_options(), "sm_90a");
    EXPECT_TRUE(is_elf(cubin)) << cuda::gemv_jit_program_name(s);
  }
}

TEST(Nvrtc, RejectsShapesTheKernelCannotTake) {
  EXPECT_THROW(cuda::gemv_jit_source({0, 896, 900, 1800, 4}), Error);  // cols % 32
  EXPECT_THROW(cuda::gemv_jit_source({0, 896, 896, 1000, 4}), Error);  // row_bytes % 16
  EXPECT_THROW(cuda::gemv_jit_source({0, 896, 896, 1024, 4}), Error);  // row shorter than cols
  EXPECT_THROW(cuda::gemv_jit_source({0, 0, 896, 1792, 4}), Error);
  EXPECT_THROW(cuda::gemv_jit_source({0, 896, 896, 1792, 2}), Error);
  EXPECT_THROW(cuda::gemv_jit_source({7, 896, 896, 1792, 4}), Error);
  EXPECT_THROW(cuda::gemv_jit_source({0, 897, 896, 1792, 4, true}), Error);  // gated, odd rows
}

TEST(Nvrtc, ASyntaxErrorThrowsWithNvrtcsLog) {
  SKIP_WITHOUT_NVRTC();
  const std::string bad = "extern \"C\" __global__ void k(float* p) { p[0] = undeclared_name; }\n";
  try {
    jit::compile(bad, "broken_kernel.cu", kNoOptions, "sm_90a");
    FAIL() << "compiled a program with an undeclared identifier";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find("broken_kernel.cu"), std::string::npos) << what;
    EXPECT_NE(what.find("undeclared_name"), std::string::npos) << what;  // from NVRTC's log
    EXPECT_NE(what.find("error"), std::string::npos) << what;
  }
  // Through the cache: nothing is kept, nothing written.
  TempDir dir;
  jit::KernelCache cache(dir.path);
  EXPECT_THROW(cache.get(bad, "broken_kernel.cu", kNoOptions, "sm_90a"), Error);
  EXPECT_EQ(cache.stats().disk_writes, 0);
  EXPECT_TRUE(dir.files().empty());
}

TEST(KernelCache, AMemoryHitCompilesNothing) {
  SKIP_WITHOUT_NVRTC();
  jit::KernelCache cache("");
  const jit::Cubin a = cache.get(kTinySource, "tiny.cu", kNoOptions, "sm_90a");
  const jit::Cubin b = cache.get(kTinySource, "tiny.cu", kNoOptions, "sm_90a");
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(cache.stats().compiles, 1);
  EXPECT_EQ(cache.stats().memory_hits, 1);
  // Another arch, option or source is another key.
  cache.get(kTinySource, "tiny.cu", kNoOptions, "sm_80");
  cache.get(kTinySource, "tiny.cu", {"--fmad=false"}, "sm_90a");
  cache.get(std::string(kTinySource) + "// changed\n", "tiny.cu", kNoOptions, "sm_90a");
  EXPECT_EQ(cache.stats().compiles, 4);
  EXPECT_NE(cache.key(kTinySource, "tiny.cu", kNoOptions, "sm_80"),
            cache.key(kTinySource, "tiny.cu", kNoOptions, "sm_90a"));
}

TEST(KernelCache, DiskRoundTrip) {
  SKIP_WITHOUT_NVRTC();
  TempDir dir;
  const std::string cache_dir = dir.path + "/nested/kernels";  // created on first write
  jit::KernelCache first(cache_dir);
  const jit::Cubin built = first.get(kTinySource, "tiny.cu", kNoOptions, "sm_90a");
  EXPECT_EQ(first.stats().compiles, 1);
  EXPECT_EQ(first.stats().disk_writes, 1);
  const uint64_t key = first.key(kTinySource, "tiny.cu", kNoOptions, "sm_90a");
  const std::vector<std::string> files = dir.files();
  ASSERT_EQ(files.size(), 1u);  // no temporary left behind
  EXPECT_EQ(fs::path(files[0]), fs::path(first.path_for(key)));
  const auto bytes = read_file(files[0]);
  ASSERT_EQ(bytes.size(), jit::kFileHeaderBytes + built->size());
  EXPECT_EQ(std::memcmp(bytes.data(), jit::kFileMagic, 8), 0);

  jit::KernelCache second(cache_dir);  // a new process, in effect
  const jit::Cubin loaded = second.get(kTinySource, "tiny.cu", kNoOptions, "sm_90a");
  EXPECT_EQ(second.stats().compiles, 0);
  EXPECT_EQ(second.stats().disk_hits, 1);
  EXPECT_EQ(*loaded, *built);
}

// Every way a cache file can be damaged is caught before its bytes are used; the kernel is
// rebuilt and the file replaced with a good one.
TEST(KernelCache, ADamagedFileIsRejectedAndRebuilt) {
  SKIP_WITHOUT_NVRTC();
  TempDir dir;
  jit::KernelCache writer(dir.path);
  const jit::Cubin good = writer.get(kTinySource, "tiny.cu", kNoOptions, "sm_80");
  const std::string path = writer.path_for(writer.key(kTinySource, "tiny.cu", kNoOptions, "sm_80"));
  const std::vector<uint8_t> original = read_file(path);
  struct Damage {
    const char* what;
    void (*apply)(std::vector<uint8_t>&);
  };
  const Damage damages[] = {
      {"truncated CUBIN", [](std::vector<uint8_t>& b) { b.resize(b.size() / 2); }},
      {"header only", [](std::vector<uint8_t>& b) { b.resize(jit::kFileHeaderBytes); }},
      {"torn header", [](std::vector<uint8_t>& b) { b.resize(12); }},
      {"empty", [](std::vector<uint8_t>& b) { b.clear(); }},
      {"flipped CUBIN byte", [](std::vector<uint8_t>& b) { b[b.size() - 100] ^= 0x40; }},
      {"bad magic", [](std::vector<uint8_t>& b) { b[0] = 'X'; }},
      {"other key", [](std::vector<uint8_t>& b) { b[9] ^= 1; }},
      {"longer length", [](std::vector<uint8_t>& b) { b[16] += 1; }},
      {"trailing bytes", [](std::vector<uint8_t>& b) { b.push_back(0); }},
  };
  for (const Damage& d : damages) {
    std::vector<uint8_t> bad = original;
    d.apply(bad);
    write_file(path, bad);
    jit::KernelCache reader(dir.path);
    const jit::Cubin c = reader.get(kTinySource, "tiny.cu", kNoOptions, "sm_80");
    EXPECT_EQ(reader.stats().disk_rejected, 1) << d.what;
    EXPECT_EQ(reader.stats().compiles, 1) << d.what;
    EXPECT_EQ(*c, *good) << d.what;
    EXPECT_EQ(read_file(path), original) << d.what << ": the file was not replaced";
  }
}

TEST(KernelCache, DirectoryFromTheEnvironment) {
  ScopedEnv xdg("XDG_CACHE_HOME", "/xdg"), home("HOME", "/home/someone");
  {
    ScopedEnv e("JINX_KERNEL_CACHE", nullptr);
    EXPECT_EQ(jit::kernel_cache_dir_from_env(), "/xdg/jinx/kernels");
    ScopedEnv no_xdg("XDG_CACHE_HOME", nullptr);
    EXPECT_EQ(jit::kernel_cache_dir_from_env(), "/home/someone/.cache/jinx/kernels");
  }
  ScopedEnv e("JINX_KERNEL_CACHE", "/somewhere/else");
  EXPECT_EQ(jit::kernel_cache_dir_from_env(), "/somewhere/else");
}

TEST(KernelCache, OffWritesNothing) {
  SKIP_WITHOUT_NVRTC();
  TempDir dir;
  const std::string xdg_dir = dir.path + "/xdg";
  ScopedEnv xdg("XDG_CACHE_HOME", xdg_dir.c_str()), home("HOME", dir.path.c_str());
  ScopedEnv off("JINX_KERNEL_CACHE", "off");
  EXPECT_EQ(jit::kernel_cache_dir_from_env(), "");
  jit::KernelCache cache(jit::kernel_cache_dir_from_env());
  cache.get(kTinySource, "tiny.cu", kNoOptions, "sm_90a");
  cache.get(kTinySource, "tiny.cu", kNoOptions, "sm_90a");
  EXPECT_EQ(cache.stats().compiles, 1);
  EXPECT_EQ(cache.stats().disk_writes, 0);
  EXPECT_TRUE(dir.files().empty());
  EXPECT_FALSE(fs::exists(xdg_dir));
}

}  // namespace
}  // namespace jinx
