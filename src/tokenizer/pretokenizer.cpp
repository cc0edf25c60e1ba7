#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "core/check.h"

namespace jinx {

const char* const kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char* const kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

const char* const kO200kPattern =
    R"([^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+)"
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*)"
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)?)"
    R"(|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

struct PreTokenizer::Step {
  pcre2_code* code = nullptr;
  Behavior behavior = Behavior::kIsolated;
  ~Step() { pcre2_code_free(code); }
};

PreTokenizer::PreTokenizer() = default;
PreTokenizer::~PreTokenizer() = default;
PreTokenizer::PreTokenizer(PreTokenizer&&) noexcept = default;
PreTokenizer& PreTokenizer::operator=(PreTokenizer&&) noexcept = default;

void PreTokenizer::add_regex(std::string_view pattern, Behavior behavior) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                    PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_off, nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof(msg));
    fail("pre-tokenizer regex does not compile at offset ", err_off, ": ",
         reinterpret_cast<const char*>(msg), " (pattern: ", pattern, ")");
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // falls back to the interpreter if unavailable
  auto step = std::make_unique<Step>();
  step->code = code;
  step->behavior = behavior;
  steps_.push_back(std::move(step));
}

void PreTokenizer::add_digits(bool individual) {
  add_regex(individual ? R"(\p{N})" : R"(\p{N}+)");
}

namespace {

// Splits one piece by one step's matches, appending the resulting non-empty pieces.
void split_one(const pcre2_code* code, PreTokenizer::Behavior behavior, pcre2_match_data* md,
               std::string_view piece, std::vector<std::string_view>* out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
  size_t pos = 0;  // start of the not yet emitted text
  size_t search = 0;
  while (search <= piece.size()) {
    const int rc =
        pcre2_match(code, subject, piece.size(), search, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc < 0) {
      JINX_CHECK(rc == PCRE2_ERROR_NOMATCH, "pre-tokenizer regex failed with PCRE2 error ", rc);
      break;
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {  // empty match: step one character forward
      search = b + 1;
      while (search < piece.size() && (static_cast<uint8_t>(piece[search]) & 0xC0) == 0x80)
        ++search;
      continue;
    }
    if (b > pos) out->push_back(piece.substr(pos, b - pos));
    if (behavior == PreTokenizer::Behavior::kIsolated) out->push_back(piece.substr(b, e - b));
    pos = search = e;
  }
  if (pos < piece.size()) out->push_back(piece.substr(pos));
}

}  // namespace

void PreTokenizer::split(std::string_view text, std::string* storage,
                         std::vector<std::string_view>* out) const {
  if (add_prefix_space_ && (text.empty() || text.front() != ' ')) {
    storage->assign(" ");
    storage->append(text);
    text = *storage;
  }
  out->clear();
  if (text.empty()) return;
  out->push_back(text);
  if (steps_.empty()) return;
  pcre2_match_data* md = pcre2_match_data_create(4, nullptr);
  JINX_CHECK(md != nullptr, "out of memory");
  std::vector<std::string_view> next;
  for (const auto& step : steps_) {
    next.clear();
    for (std::string_view piece : *out) split_one(step->code, step->behavior, md, piece, &next);
    out->swap(next);
  }
  pcre2_match_data_free(md);
}

PreTokenizer pre_tokenizer_for_gguf(std::string_view pre) {
  // The names are llama.cpp's (convert_hf_to_gguf.py writes them from a hash of the
  // tokenizer's behaviour); each maps to the pre_tokenizer of that model's tokenizer.json.
  PreTokenizer p;
  if (pre == "default" || pre == "gpt-2" || pre == "gpt2" || pre == "phi-2" || pre == "olmo" ||
      pre == "gpt-neox" || pre == "mpt") {
    p.add_regex(kGpt2Pattern);
  } else if (pre == "llama-bpe" || pre == "llama3" || pre == "llama-v3" || pre == "dbrx" ||
             pre == "smaug-bpe" || pre == "falcon3") {
    p.add_regex(kLlama3Pattern);
  } else if (pre == "qwen2" || pre == "deepseek-r1-qwen") {
    p.add_regex(kQwen2Pattern);
  } else if (pre == "gpt-4o") {  // o200k_base and gpt-oss's o200k_harmony
    p.add_regex(kO200kPattern);
  } else if (pre == "smollm" || pre == "starcoder" || pre == "refact" || pre == "codeshell") {
    // tokenizer.json: Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)].
    p.add_digits(true);
    p.add_regex(kGpt2Pattern);
  } else {
    fail("unsupported tokenizer.ggml.pre \"", pre,
         "\" (supported: default, gpt-2, gpt2, phi-2, olmo, gpt-neox, mpt, "
         "llama-bpe, llama3, llama-v3, dbrx, smaug-bpe, falcon3, qwen2, "
         "deepseek-r1-qwen, gpt-4o, smollm, starcoder, refact, codeshell)");
  }
  return p;
}

}  // namespace jinx
