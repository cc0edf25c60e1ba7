#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace jinx {

ByteLevelAlphabet::ByteLevelAlphabet() {
  reverse_.fill(-1);
  char32_t next = 0x100;
  for (int b = 0; b < 256; ++b) {
    const bool printable =
        (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    const char32_t cp = printable ? static_cast<char32_t>(b) : next++;
    utf8::append(spelling_[b], cp);
    reverse_[cp] = static_cast<int16_t>(b);
  }
}

bool ByteLevelAlphabet::unspell(std::string_view s, std::string* out) const {
  std::string bytes;
  bytes.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    size_t bad = 0;
    bool truncated = false;
    const size_t n = utf8::valid_seq_len(s, i, &bad, &truncated);
    if (n == 0) return false;
    const int b = byte_of(utf8::decode_at(s, i, n));
    if (b < 0) return false;
    bytes.push_back(static_cast<char>(b));
    i += n;
  }
  *out = std::move(bytes);
  return true;
}

std::string ByteLevelAlphabet::spell_bytes(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += spelling_[static_cast<uint8_t>(c)];
  return out;
}

const ByteLevelAlphabet& byte_level_alphabet() {
  static const ByteLevelAlphabet kAlphabet;
  return kAlphabet;
}

}  // namespace jinx
