// Tokenizer throughput on one core: encode MB/s and decode MB/s.
//
// Usage: tokenizer_bench <text file> [tokenizer dir with tokenizer.json | file.gguf] [reps]
// Default tokenizer: the committed SmolLM2 tokenizer.json. The text is encoded once with a
// fresh tokenizer (cold word cache, which fills as it goes, like a server's first requests),
// then `reps` more times (warm cache).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "loader/gguf.h"
#include "tokenizer/tokenizer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <text file> [tokenizer dir | .gguf] [reps]\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1], std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  const std::string src = argc > 2 ? argv[2] : std::string(JINX_FIXTURES) + "/tokenizer/smollm2";
  const int reps = argc > 3 ? std::atoi(argv[3]) : 3;
  try {
    std::unique_ptr<jinx::Tokenizer> tok;
    if (src.size() > 5 && src.substr(src.size() - 5) == ".gguf") {
      jinx::GgufFile f(src);
      tok = jinx::Tokenizer::from_gguf(f);
    } else {
      tok = jinx::Tokenizer::from_hf_dir(src);
    }
    const double mb = text.size() / 1e6;
    auto t0 = std::chrono::steady_clock::now();
    auto ids = tok->encode(text, false);
    const double cold = seconds_since(t0);
    t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < reps; ++r) ids = tok->encode(text, false);
    const double warm = seconds_since(t0) / reps;
    t0 = std::chrono::steady_clock::now();
    std::string back = tok->decode(ids);
    const double dec = seconds_since(t0);
    std::printf("text %.2f MB, %zu tokens (%.2f bytes/token), tokenizer %s\n", mb, ids.size(),
                text.size() / double(ids.size()), src.c_str());
    std::printf("encode cold cache: %.1f MB/s\nencode warm cache: %.1f MB/s\ndecode: %.1f MB/s\n",
                mb / cold, mb / warm, mb / dec);
    std::printf("round trip %s\n", back == text ? "exact" : "differs (invalid UTF-8 in input?)");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
