// Text <-> token ids, matching Hugging Face `tokenizers` (and transformers' decode) exactly
// for the byte-level BPE tokenizers of GPT-2, Qwen2, Llama-3 and SmolLM2, and llama.cpp's
// SentencePiece tokenizer for GGUF "llama" vocabularies.
//
// encode() pipeline (tokenizer.json order): invalid UTF-8 -> U+FFFD, added tokens cut out,
// normalizer, pre-tokenizer regexes, BPE per piece (cached), then the post-processor's
// BOS/EOS template. decode() maps ids back to bytes and converts them to UTF-8 the way
// transformers does (each invalid sequence -> U+FFFD).
//
// A Tokenizer is immutable after loading; encode/decode may run on many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace jinx {

class GgufFile;
struct TokenizerState;

class Tokenizer {
 public:
  // tokenizer.json (+ tokenizer_config.json for bos/eos/add_bos_token/chat_template, and
  // chat_template.jinja, which transformers writes since 4.44: it wins over the config's, as
  // in transformers; gpt-oss ships its template only there).
  static std::unique_ptr<Tokenizer> from_hf_dir(const std::string& dir);
  // tokenizer.json text and optional tokenizer_config.json / chat_template.jinja texts ("" when
  // absent).
  static std::unique_ptr<Tokenizer> from_hf_json(std::string_view tokenizer_json,
                                                 std::string_view tokenizer_config_json = "",
                                                 std::string_view chat_template_jinja = "");
  // tokenizer.ggml.* metadata.
  static std::unique_ptr<Tokenizer> from_gguf(const GgufFile& f);

  explicit Tokenizer(std::unique_ptr<TokenizerState> state);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special: BOS/EOS rules of this tokenizer; parse_special: split special tokens out of
  // the text first (when false they are tokenized as plain text; non-special added tokens
  // are still recognised, as in tokenizers' encode_special_tokens).
  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = true) const;
  // Ids outside the vocabulary are skipped, as transformers does.
  std::string decode(std::span<const int32_t> ids, bool skip_special = false) const;

  std::string token_piece(int32_t id) const;  // raw vocab string; "" when out of range
  int32_t vocab_size() const;                 // includes added tokens
  std::optional<int32_t> token_id(std::string_view piece) const;
  int32_t bos_id() const;  // -1 when none
  int32_t eos_id() const;  // -1 when none
  // All end-of-generation ids known (eos, eot, <|im_end|>, <|eot_id|>, <end_of_turn> ...).
  std::vector<int32_t> eos_ids() const;
  bool is_special(int32_t id) const;
  const std::string& chat_template() const;  // "" if none
  std::string bos_token() const;
  std::string eos_token() const;
  bool add_bos() const;  // whether encode(add_special=true) prepends BOS

  // Bytes of one token as decode() appends them before UTF-8 repair ("" for a special token
  // when skip_special, or for an id out of range). Used by IncrementalDetokenizer.
  std::string token_bytes(int32_t id, bool skip_special) const;
  // The byte of a SentencePiece <0xXX> byte-fallback token (decoded in runs), else -1.
  int fallback_byte(int32_t id) const;
  // Whether decode() drops one leading space of the whole text (SentencePiece).
  bool strips_leading_space() const;

 private:
  void encode_segment(std::string_view text, std::vector<int32_t>* out) const;
  std::unique_ptr<TokenizerState> s_;
};

// Feeds ids one at a time and returns text deltas that never split a UTF-8 character; the
// concatenation of all deltas and flush() equals decode(all ids, skip_special).
// Appends a run of byte-fallback bytes to out as transformers' ByteFallback decoder does.
void append_byte_run(std::string* run, std::string* out);

class IncrementalDetokenizer {
 public:
  IncrementalDetokenizer(const Tokenizer& tok, bool skip_special);
  std::string push(int32_t id);
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool skip_special_;
  bool at_start_ = true;  // no byte produced yet (for SentencePiece's leading space)
  std::string run_;       // SentencePiece <0xXX> bytes not yet converted
  std::string pending_;   // bytes held back: an incomplete UTF-8 sequence
};

// Holds back text that could be the start of a stop string; never emits any part of a stop
// string. After a stop, push() returns nothing more.
class StopStringMatcher {
 public:
  // include_stop: the stop string itself ends the released text (vLLM's
  // include_stop_str_in_output); else it is cut off.
  explicit StopStringMatcher(std::vector<std::string> stops, bool include_stop = false);
  struct Out {
    std::string text;
    bool stopped = false;
  };
  Out push(std::string_view delta);
  // Inactive: text passes straight through and nothing stops (vLLM checks no stop string before
  // min_tokens). Active by default.
  void set_active(bool active) { active_ = active; }
  // Releases held-back text at the end of generation (nothing after a stop).
  std::string flush();

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool include_stop_ = false;
  bool active_ = true;
  bool stopped_ = false;
};

}  // namespace jinx
