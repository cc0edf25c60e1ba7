#include "tokenizer/bpe.h"

#include <queue>

#include "core/check.h"
#include "tokenizer/utf8.h"

namespace jinx {

void BpeModel::init(StringIdMap vocab,
                    const std::vector<std::pair<std::string, std::string>>& merges, Symbols symbols,
                    bool byte_fallback, int32_t unk_id, bool ignore_merges) {
  vocab_ = std::move(vocab);
  symbols_ = symbols;
  byte_fallback_ = byte_fallback;
  unk_id_ = unk_id;
  ignore_merges_ = ignore_merges;
  merges_.clear();
  merges_.reserve(merges.size() * 2);
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    auto ia = vocab_.find(a);
    auto ib = vocab_.find(b);
    auto ic = vocab_.find(a + b);
    if (ia == vocab_.end() || ib == vocab_.end() || ic == vocab_.end()) {
      fail("BPE merge ", rank, " (\"", a, "\" \"", b,
           "\") uses a token missing from the vocabulary");
    }
    // A repeated pair keeps its first (lowest) rank, as in Hugging Face tokenizers.
    merges_.try_emplace(key(ia->second, ib->second), Merge{static_cast<int32_t>(rank), ic->second});
  }
  byte_ids_.assign(256, -1);
  char hex[8];
  for (int b = 0; b < 256; ++b) {
    std::string name;
    if (symbols_ == Symbols::kBytes) {
      name = std::string(1, static_cast<char>(b));
    } else {
      snprintf(hex, sizeof(hex), "<0x%02X>", b);
      name = hex;
    }
    auto it = vocab_.find(name);
    if (it != vocab_.end()) byte_ids_[b] = it->second;
  }
  std::unique_lock lock(cache_mu_);
  cache_.clear();
}

void BpeModel::initial_symbols(std::string_view word, std::vector<int32_t>* ids) const {
  if (symbols_ == Symbols::kBytes) {
    // A byte without a token is dropped, as Hugging Face's BPE does without an unk token.
    for (char c : word) {
      const int32_t id = byte_ids_[static_cast<uint8_t>(c)];
      if (id >= 0)
        ids->push_back(id);
      else if (unk_id_ >= 0)
        ids->push_back(unk_id_);
    }
    return;
  }
  size_t i = 0;
  while (i < word.size()) {
    size_t bad = 0;
    bool truncated = false;
    size_t n = utf8::valid_seq_len(word, i, &bad, &truncated);
    if (n == 0) n = bad;
    const std::string_view ch = word.substr(i, n);
    auto it = vocab_.find(ch);
    if (it != vocab_.end()) {
      ids->push_back(it->second);
    } else {
      bool all = byte_fallback_;
      for (size_t k = 0; all && k < n; ++k) all = byte_ids_[static_cast<uint8_t>(ch[k])] >= 0;
      if (all) {
        for (char c : ch) ids->push_back(byte_ids_[static_cast<uint8_t>(c)]);
      } else if (unk_id_ >= 0) {
        ids->push_back(unk_id_);
      }
    }
    i += n;
  }
}

void BpeModel::merge(std::vector<int32_t>* ids) const {
  const int n = static_cast<int>(ids->size());
  if (n < 2) return;
  struct Sym {
    int32_t id;
    int32_t prev;
    int32_t next;
  };
  std::vector<Sym> syms(n);
  for (int i = 0; i < n; ++i) syms[i] = {(*ids)[i], i - 1, i + 1 < n ? i + 1 : -1};
  struct Cand {
    int32_t rank;
    int32_t pos;
    int32_t right_id;  // id of the right symbol when queued: detects stale candidates
    int32_t left_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push = [&](int pos) {
    const int nx = syms[pos].next;
    if (nx < 0) return;
    auto it = merges_.find(key(syms[pos].id, syms[nx].id));
    if (it != merges_.end()) heap.push({it->second.rank, pos, syms[nx].id, syms[pos].id});
  };
  for (int i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Sym& left = syms[c.pos];
    if (left.id < 0 || left.id != c.left_id || left.next < 0) continue;
    Sym& right = syms[left.next];
    if (right.id != c.right_id) continue;
    left.id = merges_.at(key(c.left_id, c.right_id)).id;
    right.id = -1;  // removed
    left.next = right.next;
    if (left.next >= 0) syms[left.next].prev = c.pos;
    if (left.prev >= 0) push(left.prev);
    push(c.pos);
  }
  ids->clear();
  for (int i = 0; i >= 0; i = syms[i].next) ids->push_back(syms[i].id);
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    auto it = vocab_.find(word);
    if (it != vocab_.end()) {
      out->push_back(it->second);
      return;
    }
  }
  const bool cacheable = word.size() <= kMaxCachedWord;
  if (cacheable) {
    std::shared_lock lock(cache_mu_);
    auto it = cache_.find(word);
    if (it != cache_.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  ids.reserve(word.size());
  initial_symbols(word, &ids);
  merge(&ids);
  out->insert(out->end(), ids.begin(), ids.end());
  if (cacheable) {
    std::unique_lock lock(cache_mu_);
    if (cache_.size() < kCacheCapacity) cache_.emplace(std::string(word), std::move(ids));
  }
}

}  // namespace jinx
