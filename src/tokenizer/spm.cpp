#include "tokenizer/spm.h"

#include <queue>

#include "core/check.h"
#include "tokenizer/utf8.h"

namespace jinx {

int byte_token_value(std::string_view p) {
  if (p.size() != 6 || p.substr(0, 3) != "<0x" || p[5] != '>') return -1;
  int v = 0;
  for (char c : p.substr(3, 2)) {
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= c - '0';
    else if (c >= 'A' && c <= 'F')
      v |= c - 'A' + 10;
    else if (c >= 'a' && c <= 'f')
      v |= c - 'a' + 10;
    else
      return -1;
  }
  return v;
}

void SpmModel::init(const std::vector<std::string>& pieces, const std::vector<float>& scores,
                    int32_t unk_id, bool add_space_prefix) {
  if (scores.size() != pieces.size())
    fail("SentencePiece vocabulary has ", pieces.size(), " tokens but ", scores.size(), " scores");
  vocab_.clear();
  vocab_.reserve(pieces.size());
  byte_ids_.assign(256, -1);
  for (size_t i = 0; i < pieces.size(); ++i) {
    vocab_.try_emplace(pieces[i], static_cast<int32_t>(i));
    const int b = byte_token_value(pieces[i]);
    if (b >= 0 && byte_ids_[b] < 0) byte_ids_[b] = static_cast<int32_t>(i);
  }
  scores_ = scores;
  unk_id_ = unk_id;
  add_space_prefix_ = add_space_prefix;
}

namespace {

struct SpmSym {
  int32_t start, len, prev, next;
};

// One symbol per UTF-8 character of s (an invalid byte is a symbol of its own).
std::vector<SpmSym> char_symbols(std::string_view s) {
  std::vector<SpmSym> syms;
  for (size_t i = 0; i < s.size();) {
    size_t bad = 0;
    bool truncated = false;
    size_t n = utf8::valid_seq_len(s, i, &bad, &truncated);
    if (n == 0) n = bad;
    const int32_t k = static_cast<int32_t>(syms.size());
    syms.push_back({static_cast<int32_t>(i), static_cast<int32_t>(n), k - 1, k + 1});
    i += n;
  }
  if (!syms.empty()) syms.back().next = -1;
  return syms;
}

}  // namespace

void SpmModel::emit(std::string_view piece, std::vector<int32_t>* out) const {
  auto it = vocab_.find(piece);
  if (it != vocab_.end()) {
    out->push_back(it->second);
    return;
  }
  bool all = true;
  for (char c : piece) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
  if (all) {
    for (char c : piece) out->push_back(byte_ids_[static_cast<uint8_t>(c)]);
  } else if (unk_id_ >= 0) {
    out->push_back(unk_id_);
  }
}

void SpmModel::encode(std::string_view text, std::vector<int32_t>* out, bool at_start) const {
  static constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581
  std::string s;
  s.reserve(text.size() + 3);
  if (at_start && add_space_prefix_ && (text.empty() || text.front() != ' ')) s += kSpace;
  for (char c : text) {
    if (c == ' ')
      s += kSpace;
    else
      s.push_back(c);
  }
  if (s.empty()) return;
  std::vector<SpmSym> syms = char_symbols(s);
  struct Bigram {
    float score;
    int32_t left, len;  // len of the merged text: detects stale entries
    bool operator<(const Bigram& o) const {
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Bigram> heap;
  auto try_add = [&](int32_t l) {
    if (l < 0 || syms[l].next < 0) return;
    const SpmSym& a = syms[l];
    const int32_t len = a.len + syms[a.next].len;
    auto it = vocab_.find(std::string_view(s).substr(a.start, len));
    if (it != vocab_.end()) heap.push({scores_[it->second], l, len});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(syms.size()); ++i) try_add(i);
  while (!heap.empty()) {
    const Bigram b = heap.top();
    heap.pop();
    SpmSym& a = syms[b.left];
    if (a.len == 0 || a.next < 0 || a.len + syms[a.next].len != b.len) continue;
    SpmSym& r = syms[a.next];
    a.len = b.len;
    r.len = 0;
    a.next = r.next;
    if (a.next >= 0) syms[a.next].prev = b.left;
    try_add(a.prev);
    try_add(b.left);
  }
  for (int32_t i = 0; i >= 0; i = syms[i].next)
    emit(std::string_view(s).substr(syms[i].start, syms[i].len), out);
}

}  // namespace jinx
