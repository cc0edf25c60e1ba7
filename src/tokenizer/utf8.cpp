#include "tokenizer/utf8.h"

namespace jinx::utf8 {
namespace {

// Allowed range of the second byte for a given lead byte (Unicode Table 3-7).
bool second_ok(uint8_t lead, uint8_t b) {
  if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
  if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
  if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
  if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
  return b >= 0x80 && b <= 0xBF;
}

size_t expected_len(uint8_t lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) return 3;
  if (lead >= 0xF0 && lead <= 0xF4) return 4;
  return 0;
}

}  // namespace

size_t valid_seq_len(std::string_view s, size_t i, size_t* invalid_len, bool* truncated) {
  *truncated = false;
  *invalid_len = 1;
  const auto lead = static_cast<uint8_t>(s[i]);
  const size_t n = expected_len(lead);
  if (n == 0) return 0;
  for (size_t k = 1; k < n; ++k) {
    if (i + k >= s.size()) {
      *truncated = true;
      *invalid_len = k;
      return 0;
    }
    const auto b = static_cast<uint8_t>(s[i + k]);
    const bool ok = k == 1 ? second_ok(lead, b) : (b >= 0x80 && b <= 0xBF);
    if (!ok) {
      *invalid_len = k;
      return 0;
    }
  }
  return n;
}

char32_t decode_at(std::string_view s, size_t i, size_t n) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  if (n == 1) return b0;
  char32_t cp = b0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(s[i + k]) & 0x3F);
  return cp;
}

void append(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string to_valid_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      out.push_back(s[i++]);
      continue;
    }
    size_t bad = 0;
    bool truncated = false;
    const size_t n = valid_seq_len(s, i, &bad, &truncated);
    if (n > 0) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out.append(kReplacementUtf8);
      i += bad;
    }
  }
  return out;
}

bool is_valid(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    size_t bad = 0;
    bool truncated = false;
    const size_t n = valid_seq_len(s, i, &bad, &truncated);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

size_t stable_prefix_len(std::string_view s) {
  // A held-back tail is at most 3 bytes: look for the last lead byte in that window whose
  // sequence is a valid prefix cut by the end of s.
  const size_t lo = s.size() >= 3 ? s.size() - 3 : 0;
  for (size_t i = s.size(); i-- > lo;) {
    const auto b = static_cast<uint8_t>(s[i]);
    if (b < 0x80) return s.size();
    if (b >= 0xC0) {
      size_t bad = 0;
      bool truncated = false;
      valid_seq_len(s, i, &bad, &truncated);
      return truncated ? i : s.size();
    }
  }
  return s.size();
}

}  // namespace jinx::utf8
