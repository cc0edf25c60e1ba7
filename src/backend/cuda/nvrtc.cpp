#include "backend/cuda/nvrtc.h"

#include <dlfcn.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/check.h"
#include "core/log.h"

namespace jinx::cuda::jit {
namespace {

// The part of nvrtc.h the JIT uses (nvrtcResult is an int enum, nvrtcProgram an opaque pointer).
using Program = struct NvrtcProgramOpaque*;
using Result = int;
constexpr Result kSuccess = 0;

struct Nvrtc {
  Result (*create)(Program*, const char*, const char*, int, const char* const*,
                   const char* const*) = nullptr;
  Result (*compile)(Program, int, const char* const*) = nullptr;
  Result (*log_size)(Program, size_t*) = nullptr;
  Result (*log)(Program, char*) = nullptr;
  Result (*cubin_size)(Program, size_t*) = nullptr;
  Result (*cubin)(Program, char*) = nullptr;
  Result (*destroy)(Program*) = nullptr;
  const char* (*error_string)(Result) = nullptr;
  Result (*version)(int*, int*) = nullptr;
  int version_code = 0;
  std::string why_not;  // empty: loaded
};

template <typename F>
bool resolve(void* lib, const char* name, F* f, std::string* why) {
  *f = reinterpret_cast<F>(dlsym(lib, name));
  if (*f == nullptr && why->empty()) *why = str("libnvrtc has no ", name);
  return *f != nullptr;
}

Nvrtc load_nvrtc() {
  Nvrtc n;
  void* lib = nullptr;
  std::string errors;
  for (const char* name : {"libnvrtc.so.13", "libnvrtc.so"}) {
    lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib != nullptr) break;
    const char* e = dlerror();
    errors += str(errors.empty() ? "" : "; ", e ? e : name);
  }
  if (lib == nullptr) {
    n.why_not = "cannot load libnvrtc (" + errors + ")";
    return n;
  }
  // The handle stays open for the process: compiled programs never outlive it otherwise.
  std::string& why = n.why_not;
  resolve(lib, "nvrtcCreateProgram", &n.create, &why);
  resolve(lib, "nvrtcCompileProgram", &n.compile, &why);
  resolve(lib, "nvrtcGetProgramLogSize", &n.log_size, &why);
  resolve(lib, "nvrtcGetProgramLog", &n.log, &why);
  resolve(lib, "nvrtcGetCUBINSize", &n.cubin_size, &why);
  resolve(lib, "nvrtcGetCUBIN", &n.cubin, &why);
  resolve(lib, "nvrtcDestroyProgram", &n.destroy, &why);
  resolve(lib, "nvrtcGetErrorString", &n.error_string, &why);
  resolve(lib, "nvrtcVersion", &n.version, &why);
  if (!why.empty()) return n;
  int major = 0, minor = 0;
  if (n.version(&major, &minor) != kSuccess) {
    why = "nvrtcVersion failed";
    return n;
  }
  n.version_code = major * 1000 + minor * 10;
  return n;
}

// Loaded at first use; the one line saying why not is logged then.
const Nvrtc& nvrtc() {
  static const Nvrtc n = [] {
    Nvrtc loaded = load_nvrtc();
    if (!loaded.why_not.empty())
      log_warn("run-time kernel compilation (NVRTC) unavailable: ", loaded.why_not,
               "; using the precompiled kernels");
    return loaded;
  }();
  return n;
}

std::string program_log(const Nvrtc& n, Program p) {
  size_t size = 0;
  if (n.log_size(p, &size) != kSuccess || size == 0) return "";
  std::string log(size, '\0');
  if (n.log(p, log.data()) != kSuccess) return "";
  while (!log.empty() && (log.back() == '\0' || log.back() == '\n')) log.pop_back();
  return log;
}

void put_u64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get_u64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

bool is_elf(const std::vector<uint8_t>& b) {
  return b.size() >= 4 && b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F';
}

}  // namespace

bool nvrtc_available() {
  return nvrtc().why_not.empty();
}
std::string nvrtc_unavailable_reason() {
  return nvrtc().why_not;
}
int nvrtc_version() {
  return nvrtc().version_code;
}

uint64_t fnv1a64(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

std::vector<uint8_t> compile(const std::string& source, const std::string& program_name,
                             const std::vector<std::string>& options, const std::string& arch) {
  const Nvrtc& n = nvrtc();
  if (!n.why_not.empty()) fail("NVRTC unavailable: ", n.why_not);
  JINX_CHECK(arch.rfind("sm_", 0) == 0, "NVRTC: arch must be sm_XY[a], not ", arch);
  std::vector<std::string> opts = options;
  opts.push_back("--gpu-architecture=" + arch);
  std::vector<const char*> argv;
  for (const std::string& o : opts) argv.push_back(o.c_str());
  Program p = nullptr;
  Result r = n.create(&p, source.c_str(), program_name.c_str(), 0, nullptr, nullptr);
  if (r != kSuccess) fail("NVRTC: creating ", program_name, " failed: ", n.error_string(r));
  struct Destroy {
    const Nvrtc& n;
    Program* p;
    ~Destroy() { n.destroy(p); }
  } destroy{n, &p};
  r = n.compile(p, static_cast<int>(argv.size()), argv.data());
  if (r != kSuccess) {
    fail("NVRTC: compiling ", program_name, " for ", arch, " failed (", n.error_string(r), "):\n",
         program_log(n, p));
  }
  size_t size = 0;
  r = n.cubin_size(p, &size);
  if (r != kSuccess || size == 0)
    fail("NVRTC: no CUBIN for ", program_name, " (", arch, " must be a real architecture)");
  std::vector<uint8_t> cubin(size);
  r = n.cubin(p, reinterpret_cast<char*>(cubin.data()));
  if (r != kSuccess) fail("NVRTC: reading the CUBIN of ", program_name, " failed");
  return cubin;
}

std::string kernel_cache_dir_from_env() {
  const char* env = std::getenv("JINX_KERNEL_CACHE");
  if (env != nullptr && *env != '\0') return std::string(env) == "off" ? "" : env;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && *xdg == '/') return std::string(xdg) + "/jinx/kernels";
  const char* home = std::getenv("HOME");
  if (home != nullptr && *home == '/') return std::string(home) + "/.cache/jinx/kernels";
  return "";
}

KernelCache::KernelCache(std::string dir) : dir_(std::move(dir)) {}

uint64_t KernelCache::key(const std::string& source, const std::string& program_name,
                          const std::vector<std::string>& options, const std::string& arch) const {
  // Every part with its length, so that no two lists of parts hash the same bytes.
  uint64_t h = fnv1a64("jinx-kernel-v1", 14);
  auto add = [&h](const std::string& s) {
    const uint64_t len = s.size();
    h = fnv1a64(&len, sizeof(len), h);
    h = fnv1a64(s.data(), s.size(), h);
  };
  add(source);
  add(program_name);
  add(arch);
  add(std::to_string(nvrtc_version()));
  for (const std::string& o : options) add(o);
  return h;
}

std::string KernelCache::path_for(uint64_t key) const {
  if (dir_.empty()) return "";
  char name[32];
  std::snprintf(name, sizeof(name), "%016llx.cubin", static_cast<unsigned long long>(key));
  return dir_ + "/" + name;
}

KernelCache::Stats KernelCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

Cubin KernelCache::get(const std::string& source, const std::string& program_name,
                       const std::vector<std::string>& options, const std::string& arch) {
  const uint64_t k = key(source, program_name, options, arch);
  std::lock_guard<std::mutex> lock(mu_);  // one build at a time: builds are rare and long
  if (auto it = memory_.find(k); it != memory_.end()) {
    ++stats_.memory_hits;
    return it->second;
  }
  Cubin c = read_disk(k);
  if (c != nullptr) {
    ++stats_.disk_hits;
  } else {
    c = std::make_shared<const std::vector<uint8_t>>(compile(source, program_name, options, arch));
    ++stats_.compiles;
    write_disk(k, *c);
  }
  memory_[k] = c;
  return c;
}

// Null when there is no file; a file that fails a check is counted and left to be replaced.
Cubin KernelCache::read_disk(uint64_t key) {
  const std::string path = path_for(key);
  if (path.empty()) return nullptr;
  std::ifstream f(path, std::ios::binary);
  if (!f) return nullptr;
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto reject = [&](const char* why) -> Cubin {
    ++stats_.disk_rejected;
    log_warn("kernel cache: ", path, " ", why, "; rebuilding it");
    return nullptr;
  };
  if (bytes.size() < kFileHeaderBytes) return reject("is truncated");
  if (std::memcmp(bytes.data(), kFileMagic, sizeof(kFileMagic)) != 0)
    return reject("is not a cache file");
  if (get_u64(&bytes[8]) != key) return reject("holds another key");
  const uint64_t len = get_u64(&bytes[16]);
  if (len != bytes.size() - kFileHeaderBytes) return reject("has a wrong length");
  if (fnv1a64(bytes.data() + kFileHeaderBytes, len) != get_u64(&bytes[24]))
    return reject("fails its checksum");
  auto cubin =
      std::make_shared<std::vector<uint8_t>>(bytes.begin() + kFileHeaderBytes, bytes.end());
  if (!is_elf(*cubin)) return reject("holds no ELF image");
  return cubin;
}

void KernelCache::write_disk(uint64_t key, const std::vector<uint8_t>& cubin) {
  const std::string path = path_for(key);
  if (path.empty()) return;
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = str(path, ".tmp.", getpid(), ".", counter++);
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  uint8_t header[kFileHeaderBytes];
  std::memcpy(header, kFileMagic, sizeof(kFileMagic));
  put_u64(header + 8, key);
  put_u64(header + 16, cubin.size());
  put_u64(header + 24, fnv1a64(cubin.data(), cubin.size()));
  bool ok = false;
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (f) {
      f.write(reinterpret_cast<const char*>(header), sizeof(header));
      f.write(reinterpret_cast<const char*>(cubin.data()),
              static_cast<std::streamsize>(cubin.size()));
      f.flush();
      ok = static_cast<bool>(f);
    }
  }
  if (ok) {
    std::filesystem::rename(tmp, path, ec);
    ok = !ec;
  }
  if (!ok) {
    std::filesystem::remove(tmp, ec);
    if (!write_failed_logged_) {
      write_failed_logged_ = true;
      log_warn("kernel cache: cannot write ", dir_, "; keeping built kernels in memory only");
    }
    return;
  }
  ++stats_.disk_writes;
}

}  // namespace jinx::cuda::jit
