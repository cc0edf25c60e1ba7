// Internal: everything a loaded tokenizer holds. Filled by the loaders (hf_loader.cpp,
// gguf_loader.cpp), then frozen inside a Tokenizer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tokenizer/added_tokens.h"
#include "tokenizer/bpe.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/spm.h"

namespace jinx {

struct TokenizerState {
  enum class Model { kBpe, kSpm };
  Model model = Model::kBpe;

  std::vector<std::string> pieces;  // [vocab_size] id -> vocab string as stored in the file
  std::vector<std::string> bytes;   // [vocab_size] id -> bytes decode() produces for it
  std::vector<uint8_t> special;     // [vocab_size] 1 for special (control) tokens
  std::vector<int16_t> byte_value;  // [vocab_size] or empty: byte of a <0xXX> fallback token
  StringIdMap piece_to_id;

  BpeModel bpe;
  SpmModel spm;
  AddedTokenMatcher added_raw;         // matched on the raw text
  AddedTokenMatcher added_normalized;  // matched after normalization
  Normalizer normalizer;
  PreTokenizer pre;

  std::vector<int32_t> prefix;  // post-processor ids around a single sequence
  std::vector<int32_t> suffix;
  bool strip_leading_space = false;  // decoder drops one leading space (SentencePiece)

  int32_t bos = -1;
  int32_t eos = -1;
  std::vector<int32_t> eos_ids;
  std::string chat_template;

  // Sets `special`, `bytes` defaults and eos_ids from pieces; call once pieces are final.
  void finish();
  // o200k_harmony (gpt-oss): when <|return|> and <|call|> are special tokens, they end
  // generation and <|end|> does not (it closes one message, e.g. the analysis before the answer;
  // llama.cpp decides the same). finish() calls it; call again after adding eos ids.
  void harmony_stops();
};

}  // namespace jinx
