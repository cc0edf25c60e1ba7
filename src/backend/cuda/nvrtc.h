// Kernels compiled at run time: NVRTC loaded with dlopen (no link-time dependency: without
// libnvrtc every precompiled kernel still runs, and the JIT says once why it is off), and a
// cache of the CUBINs it built, in memory and on disk. Host C++ only; loading a CUBIN onto the
// GPU is the caller's (gemv_jit.cpp, through the CUDA runtime's library API).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace jinx::cuda::jit {

// Whether libnvrtc ("libnvrtc.so.13", then "libnvrtc.so") loaded with every function the JIT
// uses. Loaded once per process; the reason it did not is in nvrtc_unavailable_reason().
bool nvrtc_available();
std::string nvrtc_unavailable_reason();
// major * 1000 + minor * 10 (e.g. 13000 for 13.0); 0 when unavailable.
int nvrtc_version();

// Compiles one CUDA C++ program (program_name appears in NVRTC's messages) to a CUBIN for
// exactly arch ("sm_80", "sm_90a": --gpu-architecture=<arch>); options are passed as they are.
// The kernels it defines are found by their names (extern "C", so names are not mangled).
// Throws jinx::Error when NVRTC is unavailable or the compile fails (with NVRTC's log).
std::vector<uint8_t> compile(const std::string& source, const std::string& program_name,
                             const std::vector<std::string>& options, const std::string& arch);

// Where the disk cache lives by the environment: $JINX_KERNEL_CACHE ("off": no disk cache, ""),
// else $XDG_CACHE_HOME/jinx/kernels, else $HOME/.cache/jinx/kernels, else "" (none).
std::string kernel_cache_dir_from_env();

using Cubin = std::shared_ptr<const std::vector<uint8_t>>;

// Built CUBINs by key = hash of (source, program name, options, arch, NVRTC version): looked
// up in memory, then on disk (dir/<key>.cubin: a header with magic, key, length and checksum
// of the CUBIN, checked before the bytes are used; a file that fails any check is rebuilt and
// replaced), else compiled and stored in both (the file written to a temporary name and renamed
// into place, so a reader never sees half a file). A disk cache that cannot be written is
// logged once and the cache goes on in memory. Thread-safe.
class KernelCache {
 public:
  explicit KernelCache(std::string dir);  // "": memory only
  const std::string& dir() const { return dir_; }

  Cubin get(const std::string& source, const std::string& program_name,
            const std::vector<std::string>& options, const std::string& arch);

  uint64_t key(const std::string& source, const std::string& program_name,
               const std::vector<std::string>& options, const std::string& arch) const;
  std::string path_for(uint64_t key) const;  // "" without a disk cache

  struct Stats {
    int compiles = 0;  // NVRTC runs
    int memory_hits = 0;
    int disk_hits = 0;
    int disk_rejected = 0;  // files that failed a check (rebuilt)
    int disk_writes = 0;
  };
  Stats stats() const;

 private:
  Cubin read_disk(uint64_t key);
  void write_disk(uint64_t key, const std::vector<uint8_t>& cubin);

  std::string dir_;
  mutable std::mutex mu_;
  std::map<uint64_t, Cubin> memory_;
  Stats stats_;
  bool write_failed_logged_ = false;
};

// On-disk format (exposed for the tests): kFileMagic, then key, CUBIN length and FNV-1a 64 of
// the CUBIN (little-endian uint64 each), then the CUBIN.
constexpr char kFileMagic[8] = {'J', 'I', 'N', 'X', 'C', 'U', 'B', '1'};
constexpr size_t kFileHeaderBytes = 32;
uint64_t fnv1a64(const void* data, size_t n, uint64_t h = 1469598103934665603ull);

}  // namespace jinx::cuda::jit
