// Fuzz target: Tokenizer::encode on arbitrary bytes with the committed SmolLM2 tokenizer
// (tests/fixtures/tokenizer/smollm2), then decode and streaming detokenization.
// Input: arbitrary bytes as text; the tail read as int32 ids (out-of-range ones included) is
// also decoded.
// Properties: ids in range, decode() is valid UTF-8 and equals the streamed detokenization,
// and valid UTF-8 round-trips (SmolLM2: no normalizer, byte-level BPE) unless it holds a byte
// the vocabulary has no token for.
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz/tokenizer_check.h"

namespace {

const jinx::Tokenizer& smollm2() {
  static std::unique_ptr<jinx::Tokenizer> tok =
      jinx::Tokenizer::from_hf_dir(JINX_FIXTURES "/tokenizer/smollm2");
  return *tok;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)smollm2();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const jinx::Tokenizer& tok = smollm2();
  std::string_view text(reinterpret_cast<const char*>(data), size);
  static const std::array<bool, 256> byte_tokens = jinx::fuzz::bytes_with_tokens(tok);
  jinx::fuzz::check_encode(tok, text, &byte_tokens);
  // Arbitrary ids: out-of-range ones are skipped, never read.
  std::vector<int32_t> ids(std::min<size_t>(size / 4, 64));
  if (!ids.empty()) std::memcpy(ids.data(), data + size - ids.size() * 4, ids.size() * 4);
  for (int32_t& id : ids)
    if (id >= 0) id %= tok.vocab_size() + 8;  // mostly in range, a few just past the end
  for (bool skip : {false, true}) {
    JINX_FUZZ_ASSERT(jinx::fuzz::valid_utf8(tok.decode(ids, skip)));
    jinx::fuzz::check_incremental(tok, ids, skip);
  }
  for (int32_t id : ids) {
    (void)tok.token_piece(id);
    (void)tok.token_bytes(id, false);
  }
  return 0;
}
