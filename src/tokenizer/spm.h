// SentencePiece-style BPE (GGUF tokenizer.ggml.model = "llama"): spaces become "▁", the
// adjacent pair whose concatenation is the vocabulary piece with the highest score merges
// first (leftmost on ties), and characters missing from the vocabulary fall back to their
// <0xXX> byte tokens.
//
// The prefix space follows transformers' LlamaTokenizer (Metaspace, prepend_scheme "first"):
// "▁" is prepended only to text at the very start of the input, and only when it does not
// already start with a space.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/bpe.h"

namespace jinx {

class SpmModel {
 public:
  // pieces/scores: [vocab_size]. Throws jinx::Error when sizes disagree.
  void init(const std::vector<std::string>& pieces, const std::vector<float>& scores,
            int32_t unk_id, bool add_space_prefix);
  // Appends the ids of one text segment; at_start: the segment begins the whole input.
  void encode(std::string_view text, std::vector<int32_t>* out, bool at_start = false) const;

 private:
  // Appends the id of a final symbol, or its byte-fallback ids, or unk.
  void emit(std::string_view piece, std::vector<int32_t>* out) const;

  StringIdMap vocab_;
  std::vector<float> scores_;
  std::vector<int32_t> byte_ids_;  // [256] id of <0xXX>, or -1
  int32_t unk_id_ = -1;
  bool add_space_prefix_ = true;
};

// "<0xXX>" -> XX, else -1.
int byte_token_value(std::string_view piece);

}  // namespace jinx
