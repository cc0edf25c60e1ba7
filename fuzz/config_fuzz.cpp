// Fuzz target: Hugging Face config.json parsing (jinx::load_hf_config on a model folder).
// Input: config.json, then optionally a NUL byte and generation_config.json.
// Properties: bad files throw jinx::Error; a config that loads is valid (validate() passes)
// and its RoPE frequencies can be computed.
#include "fuzz/fuzz_util.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static jinx::fuzz::ScratchDir dir;
  jinx::fuzz::Split in = jinx::fuzz::split_at_nul(data, size);
  dir.put("config.json", in.first);
  dir.put("generation_config.json", in.second, in.has_second);
  jinx::fuzz::expect_ok_or_error([&] {
    jinx::ModelConfig c = jinx::load_hf_config(dir.path());
    c.validate();
    JINX_FUZZ_ASSERT(c.head_dim > 0 && c.n_heads % c.n_kv_heads == 0);
    JINX_FUZZ_ASSERT(static_cast<int64_t>(c.rope_inv_freq().size()) == c.head_dim / 2);
  });
  return 0;
}
