// Fuzz target: tokenizer.json loading (Tokenizer::from_hf_json, the body of from_hf_dir).
// Input: tokenizer.json, then optionally a NUL byte and tokenizer_config.json.
// Properties: bad files throw jinx::Error; a tokenizer that loads encodes a fixed text and
// a slice of the input with ids in range, and decode() agrees with streaming detokenization.
#include <memory>

#include "fuzz/tokenizer_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  jinx::fuzz::Split in = jinx::fuzz::split_at_nul(data, size);
  jinx::fuzz::expect_ok_or_error([&] {
    std::unique_ptr<jinx::Tokenizer> tok = jinx::Tokenizer::from_hf_json(in.first, in.second);
    JINX_FUZZ_ASSERT(tok->vocab_size() >= 0);
    JINX_FUZZ_ASSERT(tok->bos_id() < tok->vocab_size() && tok->eos_id() < tok->vocab_size());
    for (int32_t id : tok->eos_ids()) JINX_FUZZ_ASSERT(id >= 0 && id < tok->vocab_size());
    jinx::fuzz::check_encode(*tok, "Hello world! 12345 <|im_start|>user\n héllo 你好 \xF0\x9F\x98\x80",
                             /*byte_tokens=*/nullptr);
    jinx::fuzz::check_encode(*tok, in.first.substr(0, 256), /*byte_tokens=*/nullptr);
  });
  return 0;
}
