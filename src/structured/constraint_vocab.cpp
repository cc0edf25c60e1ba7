#include "structured/constraint_vocab.h"

#include <algorithm>
#include <numeric>

#include "core/check.h"
#include "structured/json_matcher.h"
#include "tokenizer/tokenizer.h"

namespace jinx {

ConstraintVocab::ConstraintVocab(const Tokenizer& tok) {
  const int32_t n = tok.vocab_size();
  JINX_CHECK(n >= 0, "negative vocabulary size");
  bytes_.resize(n);
  control_.resize(n);
  for (int32_t id = 0; id < n; ++id) {
    const int fb = tok.fallback_byte(id);
    bytes_[id] = fb >= 0 ? std::string(1, static_cast<char>(fb)) : tok.token_bytes(id, false);
    control_[id] = tok.is_special(id) || bytes_[id].empty();
  }
  build();
}

ConstraintVocab::ConstraintVocab(std::vector<std::string> token_bytes, std::vector<bool> special)
    : bytes_(std::move(token_bytes)) {
  JINX_CHECK(special.size() == bytes_.size(), "special flags: ", special.size(), " for ",
             bytes_.size(), " tokens");
  control_.resize(bytes_.size());
  for (size_t i = 0; i < bytes_.size(); ++i) control_[i] = special[i] || bytes_[i].empty();
  build();
}

void ConstraintVocab::build() {
  std::vector<int32_t> ids;
  for (int32_t id = 0; id < size(); ++id) {
    if (!control_[id]) {
      ids.push_back(id);
      max_depth_ = std::max<uint32_t>(max_depth_, static_cast<uint32_t>(bytes_[id].size()));
    }
  }
  all_ = build_trie(bytes_, std::move(ids));
  classify_string_tokens();
}

// Sorted tokens -> preorder trie: consecutive tokens share their common prefix's nodes.
ConstraintVocab::Trie ConstraintVocab::build_trie(const std::vector<std::string>& bytes,
                                                  std::vector<int32_t> ids) {
  std::sort(ids.begin(), ids.end(), [&](int32_t a, int32_t b) {
    return bytes[a] != bytes[b] ? bytes[a] < bytes[b] : a < b;
  });
  Trie t;
  std::vector<uint32_t> open;  // node index at each depth of the current path
  const std::string* prev = nullptr;
  for (int32_t id : ids) {
    const std::string& s = bytes[id];
    size_t common = 0;
    if (prev) {
      const size_t lim = std::min(prev->size(), s.size());
      while (common < lim && (*prev)[common] == s[common]) ++common;
    }
    while (open.size() > common) {
      t.nodes[open.back()].skip = static_cast<uint32_t>(t.nodes.size());
      open.pop_back();
    }
    for (size_t d = common; d < s.size(); ++d) {
      Node node;
      node.depth = static_cast<uint32_t>(d + 1);
      node.byte = static_cast<uint8_t>(s[d]);
      node.tok_begin = node.tok_end = static_cast<uint32_t>(t.tokens.size());
      open.push_back(static_cast<uint32_t>(t.nodes.size()));
      t.nodes.push_back(node);
    }
    Node& last = t.nodes[open.back()];
    JINX_CHECK(last.tok_end == t.tokens.size(), "token trie order");
    t.tokens.push_back(id);
    ++last.tok_end;
    prev = &s;
  }
  for (uint32_t i : open) t.nodes[i].skip = static_cast<uint32_t>(t.nodes.size());
  return t;
}

// A token is string content when the matcher, inside a string with room to spare, takes all
// of its bytes and the string is still open; the frame's count is then its code points.
void ConstraintVocab::classify_string_tokens() {
  const auto g = JsonGrammar::from_schema_text(R"({"type":"string","maxLength":1073741824})");
  const JsonMatcher m(*g);
  MatchState start = m.initial();
  JINX_CHECK(m.feed(&start, "\""), "string grammar");
  std::vector<int32_t> exit_ids;
  std::vector<std::pair<uint32_t, int32_t>> inside;  // (code points, id)
  for (int32_t id = 0; id < size(); ++id) {
    if (control_[id]) continue;
    MatchState s = start;
    if (m.feed(&s, bytes_[id]) && s.ends.size() == 1 && s.frames.size() == 1) {
      inside.emplace_back(s.frames[0].a, id);
    } else {
      exit_ids.push_back(id);
    }
  }
  std::sort(inside.begin(), inside.end());
  for (const auto& [chars, id] : inside) {
    string_tokens_.push_back(id);
    string_chars_.push_back(chars);
  }
  exit_ = build_trie(bytes_, std::move(exit_ids));
  const size_t words = (bytes_.size() + 63) / 64;
  string_upto_.assign(kRoomTable + 1, std::vector<uint64_t>(words, 0));
  size_t i = 0;
  for (uint32_t room = 0; room <= kRoomTable; ++room) {
    if (room > 0) string_upto_[room] = string_upto_[room - 1];
    for (; i < string_tokens_.size() && string_chars_[i] <= room; ++i) {
      const auto t = static_cast<size_t>(string_tokens_[i]);
      string_upto_[room][t >> 6] |= uint64_t{1} << (t & 63);
    }
  }
  first_beyond_table_ = i;
}

void ConstraintVocab::add_string_tokens(uint32_t room, std::vector<uint64_t>* bits) const {
  const std::vector<uint64_t>& table = string_upto_[std::min(room, kRoomTable)];
  JINX_CHECK(bits->size() == table.size(), "mask size");
  for (size_t w = 0; w < table.size(); ++w) (*bits)[w] |= table[w];
  for (size_t i = first_beyond_table_; i < string_tokens_.size() && string_chars_[i] <= room; ++i) {
    const auto t = static_cast<size_t>(string_tokens_[i]);
    (*bits)[t >> 6] |= uint64_t{1} << (t & 63);
  }
}

}  // namespace jinx
