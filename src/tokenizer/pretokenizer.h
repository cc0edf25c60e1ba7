// Pre-tokenization: cuts normalized text into the pieces ("words") that BPE sees.
//
// A pipeline of split steps, each applied to every piece the previous step produced, as
// Hugging Face's pre_tokenizers.Sequence does. Regular expressions run through PCRE2 in UTF
// mode with Unicode properties (UCP) and JIT; input must be valid UTF-8 (the tokenizer
// replaces invalid bytes first).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace jinx {

// The pattern of GPT-2's ByteLevel pre-tokenizer (use_regex=true).
extern const char* const kGpt2Pattern;
// Llama-3's pattern: case-insensitive contractions, digits in groups of up to three.
extern const char* const kLlama3Pattern;
// Qwen2's pattern: Llama-3's with single digits.
extern const char* const kQwen2Pattern;
// o200k (GPT-4o, gpt-oss; llama.cpp's pre type "gpt-4o"): words split before capitals,
// contractions kept on their word, digits in groups of up to three, '/' kept after punctuation.
extern const char* const kO200kPattern;

class PreTokenizer {
 public:
  enum class Behavior { kIsolated, kRemoved };

  PreTokenizer();
  ~PreTokenizer();
  PreTokenizer(PreTokenizer&&) noexcept;
  PreTokenizer& operator=(PreTokenizer&&) noexcept;

  // Adds a step that splits on pattern (PCRE2 syntax). Throws jinx::Error if it does not compile.
  void add_regex(std::string_view pattern, Behavior behavior = Behavior::kIsolated);
  // Hugging Face's Digits pre-tokenizer: isolate each digit, or each run of digits.
  void add_digits(bool individual);
  // Prepends a space to every text segment that does not start with one (ByteLevel's
  // add_prefix_space).
  void set_add_prefix_space(bool on) { add_prefix_space_ = on; }
  bool empty() const { return steps_.empty(); }

  // Cuts text into pieces (views into text, or into *storage when a prefix space is added).
  void split(std::string_view text, std::string* storage, std::vector<std::string_view>* out) const;

 private:
  struct Step;
  std::vector<std::unique_ptr<Step>> steps_;
  bool add_prefix_space_ = false;
};

// Maps llama.cpp's tokenizer.ggml.pre names to a pipeline. Throws jinx::Error on unknown names.
PreTokenizer pre_tokenizer_for_gguf(std::string_view pre_name);

}  // namespace jinx
