// UTF-8 helpers shared by the tokenizer: decoding one code point, encoding one, and the
// "lossy" conversion that replaces each maximal invalid subpart with U+FFFD (the Unicode
// recommended practice, which both Rust's String::from_utf8_lossy and Python's
// bytes.decode("utf-8", "replace") follow; transformers' decode goes through the former).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace jinx::utf8 {

inline constexpr char32_t kReplacement = 0xFFFD;
inline constexpr std::string_view kReplacementUtf8 = "\xEF\xBF\xBD";

// Length of the valid UTF-8 sequence starting at s[i], or 0 when the bytes there are not a
// complete valid sequence. *invalid_len receives the length of the maximal invalid subpart
// (>= 1) when 0 is returned and the data is not merely truncated; *truncated is set when the
// bytes are a valid but incomplete prefix that runs into the end of s.
size_t valid_seq_len(std::string_view s, size_t i, size_t* invalid_len, bool* truncated);

// Decodes one code point at s[i] (which must start a valid sequence of length n).
char32_t decode_at(std::string_view s, size_t i, size_t n);

// Appends the UTF-8 encoding of cp (cp must be a scalar value).
void append(std::string& out, char32_t cp);

// Returns s with every maximal invalid subpart replaced by U+FFFD.
std::string to_valid_lossy(std::string_view s);

// True when s is entirely valid UTF-8.
bool is_valid(std::string_view s);

// Length of the longest prefix of s that can be converted now without changing the lossy
// result of s + (any later bytes): everything except a trailing valid-but-incomplete sequence.
size_t stable_prefix_len(std::string_view s);

}  // namespace jinx::utf8
