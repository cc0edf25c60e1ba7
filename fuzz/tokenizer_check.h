// Properties of a loaded tokenizer shared by the tokenizer fuzz targets.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/tokenizer.h"

namespace jinx::fuzz {

inline bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n = 0;
    uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      n = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      n = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (s.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = cp << 6 | (d & 0x3F);
    }
    if ((n == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
      return false;
    i += n + 1;
  }
  return true;
}

// Streams ids through IncrementalDetokenizer; the concatenated deltas must equal decode().
inline void check_incremental(const Tokenizer& tok, const std::vector<int32_t>& ids,
                              bool skip_special) {
  IncrementalDetokenizer detok(tok, skip_special);
  std::string streamed;
  for (int32_t id : ids) streamed += detok.push(id);
  streamed += detok.flush();
  JINX_FUZZ_ASSERT(streamed == tok.decode(ids, skip_special));
}

// Which bytes have a single-byte token in a byte-level BPE vocabulary. Hugging Face drops a
// byte that has none (SmolLM2 lacks e.g. 0x04 and 0x1D), and so does Jinx, matching it.
inline std::array<bool, 256> bytes_with_tokens(const Tokenizer& tok) {
  std::array<bool, 256> has{};
  for (int b = 0; b < 256; ++b)
    has[b] = tok.token_id(byte_level_alphabet().spell(static_cast<uint8_t>(b))).has_value();
  return has;
}

// Encodes `text` with every flag combination: ids in range, decode and streaming agree. With
// `byte_tokens` (byte-level BPE without a normalizer), valid UTF-8 whose bytes all have a token
// must round-trip.
inline void check_encode(const Tokenizer& tok, std::string_view text,
                         const std::array<bool, 256>* byte_tokens) {
  const int32_t vocab = tok.vocab_size();
  bool lossless = byte_tokens && valid_utf8(text);
  for (size_t i = 0; lossless && i < text.size(); ++i)
    lossless = (*byte_tokens)[static_cast<uint8_t>(text[i])];
  for (int flags = 0; flags < 4; ++flags) {
    const bool add_special = flags & 1, parse_special = flags & 2;
    std::vector<int32_t> ids = tok.encode(text, add_special, parse_special);
    for (int32_t id : ids) JINX_FUZZ_ASSERT(id >= 0 && id < vocab);
    const std::string back = tok.decode(ids);
    JINX_FUZZ_ASSERT(valid_utf8(back));
    if (lossless && !add_special && !parse_special) JINX_FUZZ_ASSERT(back == text);
    check_incremental(tok, ids, flags & 1);
  }
}

}  // namespace jinx::fuzz
