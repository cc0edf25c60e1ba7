#include "tokenizer/tokenizer.h"

#include <algorithm>

#include "core/check.h"
#include "tokenizer/tokenizer_state.h"
#include "tokenizer/utf8.h"

namespace jinx {

void TokenizerState::finish() {
  const size_t n = pieces.size();
  JINX_CHECK(bytes.size() == n && special.size() == n, "tokenizer tables disagree in size");
  piece_to_id.clear();
  piece_to_id.reserve(n);
  for (size_t i = 0; i < n; ++i) piece_to_id.try_emplace(pieces[i], static_cast<int32_t>(i));
  static const char* const kEnders[] = {"<|im_end|>", "<|eot_id|>",    "<|end_of_text|>",
                                        "<|eom_id|>", "<end_of_turn>", "<|endoftext|>",
                                        "</s>",       "<|end|>",       "<eos>"};
  eos_ids.clear();
  if (eos >= 0) eos_ids.push_back(eos);
  for (const char* e : kEnders) {
    auto it = piece_to_id.find(std::string_view(e));
    if (it == piece_to_id.end() || !special[it->second]) continue;
    if (std::find(eos_ids.begin(), eos_ids.end(), it->second) == eos_ids.end())
      eos_ids.push_back(it->second);
  }
  harmony_stops();
}

void TokenizerState::harmony_stops() {
  auto id_of = [&](std::string_view piece) {
    auto it = piece_to_id.find(piece);
    return it == piece_to_id.end() || !special[it->second] ? -1 : it->second;
  };
  const int32_t ret = id_of("<|return|>"), call = id_of("<|call|>"), end = id_of("<|end|>");
  if (ret < 0 || call < 0) return;
  eos_ids.erase(std::remove(eos_ids.begin(), eos_ids.end(), end), eos_ids.end());
  for (int32_t id : {ret, call})
    if (std::find(eos_ids.begin(), eos_ids.end(), id) == eos_ids.end()) eos_ids.push_back(id);
}

Tokenizer::Tokenizer(std::unique_ptr<TokenizerState> state) : s_(std::move(state)) {
  JINX_CHECK(s_ != nullptr, "null tokenizer state");
}
Tokenizer::~Tokenizer() = default;

void Tokenizer::encode_segment(std::string_view text, std::vector<int32_t>* out) const {
  std::string norm_storage, prefix_storage;
  const std::string_view norm = s_->normalizer.apply(text, &norm_storage);
  std::vector<TextSegment> segs;
  if (s_->added_normalized.empty())
    segs.push_back({norm, -1});
  else
    s_->added_normalized.split(norm, false, &segs);
  std::vector<std::string_view> words;
  for (const TextSegment& seg : segs) {
    if (seg.token_id >= 0) {
      out->push_back(seg.token_id);
      continue;
    }
    s_->pre.split(seg.text, &prefix_storage, &words);
    for (std::string_view w : words) s_->bpe.encode_word(w, out);
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  std::string valid;
  if (!utf8::is_valid(text)) {
    valid = utf8::to_valid_lossy(text);
    text = valid;
  }
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special) ids.insert(ids.end(), s_->prefix.begin(), s_->prefix.end());
  std::vector<TextSegment> segs;
  s_->added_raw.split(text, !parse_special, &segs);
  bool first = true;
  for (const TextSegment& seg : segs) {
    if (seg.token_id >= 0) {
      ids.push_back(seg.token_id);
    } else if (s_->model == TokenizerState::Model::kSpm) {
      s_->spm.encode(seg.text, &ids, first);
    } else {
      encode_segment(seg.text, &ids);
    }
    first = false;
  }
  if (add_special) ids.insert(ids.end(), s_->suffix.begin(), s_->suffix.end());
  return ids;
}

std::string Tokenizer::token_bytes(int32_t id, bool skip_special) const {
  if (id < 0 || id >= vocab_size()) return {};
  if (skip_special && s_->special[id]) return {};
  return s_->bytes[id];
}

int Tokenizer::fallback_byte(int32_t id) const {
  if (s_->byte_value.empty() || id < 0 || id >= vocab_size()) return -1;
  return s_->byte_value[id];
}

void append_byte_run(std::string* run, std::string* out) {
  // transformers' ByteFallback decoder: a run of <0xXX> tokens that is not valid UTF-8
  // becomes one U+FFFD per byte.
  if (utf8::is_valid(*run)) {
    *out += *run;
  } else {
    for (size_t i = 0; i < run->size(); ++i) *out += utf8::kReplacementUtf8;
  }
  run->clear();
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes, run;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) continue;
    if (skip_special && s_->special[id]) continue;
    const int b = fallback_byte(id);
    if (b >= 0) {
      run.push_back(static_cast<char>(b));
      continue;
    }
    if (!run.empty()) append_byte_run(&run, &bytes);
    bytes += s_->bytes[id];
  }
  if (!run.empty()) append_byte_run(&run, &bytes);
  if (s_->strip_leading_space && !bytes.empty() && bytes.front() == ' ') bytes.erase(0, 1);
  return utf8::to_valid_lossy(bytes);
}

std::string Tokenizer::token_piece(int32_t id) const {
  if (id < 0 || id >= vocab_size()) return {};
  return s_->pieces[id];
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(s_->pieces.size());
}

std::optional<int32_t> Tokenizer::token_id(std::string_view piece) const {
  auto it = s_->piece_to_id.find(piece);
  if (it == s_->piece_to_id.end()) return std::nullopt;
  return it->second;
}

int32_t Tokenizer::bos_id() const {
  return s_->bos;
}
int32_t Tokenizer::eos_id() const {
  return s_->eos;
}
std::vector<int32_t> Tokenizer::eos_ids() const {
  return s_->eos_ids;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && s_->special[id];
}

const std::string& Tokenizer::chat_template() const {
  return s_->chat_template;
}
std::string Tokenizer::bos_token() const {
  return token_piece(s_->bos);
}
std::string Tokenizer::eos_token() const {
  return token_piece(s_->eos);
}
bool Tokenizer::add_bos() const {
  return s_->bos >= 0 &&
         std::find(s_->prefix.begin(), s_->prefix.end(), s_->bos) != s_->prefix.end();
}
bool Tokenizer::strips_leading_space() const {
  return s_->strip_leading_space;
}

}  // namespace jinx
