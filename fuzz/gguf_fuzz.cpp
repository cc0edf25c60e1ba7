// Fuzz target: the GGUF reader (jinx::GgufFile) and what reads its metadata: every typed
// getter on every key, the model config (config_from_gguf) and the tokenizer (from_gguf).
// Properties: bad files throw jinx::Error; every tensor a file that loads declares lies inside
// the mapping and dequantizes (first row) without reading outside it.
#include <algorithm>
#include <vector>

#include "backend/cpu/dequant.h"
#include "fuzz/fuzz_util.h"
#include "loader/gguf.h"
#include "model/config.h"
#include "tokenizer/tokenizer.h"

namespace {

using jinx::fuzz::expect_ok_or_error;

void exercise_metadata(const jinx::GgufFile& f) {
  for (const jinx::GgufKV& kv : f.metadata()) {
    (void)kv.value.describe();
    if (kv.value.is_array() && kv.value.size() > 0) (void)kv.value.at(kv.value.size() - 1);
    expect_ok_or_error([&] { (void)f.get_int(kv.key); });
    expect_ok_or_error([&] { (void)f.get_float(kv.key); });
    expect_ok_or_error([&] { (void)f.get_string(kv.key); });
    expect_ok_or_error([&] { (void)f.get_bool(kv.key); });
    expect_ok_or_error([&] { (void)f.get_string_array(kv.key); });
    expect_ok_or_error([&] { (void)f.get_float_array(kv.key); });
    expect_ok_or_error([&] { (void)f.get_int_array(kv.key); });
  }
}

void check_tensors(const jinx::GgufFile& f) {
  const auto* begin = f.file().data();
  const size_t size = f.file().size();
  std::vector<float> row;
  for (const jinx::GgufTensor& t : f.tensors()) {
    JINX_FUZZ_ASSERT(f.find_tensor(t.name) == &t);
    const auto* p = static_cast<const uint8_t*>(t.view.data);
    JINX_FUZZ_ASSERT(t.view.nbytes == 0 || (p >= begin && p <= begin + size &&
                                            t.view.nbytes <= size - (p - begin)));
    const int64_t cols = t.view.cols();
    if (t.view.nbytes == 0 || cols <= 0 || cols > (1 << 16)) continue;
    row.resize(static_cast<size_t>(cols));
    jinx::cpu::dequantize_row(t.view.dtype, t.view.data, row.data(), cols);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static jinx::fuzz::ScratchFile scratch;
  const std::string& path =
      scratch.write(std::string_view(reinterpret_cast<const char*>(data), size));
  expect_ok_or_error([&] {
    jinx::GgufFile f(path);
    JINX_FUZZ_ASSERT(f.version() == 2 || f.version() == 3);
    JINX_FUZZ_ASSERT(f.data_offset() <= f.file().size());
    exercise_metadata(f);
    check_tensors(f);
    expect_ok_or_error([&] { (void)f.architecture(); });
    expect_ok_or_error([&] {
      jinx::ModelConfig c = jinx::config_from_gguf(f);
      (void)c.rope_inv_freq();
    });
    expect_ok_or_error([&] {
      auto tok = jinx::Tokenizer::from_gguf(f);
      std::vector<int32_t> ids = tok->encode("Hello world, <s> 123 héllo", true, true);
      for (int32_t id : ids) JINX_FUZZ_ASSERT(id >= 0 && id < tok->vocab_size());
      (void)tok->decode(ids);
    });
  });
  return 0;
}
