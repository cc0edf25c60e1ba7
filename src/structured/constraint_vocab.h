// The vocabulary as byte strings, indexed for constrained decoding: a trie of every token that
// can be generated as text, stored in preorder so a walk is one pass over an array that skips
// whole subtrees at the first rejected byte.
//
// Built once per tokenizer (sorting ~50k-150k strings: tens of milliseconds); immutable and
// safe to share between threads and requests.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace jinx {

class Tokenizer;

class ConstraintVocab {
 public:
  // Token bytes as the detokenizer emits them (Tokenizer::token_bytes; SentencePiece <0xXX>
  // tokens are their byte). Special tokens are never allowed as text.
  explicit ConstraintVocab(const Tokenizer& tok);
  // token_bytes[id]; special[id] marks tokens that are never text (size must match).
  ConstraintVocab(std::vector<std::string> token_bytes, std::vector<bool> special);

  // One trie node: the byte that leads to it from its parent, its depth (1 = first byte), the
  // index just past its subtree, and the tokens whose bytes end here.
  struct Node {
    uint32_t depth = 0;
    uint32_t skip = 0;
    uint32_t tok_begin = 0;
    uint32_t tok_end = 0;
    uint8_t byte = 0;
  };

  int32_t size() const { return static_cast<int32_t>(bytes_.size()); }
  const std::string& bytes(int32_t id) const { return bytes_[id]; }
  // Special, or no bytes at all: never allowed as text.
  bool is_control(int32_t id) const { return control_[id] != 0; }
  struct Trie {
    std::vector<Node> nodes;      // preorder
    std::vector<int32_t> tokens;  // Node::tok_begin/tok_end index this
  };
  const Trie& trie() const { return all_; }  // every text token
  uint32_t max_depth() const { return max_depth_; }

  // Inside a JSON string at a character boundary most tokens are plain string content: they
  // are allowed whatever follows the string, as long as maxLength leaves room. Those tokens,
  // sorted by the code points they add (string_chars, parallel); every other text token is in
  // string_exit_trie() and needs a walk.
  const std::vector<int32_t>& string_tokens() const { return string_tokens_; }
  const std::vector<uint32_t>& string_chars() const { return string_chars_; }
  const Trie& string_exit_trie() const { return exit_; }
  // bits |= the string-content tokens of at most `room` code points. Precomputed bitsets up to
  // kRoomTable code points make this a copy of vocab/8 bytes instead of a scattered loop.
  void add_string_tokens(uint32_t room, std::vector<uint64_t>* bits) const;
  static constexpr uint32_t kRoomTable = 32;

 private:
  void build();
  static Trie build_trie(const std::vector<std::string>& bytes, std::vector<int32_t> ids);
  void classify_string_tokens();

  std::vector<std::string> bytes_;
  std::vector<uint8_t> control_;
  Trie all_;
  Trie exit_;
  std::vector<int32_t> string_tokens_;
  std::vector<uint32_t> string_chars_;
  std::vector<std::vector<uint64_t>> string_upto_;  // [kRoomTable + 1][words]
  size_t first_beyond_table_ = 0;  // first string token with more than kRoomTable code points
  uint32_t max_depth_ = 0;
};

}  // namespace jinx
