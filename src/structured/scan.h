// Character scanning shared by the GBNF parser (gbnf.cpp) and the regex converter
// (regex_grammar.cpp): hex escapes and UTF-8 code points of a pattern's text.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace jinx::scan {

inline bool is_scalar(uint32_t cp) { return cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF); }

// The value of `digits` hex digits at s[*pos], advancing *pos past them; nullopt (and *pos at
// the first non-digit) when fewer follow.
inline std::optional<uint32_t> hex(std::string_view s, size_t* pos, int digits) {
  uint32_t v = 0;
  for (int i = 0; i < digits; ++i, ++*pos) {
    const char c = *pos < s.size() ? s[*pos] : '\0';
    uint32_t d;
    if (c >= '0' && c <= '9') d = static_cast<uint32_t>(c - '0');
    else if (c >= 'a' && c <= 'f') d = static_cast<uint32_t>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') d = static_cast<uint32_t>(c - 'A' + 10);
    else return std::nullopt;
    v = v * 16 + d;
  }
  return v;
}

// The UTF-8 code point at s[*pos], advancing *pos past it; nullopt for anything that is not
// strict UTF-8 (a stray or missing continuation byte, an overlong form, a surrogate, a value
// past U+10FFFF).
inline std::optional<uint32_t> utf8(std::string_view s, size_t* pos) {
  if (*pos >= s.size()) return std::nullopt;
  const auto c = static_cast<unsigned char>(s[*pos]);
  int n = 0;
  uint32_t cp = 0;
  if (c < 0x80) cp = c;
  else if (c >= 0xC2 && c <= 0xDF) cp = c & 0x1F, n = 1;
  else if (c >= 0xE0 && c <= 0xEF) cp = c & 0x0F, n = 2;
  else if (c >= 0xF0 && c <= 0xF4) cp = c & 0x07, n = 3;
  else return std::nullopt;
  size_t p = *pos + 1;
  for (int i = 0; i < n; ++i, ++p) {
    if (p >= s.size() || (static_cast<unsigned char>(s[p]) & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (static_cast<unsigned char>(s[p]) & 0x3F);
  }
  static constexpr uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || !is_scalar(cp)) return std::nullopt;
  *pos = p;
  return cp;
}

}  // namespace jinx::scan
