#include "tokenizer/hf_config.h"

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tokenizer/byte_level.h"

namespace jinx {
namespace {

using json = nlohmann::json;

// A token in tokenizer_config.json is a string or {"content": ...}.
std::string token_text(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string())
    return v.at("content").get<std::string>();
  return {};
}

int32_t find_piece(const TokenizerState& s, const std::string& text) {
  if (text.empty()) return -1;
  for (size_t i = 0; i < s.pieces.size(); ++i)
    if (s.pieces[i] == text) return static_cast<int32_t>(i);
  return -1;
}

}  // namespace

void finish_added_and_bytes(TokenizerState* s, const std::vector<AddedToken>& added,
                            bool byte_level) {
  const size_t n = s->pieces.size();
  s->special.assign(n, 0);
  s->bytes.assign(n, std::string());
  const auto& alphabet = byte_level_alphabet();
  for (size_t i = 0; i < n; ++i) {
    // Hugging Face's ByteLevel decoder maps a token through the byte alphabet when every
    // character is in it, and passes its UTF-8 through otherwise (added tokens included).
    if (!byte_level || !alphabet.unspell(s->pieces[i], &s->bytes[i])) s->bytes[i] = s->pieces[i];
  }
  std::vector<AddedToken> raw, normalized;
  for (const AddedToken& a : added) {
    JINX_CHECK(a.id >= 0 && static_cast<size_t>(a.id) < n, "added token id out of range");
    if (a.special) s->special[a.id] = 1;
    if (a.normalized && !s->normalizer.is_none())
      normalized.push_back(a);
    else
      raw.push_back(a);
  }
  s->added_raw.init(std::move(raw));
  s->added_normalized.init(std::move(normalized));
}

void apply_tokenizer_config(TokenizerState* s, std::string_view config_json) {
  if (!config_json.empty()) {
    json c;
    try {
      c = json::parse(config_json);
    } catch (const json::exception& e) {
      fail("tokenizer_config.json is not valid JSON: ", e.what());
    }
    if (!c.is_object()) fail("tokenizer_config.json is not a JSON object");
    if (c.contains("bos_token")) s->bos = find_piece(*s, token_text(c.at("bos_token")));
    if (c.contains("eos_token")) s->eos = find_piece(*s, token_text(c.at("eos_token")));
    if (c.contains("chat_template")) {
      const json& t = c.at("chat_template");
      if (t.is_string()) {
        s->chat_template = t.get<std::string>();
      } else if (t.is_array()) {  // [{"name": "default", "template": ...}, ...]
        for (const json& e : t)
          if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
              e.at("template").is_string())
            s->chat_template = e.at("template").get<std::string>();
      }
    }
  }
  s->finish();
}

}  // namespace jinx
