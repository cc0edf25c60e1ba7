// Errors and invariant checks.
//
// jinx::Error carries a message meant for a user (a bad file, a bad request). JINX_CHECK is
// always on, for invariants and for validating anything read from outside: a failed check
// throws jinx::Error with the file:line and the message, it never aborts the process.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace jinx {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Concatenates any streamable values: str("n=", n, " too big").
template <typename... Args>
std::string str(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

template <typename... Args>
[[noreturn]] void fail(Args&&... args) {
  throw Error(str(std::forward<Args>(args)...));
}

}  // namespace jinx

#define JINX_CHECK(cond, ...)                                                  \
  do {                                                                         \
    if (!(cond)) [[unlikely]]                                                  \
      ::jinx::fail(__VA_ARGS__ __VA_OPT__(, ) " [", #cond, " at ", __FILE__, \
                   ":", __LINE__, "]");                                        \
  } while (0)
