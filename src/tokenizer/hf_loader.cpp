// Tokenizer::from_hf_dir / from_hf_json: Hugging Face tokenizer.json (+ tokenizer_config.json).
// Only the components the supported models use are accepted; anything else fails loudly
// rather than tokenizing differently from the reference.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/check.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/hf_config.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/tokenizer_state.h"

namespace jinx {
namespace {

using json = nlohmann::json;

constexpr int64_t kMaxVocab = 1 << 24;

const json& field(const json& j, const char* key, const char* where) {
  if (!j.is_object() || !j.contains(key)) fail("tokenizer.json: ", where, " has no \"", key, "\"");
  return j.at(key);
}

int32_t checked_id(const json& v, const char* where) {
  if (!v.is_number_integer()) fail("tokenizer.json: ", where, " id is not an integer");
  const int64_t id = v.get<int64_t>();
  if (id < 0 || id >= kMaxVocab) fail("tokenizer.json: ", where, " id ", id, " out of range");
  return static_cast<int32_t>(id);
}

bool get_bool(const json& j, const char* key, bool dflt) {
  if (!j.contains(key) || j.at(key).is_null()) return dflt;
  if (!j.at(key).is_boolean()) fail("tokenizer.json: \"", key, "\" is not a boolean");
  return j.at(key).get<bool>();
}

std::string get_str(const json& j, const char* key, const char* where) {
  const json& v = field(j, key, where);
  if (!v.is_string()) fail("tokenizer.json: ", where, ".", key, " is not a string");
  return v.get<std::string>();
}

Normalizer parse_normalizer(const json& n) {
  if (n.is_null()) return Normalizer();
  const std::string type = get_str(n, "type", "normalizer");
  if (type == "NFC") return Normalizer(Normalizer::Kind::kNfc);
  if (type == "Sequence") {
    const json& list = field(n, "normalizers", "normalizer");
    if (!list.is_array()) fail("tokenizer.json: normalizers is not an array");
    if (list.empty()) return Normalizer();
    if (list.size() == 1) return parse_normalizer(list[0]);
  }
  fail("tokenizer.json: unsupported normalizer ", n.dump().substr(0, 200),
       " (supported: none, NFC)");
}

std::string regex_of_split_pattern(const json& p) {
  if (p.contains("Regex") && p.at("Regex").is_string()) return p.at("Regex").get<std::string>();
  if (p.contains("String") && p.at("String").is_string()) {
    std::string out;  // a literal: escape every non-alphanumeric ASCII byte
    for (char c : p.at("String").get<std::string>()) {
      if (static_cast<uint8_t>(c) < 0x80 && !isalnum(static_cast<unsigned char>(c))) out += '\\';
      out += c;
    }
    return out;
  }
  fail("tokenizer.json: Split pattern is neither Regex nor String");
}

// Adds one pre-tokenizer to p; *byte_level is set when it is a ByteLevel step.
void parse_pre_tokenizer(const json& t, bool first, PreTokenizer* p, bool* byte_level) {
  if (t.is_null()) return;
  const std::string type = get_str(t, "type", "pre_tokenizer");
  if (type == "Sequence") {
    const json& list = field(t, "pretokenizers", "pre_tokenizer");
    if (!list.is_array()) fail("tokenizer.json: pretokenizers is not an array");
    for (size_t i = 0; i < list.size(); ++i)
      parse_pre_tokenizer(list[i], first && i == 0, p, byte_level);
  } else if (type == "ByteLevel") {
    *byte_level = true;
    if (get_bool(t, "add_prefix_space", false)) {
      if (!first) fail("tokenizer.json: ByteLevel add_prefix_space after another pre-tokenizer");
      p->set_add_prefix_space(true);
    }
    if (get_bool(t, "use_regex", true)) p->add_regex(kGpt2Pattern);
  } else if (type == "Split") {
    if (get_bool(t, "invert", false)) fail("tokenizer.json: Split with invert=true unsupported");
    const std::string behavior = get_str(t, "behavior", "Split");
    PreTokenizer::Behavior b;
    if (behavior == "Isolated")
      b = PreTokenizer::Behavior::kIsolated;
    else if (behavior == "Removed")
      b = PreTokenizer::Behavior::kRemoved;
    else
      fail("tokenizer.json: Split behavior \"", behavior, "\" unsupported");
    p->add_regex(regex_of_split_pattern(field(t, "pattern", "Split")), b);
  } else if (type == "Digits") {
    p->add_digits(get_bool(t, "individual_digits", false));
  } else {
    fail("tokenizer.json: unsupported pre_tokenizer type \"", type,
         "\" (supported: Sequence, ByteLevel, Split, Digits)");
  }
}

// Reads TemplateProcessing's "single" template into the ids around a sequence.
void parse_post_processor(const json& pp, TokenizerState* s) {
  if (pp.is_null()) return;
  const std::string type = get_str(pp, "type", "post_processor");
  if (type == "ByteLevel") return;  // only moves offsets
  if (type == "Sequence") {
    const json& list = field(pp, "processors", "post_processor");
    if (!list.is_array()) fail("tokenizer.json: processors is not an array");
    for (const json& p : list) parse_post_processor(p, s);
    return;
  }
  if (type != "TemplateProcessing")
    fail("tokenizer.json: unsupported post_processor \"", type,
         "\" (supported: ByteLevel, TemplateProcessing, Sequence)");
  const json& single = field(pp, "single", "TemplateProcessing");
  const json& specials = field(pp, "special_tokens", "TemplateProcessing");
  if (!single.is_array() || !specials.is_object())
    fail("tokenizer.json: malformed TemplateProcessing");
  s->prefix.clear();
  s->suffix.clear();
  bool seen_sequence = false;
  for (const json& item : single) {
    if (item.contains("Sequence")) {
      seen_sequence = true;
      continue;
    }
    const std::string name = get_str(field(item, "SpecialToken", "template"), "id", "SpecialToken");
    if (!specials.contains(name)) fail("tokenizer.json: template token \"", name, "\" undefined");
    const json& ids = field(specials.at(name), "ids", "special_tokens");
    if (!ids.is_array()) fail("tokenizer.json: special_tokens ids is not an array");
    for (const json& id : ids) {
      const int32_t v = checked_id(id, "template");
      // encode() emits these ids as they are: one past the vocabulary would index past the
      // embedding table.
      if (static_cast<size_t>(v) >= s->pieces.size())
        fail("tokenizer.json: template token \"", name, "\" id ", v, " is outside the ",
             s->pieces.size(), "-token vocabulary");
      (seen_sequence ? s->suffix : s->prefix).push_back(v);
    }
  }
}

void read_vocab(const json& model, std::vector<std::string>* pieces) {
  const json& vocab = field(model, "vocab", "model");
  if (!vocab.is_object()) fail("tokenizer.json: model.vocab is not an object");
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const int32_t id = checked_id(it.value(), "vocab");
    if (static_cast<size_t>(id) >= pieces->size()) pieces->resize(id + 1);
    (*pieces)[id] = it.key();
  }
}

std::vector<std::pair<std::string, std::string>> read_merges(const json& model) {
  if (!model.contains("merges")) fail("tokenizer.json: BPE model has no \"merges\"");
  const json& merges = model.at("merges");
  if (!merges.is_array()) fail("tokenizer.json: model.merges is not an array");
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (const json& m : merges) {
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) fail("tokenizer.json: merge \"", s, "\" has no space");
      out.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      fail("tokenizer.json: malformed merge ", m.dump().substr(0, 100));
    }
  }
  return out;
}

std::vector<AddedToken> read_added_tokens(const json& j) {
  std::vector<AddedToken> out;
  if (!j.contains("added_tokens") || j.at("added_tokens").is_null()) return out;
  const json& list = j.at("added_tokens");
  if (!list.is_array()) fail("tokenizer.json: added_tokens is not an array");
  for (const json& t : list) {
    AddedToken a;
    a.id = checked_id(field(t, "id", "added token"), "added token");
    a.content = get_str(t, "content", "added token");
    a.special = get_bool(t, "special", false);
    a.single_word = get_bool(t, "single_word", false);
    a.lstrip = get_bool(t, "lstrip", false);
    a.rstrip = get_bool(t, "rstrip", false);
    a.normalized = get_bool(t, "normalized", !a.special);
    out.push_back(std::move(a));
  }
  return out;
}

void build_byte_level_bpe(const json& model, TokenizerState* s) {
  const auto& alphabet = byte_level_alphabet();
  StringIdMap vocab;
  vocab.reserve(s->pieces.size());
  std::string bytes;
  for (size_t id = 0; id < s->pieces.size(); ++id) {
    if (s->pieces[id].empty()) continue;
    if (!alphabet.unspell(s->pieces[id], &bytes)) bytes = s->pieces[id];
    vocab.try_emplace(bytes, static_cast<int32_t>(id));
  }
  auto merges = read_merges(model);
  for (auto& [a, b] : merges) {
    if (!alphabet.unspell(a, &bytes)) fail("tokenizer.json: merge part \"", a, "\" not byte-level");
    a = bytes;
    if (!alphabet.unspell(b, &bytes)) fail("tokenizer.json: merge part \"", b, "\" not byte-level");
    b = bytes;
  }
  int32_t unk = -1;
  if (model.contains("unk_token") && model.at("unk_token").is_string()) {
    auto it = vocab.find(model.at("unk_token").get<std::string>());
    if (it != vocab.end()) unk = it->second;
  }
  s->bpe.init(std::move(vocab), merges, BpeModel::Symbols::kBytes,
              get_bool(model, "byte_fallback", false), unk,
              get_bool(model, "ignore_merges", false));
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::from_hf_json(std::string_view tokenizer_json,
                                                   std::string_view tokenizer_config_json,
                                                   std::string_view chat_template_jinja) {
  json j;
  try {
    j = json::parse(tokenizer_json);
  } catch (const json::exception& e) {
    fail("tokenizer.json is not valid JSON: ", e.what());
  }
  try {
    auto s = std::make_unique<TokenizerState>();
    const json& model = field(j, "model", "tokenizer.json");
    const std::string type = model.contains("type") ? get_str(model, "type", "model") : "BPE";
    if (type != "BPE") fail("tokenizer.json: unsupported model type \"", type, "\" (only BPE)");
    read_vocab(model, &s->pieces);
    std::vector<AddedToken> added = read_added_tokens(j);
    for (const AddedToken& a : added) {
      if (static_cast<size_t>(a.id) >= s->pieces.size()) s->pieces.resize(a.id + 1);
      s->pieces[a.id] = a.content;
    }
    s->normalizer = parse_normalizer(j.value("normalizer", json()));
    bool byte_level = false;
    parse_pre_tokenizer(j.value("pre_tokenizer", json()), true, &s->pre, &byte_level);
    const json decoder = j.value("decoder", json());
    if (decoder.is_null() || !decoder.is_object() || decoder.value("type", "") != "ByteLevel")
      fail("tokenizer.json: unsupported decoder ", decoder.dump().substr(0, 200),
           " (only byte-level BPE tokenizer.json files are supported)");
    if (!byte_level) fail("tokenizer.json: BPE without a ByteLevel pre-tokenizer is unsupported");
    build_byte_level_bpe(model, s.get());
    parse_post_processor(j.value("post_processor", json()), s.get());
    finish_added_and_bytes(s.get(), added, /*byte_level=*/true);
    apply_tokenizer_config(s.get(), tokenizer_config_json);  // also finalizes s
    if (!chat_template_jinja.empty()) s->chat_template = std::string(chat_template_jinja);
    return std::make_unique<Tokenizer>(std::move(s));
  } catch (const json::exception& e) {
    fail("tokenizer.json: unexpected structure: ", e.what());
  }
}

std::unique_ptr<Tokenizer> Tokenizer::from_hf_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  auto read = [](const fs::path& p, bool required) -> std::string {
    std::ifstream in(p, std::ios::binary);
    if (!in) {
      if (required) fail("cannot open ", p.string());
      return {};
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  };
  const fs::path d(dir);
  return from_hf_json(read(d / "tokenizer.json", true), read(d / "tokenizer_config.json", false),
                      read(d / "chat_template.jinja", false));
}

}  // namespace jinx
