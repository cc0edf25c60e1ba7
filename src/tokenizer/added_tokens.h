// Added tokens (special like <|im_end|> and plain like <think>) are cut out of the text
// before normalization and BPE, as Hugging Face's AddedVocabulary does: leftmost-longest
// matching, then the single_word / lstrip / rstrip rules of each token.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace jinx {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
};

// One piece of the text: either plain text or a matched added token.
struct TextSegment {
  std::string_view text;
  int32_t token_id = -1;  // >= 0 for an added token
};

class AddedTokenMatcher {
 public:
  // tokens: the ones this matcher looks for (a tokenizer keeps one matcher for tokens matched
  // on raw text and one for tokens matched on normalized text).
  void init(std::vector<AddedToken> tokens);
  bool empty() const { return tokens_.empty(); }

  // Splits text into segments. With skip_special, special tokens are left in the text (they
  // are not recognised), like tokenizers' encode_special_tokens.
  void split(std::string_view text, bool skip_special, std::vector<TextSegment>* out) const;

 private:
  // The longest token matching at text[pos], or -1.
  int longest_at(std::string_view text, size_t pos, bool skip_special) const;

  std::vector<AddedToken> tokens_;                // sorted by length, longest first
  std::array<std::vector<int>, 256> by_first_{};  // indices into tokens_ by first byte
};

}  // namespace jinx
