// Byte-pair encoding by merge rank (the algorithm of GPT-2 and of Hugging Face's BPE model).
//
// A word is first cut into initial symbols (one per byte for byte-level vocabularies, one per
// UTF-8 character otherwise, with optional <0xXX> byte fallback), then the pair of adjacent
// symbols with the lowest merge rank is merged, leftmost first on ties, until no pair has a
// rank. Symbols live in a doubly linked list and candidate pairs in a min-heap, so a word of
// n symbols costs O(n log n) rather than the O(n^2) of rescanning after every merge.
#pragma once

#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace jinx {

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIdMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  enum class Symbols { kBytes, kChars };

  // vocab: token text (raw bytes for kBytes) -> id. merges: pairs of token texts in rank
  // order. Throws jinx::Error when a merge names a token missing from the vocabulary.
  void init(StringIdMap vocab, const std::vector<std::pair<std::string, std::string>>& merges,
            Symbols symbols, bool byte_fallback, int32_t unk_id, bool ignore_merges);

  // Appends the ids of one pre-tokenized word.
  void encode_word(std::string_view word, std::vector<int32_t>* out) const;

  const StringIdMap& vocab() const { return vocab_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  static uint64_t key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  void initial_symbols(std::string_view word, std::vector<int32_t>* ids) const;
  void merge(std::vector<int32_t>* ids) const;

  static constexpr size_t kCacheCapacity = 1 << 16;
  static constexpr size_t kMaxCachedWord = 256;

  StringIdMap vocab_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::vector<int32_t> byte_ids_;  // [256] id of each single byte (kBytes) or <0xXX> (fallback)
  Symbols symbols_ = Symbols::kBytes;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  int32_t unk_id_ = -1;

  // Results for repeated words; bounded: once full, new words are no longer added.
  using Cache = std::unordered_map<std::string, std::vector<int32_t>, StringHash, std::equal_to<>>;
  mutable std::shared_mutex cache_mu_;
  mutable Cache cache_;
};

}  // namespace jinx
