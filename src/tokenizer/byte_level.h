// GPT-2's byte-level alphabet: every byte 0..255 is spelled as one printable code point, so
// that a vocabulary of byte strings can be stored as text. Printable Latin-1 bytes spell
// themselves; the other 68 map to U+0100.. in byte order (space is "Ġ" U+0120).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace jinx {

class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet();

  // UTF-8 spelling of byte b.
  const std::string& spell(uint8_t b) const { return spelling_[b]; }

  // Byte spelled by code point cp, or -1 when cp is not in the alphabet.
  int byte_of(char32_t cp) const { return cp < kTableSize ? reverse_[cp] : -1; }

  // Converts a vocabulary string to the bytes it spells. Returns false (and leaves out
  // untouched) when some code point is not in the alphabet or s is not valid UTF-8.
  bool unspell(std::string_view s, std::string* out) const;

  // The alphabet spelling of raw bytes.
  std::string spell_bytes(std::string_view bytes) const;

 private:
  static constexpr char32_t kTableSize = 0x144;
  std::array<std::string, 256> spelling_;
  std::array<int16_t, kTableSize> reverse_;
};

const ByteLevelAlphabet& byte_level_alphabet();

}  // namespace jinx
