// Tokenizer::from_gguf: tokenizer.ggml.* metadata written by llama.cpp's converters.
//
// tokenizer.ggml.model "gpt2": byte-level BPE (tokens spelled in GPT-2's byte alphabet, merges
// "a b" in rank order); the pre-tokenizer comes from tokenizer.ggml.pre, see
// pre_tokenizer_for_gguf() in pretokenizer.cpp for the name -> regex table.
// tokenizer.ggml.model "llama": SentencePiece (scores, <0xXX> byte fallback, "▁" spaces).
// Token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte. Control
// (and unknown) tokens are special; control and user-defined ones are matched whole in text.
#include <string>

#include <algorithm>
#include "core/check.h"
#include "loader/gguf.h"

#include "tokenizer/byte_level.h"
#include "tokenizer/hf_config.h"
#include "tokenizer/spm.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_state.h"

namespace jinx {
namespace {

constexpr size_t kMaxVocab = 1 << 24;
constexpr int64_t kTypeUnknown = 2, kTypeControl = 3, kTypeUserDefined = 4;

int32_t optional_id(const GgufFile& f, const char* key, size_t n_vocab) {
  const auto v = f.get_int(key);
  if (!v) return -1;
  // Some converters write -1 or UINT32_MAX for "none".
  if (*v < 0 || *v == 0xFFFFFFFFll) return -1;
  if (static_cast<uint64_t>(*v) >= n_vocab)
    fail(f.path(), ": ", key, " = ", *v, " is outside the vocabulary of ", n_vocab, " tokens");
  return static_cast<int32_t>(*v);
}

std::vector<AddedToken> added_from_types(const std::vector<std::string>& tokens,
                                         const std::vector<int64_t>& types) {
  std::vector<AddedToken> added;
  for (size_t i = 0; i < types.size(); ++i) {
    const int64_t t = types[i];
    if (t != kTypeControl && t != kTypeUserDefined && t != kTypeUnknown) continue;
    AddedToken a;
    a.id = static_cast<int32_t>(i);
    a.content = tokens[i];
    a.special = t != kTypeUserDefined;
    added.push_back(std::move(a));
  }
  return added;
}

void load_gpt2(const GgufFile& f, TokenizerState* s, const std::vector<AddedToken>& added) {
  const auto& alphabet = byte_level_alphabet();
  StringIdMap vocab;
  vocab.reserve(s->pieces.size());
  std::string bytes;
  for (size_t id = 0; id < s->pieces.size(); ++id) {
    if (!alphabet.unspell(s->pieces[id], &bytes)) bytes = s->pieces[id];
    vocab.try_emplace(bytes, static_cast<int32_t>(id));
  }
  const auto merge_strs = f.get_string_array("tokenizer.ggml.merges");
  if (merge_strs.empty()) fail(f.path(), ": gpt2 tokenizer without tokenizer.ggml.merges");
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merge_strs.size());
  std::string a, b;
  for (const std::string& m : merge_strs) {
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos) fail(f.path(), ": merge \"", m, "\" has no space");
    if (!alphabet.unspell(std::string_view(m).substr(0, sp), &a) ||
        !alphabet.unspell(std::string_view(m).substr(sp + 1), &b))
      fail(f.path(), ": merge \"", m, "\" is not spelled in the byte-level alphabet");
    merges.emplace_back(a, b);
  }
  s->bpe.init(std::move(vocab), merges, BpeModel::Symbols::kBytes, false, -1, false);
  const auto pre = f.get_string("tokenizer.ggml.pre");
  s->pre = pre_tokenizer_for_gguf(pre.value_or("default"));
  finish_added_and_bytes(s, added, /*byte_level=*/true);
}

void load_llama(const GgufFile& f, TokenizerState* s, const std::vector<AddedToken>& added,
                int32_t unk) {
  const auto scores = f.get_float_array("tokenizer.ggml.scores");
  if (scores.size() != s->pieces.size())
    fail(f.path(), ": tokenizer.ggml.scores has ", scores.size(), " entries for ", s->pieces.size(),
         " tokens");
  const bool space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  s->model = TokenizerState::Model::kSpm;
  s->spm.init(s->pieces, scores, unk, space_prefix);
  s->strip_leading_space = space_prefix;
  finish_added_and_bytes(s, added, /*byte_level=*/false);
  s->byte_value.assign(s->pieces.size(), -1);
  static const std::string kSpace = "\xE2\x96\x81";
  for (size_t i = 0; i < s->pieces.size(); ++i) {
    s->byte_value[i] = static_cast<int16_t>(byte_token_value(s->pieces[i]));
    std::string& out = s->bytes[i];
    for (size_t p = 0; (p = out.find(kSpace, p)) != std::string::npos;) out.replace(p, 3, " ");
  }
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const GgufFile& f) {
  auto s = std::make_unique<TokenizerState>();
  const auto model = f.get_string("tokenizer.ggml.model");
  if (!model) fail(f.path(), ": no tokenizer.ggml.model");
  s->pieces = f.get_string_array("tokenizer.ggml.tokens");
  const size_t n = s->pieces.size();
  if (n == 0 || n > kMaxVocab) fail(f.path(), ": tokenizer.ggml.tokens has ", n, " entries");
  auto types = f.get_int_array("tokenizer.ggml.token_type");
  if (!types.empty() && types.size() != n)
    fail(f.path(), ": tokenizer.ggml.token_type has ", types.size(), " entries for ", n, " tokens");
  const auto added = added_from_types(s->pieces, types);
  s->bos = optional_id(f, "tokenizer.ggml.bos_token_id", n);
  s->eos = optional_id(f, "tokenizer.ggml.eos_token_id", n);
  const int32_t unk = optional_id(f, "tokenizer.ggml.unknown_token_id", n);
  optional_id(f, "tokenizer.ggml.padding_token_id", n);  // validated only
  if (*model == "gpt2") {
    load_gpt2(f, s.get(), added);
  } else if (*model == "llama") {
    load_llama(f, s.get(), added, unk);
  } else {
    fail(f.path(), ": unsupported tokenizer.ggml.model \"", *model, "\" (supported: gpt2, llama)");
  }
  const bool is_spm = *model == "llama";
  if (f.get_bool("tokenizer.ggml.add_bos_token").value_or(is_spm) && s->bos >= 0)
    s->prefix.push_back(s->bos);
  if (f.get_bool("tokenizer.ggml.add_eos_token").value_or(false) && s->eos >= 0)
    s->suffix.push_back(s->eos);
  s->chat_template = f.get_string("tokenizer.chat_template").value_or("");
  s->finish();
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    const int32_t id = optional_id(f, key, n);
    if (id >= 0 && std::find(s->eos_ids.begin(), s->eos_ids.end(), id) == s->eos_ids.end())
      s->eos_ids.push_back(id);
  }
  s->harmony_stops();  // an eot id may have named <|end|>
  return std::make_unique<Tokenizer>(std::move(s));
}

}  // namespace jinx
