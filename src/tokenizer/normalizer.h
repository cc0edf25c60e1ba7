// Text normalizers of Hugging Face tokenizer.json that the supported models use: NFC (Qwen2)
// and none (Llama-3, SmolLM2). Anything else is rejected when the tokenizer is loaded.
#pragma once

#include <string>
#include <string_view>

namespace jinx {

// Unicode Normalization Form C of valid UTF-8 text.
std::string nfc(std::string_view s);

class Normalizer {
 public:
  enum class Kind { kNone, kNfc };
  Normalizer() = default;
  explicit Normalizer(Kind kind) : kind_(kind) {}
  bool is_none() const { return kind_ == Kind::kNone; }
  // Returns normalized text, or s itself (in *storage untouched) when nothing changes.
  std::string_view apply(std::string_view s, std::string* storage) const;

 private:
  Kind kind_ = Kind::kNone;
};

}  // namespace jinx
