#include "tokenizer/added_tokens.h"

#include <algorithm>

#include "tokenizer/utf8.h"

namespace jinx {
namespace {

bool is_space(char32_t c) {
  // Rust's char::is_whitespace (Unicode White_Space).
  return (c >= 0x9 && c <= 0xD) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

bool is_word_char(char32_t c) {
  // Approximates Rust's char::is_alphanumeric (plus '_') for single_word: ASCII exactly, any
  // non-ASCII non-space code point counts as part of a word.
  if (c < 0x80)
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  return !is_space(c);
}

// The code point that ends text (text non-empty and valid UTF-8).
char32_t last_cp(std::string_view text) {
  size_t i = text.size() - 1;
  while (i > 0 && (static_cast<uint8_t>(text[i]) & 0xC0) == 0x80) --i;
  size_t bad = 0;
  bool truncated = false;
  const size_t n = utf8::valid_seq_len(text, i, &bad, &truncated);
  return n ? utf8::decode_at(text, i, n) : utf8::kReplacement;
}

char32_t first_cp(std::string_view text, size_t* len) {
  size_t bad = 0;
  bool truncated = false;
  const size_t n = utf8::valid_seq_len(text, 0, &bad, &truncated);
  *len = n ? n : bad;
  return n ? utf8::decode_at(text, 0, n) : utf8::kReplacement;
}

}  // namespace

void AddedTokenMatcher::init(std::vector<AddedToken> tokens) {
  tokens.erase(std::remove_if(tokens.begin(), tokens.end(),
                              [](const AddedToken& t) { return t.content.empty(); }),
               tokens.end());
  std::stable_sort(tokens.begin(), tokens.end(), [](const AddedToken& a, const AddedToken& b) {
    return a.content.size() > b.content.size();
  });
  tokens_ = std::move(tokens);
  for (auto& v : by_first_) v.clear();
  for (size_t i = 0; i < tokens_.size(); ++i)
    by_first_[static_cast<uint8_t>(tokens_[i].content[0])].push_back(static_cast<int>(i));
}

int AddedTokenMatcher::longest_at(std::string_view text, size_t pos, bool skip_special) const {
  for (int i : by_first_[static_cast<uint8_t>(text[pos])]) {
    const AddedToken& t = tokens_[i];
    if (skip_special && t.special) continue;
    if (text.compare(pos, t.content.size(), t.content) == 0) return i;
  }
  return -1;
}

void AddedTokenMatcher::split(std::string_view text, bool skip_special,
                              std::vector<TextSegment>* out) const {
  size_t emitted = 0;  // end of the last segment pushed
  size_t pos = 0;
  while (pos < text.size()) {
    const int k = longest_at(text, pos, skip_special);
    if (k < 0) {
      ++pos;
      continue;
    }
    const AddedToken& t = tokens_[k];
    size_t start = pos, stop = pos + t.content.size();
    if (t.single_word) {
      const bool left_ok = start == 0 || !is_word_char(last_cp(text.substr(0, start)));
      size_t n = 0;
      const bool right_ok = stop == text.size() || !is_word_char(first_cp(text.substr(stop), &n));
      if (!left_ok || !right_ok) {
        pos = stop;  // the match is consumed without being used, as the automaton does
        continue;
      }
    }
    if (t.lstrip) {
      while (start > emitted && is_space(last_cp(text.substr(0, start)))) {
        --start;
        while (start > emitted && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
      }
    }
    if (t.rstrip) {
      size_t n = 0;
      while (stop < text.size() && is_space(first_cp(text.substr(stop), &n))) stop += n;
    }
    if (start > emitted) out->push_back({text.substr(emitted, start - emitted), -1});
    out->push_back({text.substr(start, stop - start), t.id});
    emitted = pos = stop;
  }
  if (emitted < text.size()) out->push_back({text.substr(emitted), -1});
}

}  // namespace jinx
