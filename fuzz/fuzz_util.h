// Helpers shared by the fuzz targets (fuzz/<target>_fuzz.cpp).
//
// Every target defines LLVMFuzzerTestOneInput. It is linked either with libFuzzer (clang,
// -DJINX_FUZZ=ON, tools/fuzz.sh) or with replay_main.cpp into a plain executable that runs it
// over every file of a corpus folder (the `fuzz-replay` CTest label, built by the normal build).
//
// The contract under test: bad input throws jinx::Error and nothing else. A target therefore
// catches jinx::Error only; any other exception escapes, terminates the process and is reported
// as a crash, like a sanitizer error or a failed JINX_FUZZ_ASSERT.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>

#include "core/check.h"

// A property of the code under test that must hold whatever the input; aborts when it does not.
#define JINX_FUZZ_ASSERT(cond)                                                              \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::fprintf(stderr, "JINX_FUZZ_ASSERT failed: %s at %s:%d\n", #cond, __FILE__,       \
                   __LINE__);                                                               \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)

namespace jinx::fuzz {

// Runs fn(); a jinx::Error is the expected outcome of bad input and is swallowed (printed to
// stderr when JINX_FUZZ_VERBOSE is set). Returns whether fn() completed.
template <typename Fn>
bool expect_ok_or_error(Fn&& fn) {
  static const bool verbose = std::getenv("JINX_FUZZ_VERBOSE") != nullptr;
  try {
    std::forward<Fn>(fn)();
    return true;
  } catch (const jinx::Error& e) {
    if (verbose) std::fprintf(stderr, "  jinx::Error: %.300s\n", e.what());
    return false;
  }
}

// Splits the input at its first NUL byte: (before, after). Without a NUL, after is empty and
// has_second is false. JSON and Jinja text never need a raw NUL, so it is a safe separator.
struct Split {
  std::string_view first, second;
  bool has_second = false;
};
inline Split split_at_nul(const uint8_t* data, size_t size) {
  std::string_view all(reinterpret_cast<const char*>(data), size);
  size_t nul = all.find('\0');
  if (nul == std::string_view::npos) return {all, {}, false};
  return {all.substr(0, nul), all.substr(nul + 1), true};
}

// Reads typed values off the front of the input; past the end it yields zeros.
class InputReader {
 public:
  InputReader(const uint8_t* data, size_t size) : p_(data), left_(size) {}
  size_t left() const { return left_; }
  template <typename T>
  T take() {
    T v{};
    size_t n = std::min(sizeof(T), left_);
    std::memcpy(&v, p_, n);
    p_ += n;
    left_ -= n;
    return v;
  }
  // An integer in [lo, hi].
  int64_t range(int64_t lo, int64_t hi) {
    uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    uint64_t raw = take<uint32_t>();
    return lo + static_cast<int64_t>(span ? raw % span : raw);
  }
  bool flag() { return take<uint8_t>() & 1; }
  std::string_view rest() {
    std::string_view s(reinterpret_cast<const char*>(p_), left_);
    p_ += left_;
    left_ = 0;
    return s;
  }

 private:
  const uint8_t* p_;
  size_t left_;
};

// Writes all of `bytes` to fd from offset 0 and truncates the file there.
inline void write_whole(int fd, std::string_view bytes) {
  JINX_FUZZ_ASSERT(::ftruncate(fd, 0) == 0);
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::pwrite(fd, bytes.data() + done, bytes.size() - done, static_cast<off_t>(done));
    JINX_FUZZ_ASSERT(n > 0);
    done += static_cast<size_t>(n);
  }
}

// One file per process whose contents each input replaces: an anonymous memfd opened by its
// /proc/self/fd path (no disk traffic), or a temporary file when memfd is unavailable.
class ScratchFile {
 public:
  ScratchFile() {
    fd_ = ::memfd_create("jinx-fuzz", MFD_CLOEXEC);
    if (fd_ >= 0 && ::access(str("/proc/self/fd/", fd_).c_str(), R_OK) == 0) {
      path_ = str("/proc/self/fd/", fd_);
      return;
    }
    if (fd_ >= 0) ::close(fd_);
    path_ = (std::filesystem::temp_directory_path() / "jinx-fuzz-XXXXXX").string();
    fd_ = ::mkstemp(path_.data());
    JINX_FUZZ_ASSERT(fd_ >= 0);
    ::unlink(path_.c_str());  // reopened through /proc below, gone when the process ends
    path_ = str("/proc/self/fd/", fd_);
  }
  const std::string& write(std::string_view bytes) {
    write_whole(fd_, bytes);
    return path_;
  }

 private:
  int fd_ = -1;
  std::string path_;
};

// A per-process temporary directory, removed at exit.
class ScratchDir {
 public:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "jinx-fuzz-XXXXXX").string();
    JINX_FUZZ_ASSERT(::mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  // Writes `name` in the directory (or removes it when present is false).
  void put(const char* name, std::string_view bytes, bool present = true) {
    std::string p = path_ + "/" + name;
    if (!present) {
      ::unlink(p.c_str());
      return;
    }
    int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    JINX_FUZZ_ASSERT(fd >= 0);
    write_whole(fd, bytes);
    ::close(fd);
  }

 private:
  std::string path_;
};

// For a byte-level matcher (JsonMatcher, GbnfMatcher): feeding `doc` byte by byte agrees with
// accepts() (every byte taken and the end state complete), and a refused byte leaves the state
// as it was. `each` sees every state reached.
template <typename Matcher, typename Each>
void check_stepping(const Matcher& m, std::string_view doc, Each&& each) {
  auto s = m.initial(), next = s;
  bool all_taken = true;
  for (unsigned char c : doc) {
    const std::string key = s.key();
    if (!m.step(s, c, &next)) {
      JINX_FUZZ_ASSERT(s.key() == key);
      all_taken = false;
      break;
    }
    each(next);
    s = next;
  }
  JINX_FUZZ_ASSERT(m.accepts(doc) == (all_taken && m.complete(s)));
}

}  // namespace jinx::fuzz
