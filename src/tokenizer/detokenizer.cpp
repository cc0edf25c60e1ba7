// IncrementalDetokenizer and StopStringMatcher: the streaming side of decoding.
#include <algorithm>

#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace jinx {

IncrementalDetokenizer::IncrementalDetokenizer(const Tokenizer& tok, bool skip_special)
    : tok_(tok), skip_special_(skip_special) {}

std::string IncrementalDetokenizer::push(int32_t id) {
  if (id < 0 || id >= tok_.vocab_size()) return {};
  if (skip_special_ && tok_.is_special(id)) return {};
  const int b = tok_.fallback_byte(id);
  if (b >= 0) {  // a byte run is converted as a whole once it ends
    run_.push_back(static_cast<char>(b));
    return {};
  }
  std::string bytes;
  if (!run_.empty()) append_byte_run(&run_, &bytes);
  bytes += tok_.token_bytes(id, skip_special_);
  if (at_start_ && !bytes.empty()) {  // the decoder strips one space, once
    if (tok_.strips_leading_space() && bytes.front() == ' ') bytes.erase(0, 1);
    at_start_ = false;
  }
  pending_ += bytes;
  const size_t n = utf8::stable_prefix_len(pending_);
  std::string out = utf8::to_valid_lossy(std::string_view(pending_).substr(0, n));
  pending_.erase(0, n);
  return out;
}

std::string IncrementalDetokenizer::flush() {
  std::string bytes;
  if (!run_.empty()) append_byte_run(&run_, &bytes);
  if (at_start_ && !bytes.empty()) {  // the decoder strips one space, once
    if (tok_.strips_leading_space() && bytes.front() == ' ') bytes.erase(0, 1);
    at_start_ = false;
  }
  pending_ += bytes;
  std::string out = utf8::to_valid_lossy(pending_);
  pending_.clear();
  return out;
}

StopStringMatcher::StopStringMatcher(std::vector<std::string> stops, bool include_stop)
    : stops_(std::move(stops)), include_stop_(include_stop) {
  stops_.erase(
      std::remove_if(stops_.begin(), stops_.end(), [](const std::string& s) { return s.empty(); }),
      stops_.end());
}

StopStringMatcher::Out StopStringMatcher::push(std::string_view delta) {
  if (stopped_) return {"", true};
  if (!active_ && held_.empty()) return {std::string(delta), false};
  held_.append(delta);
  // The earliest complete stop string ends generation; text before it is released.
  size_t first = std::string::npos, first_len = 0;
  for (const auto& s : stops_) {
    const size_t at = held_.find(s);
    if (at < first || (at == first && at != std::string::npos && s.size() < first_len)) {
      first = at;
      first_len = s.size();
    }
  }
  if (first != std::string::npos) {
    stopped_ = true;
    Out out{held_.substr(0, include_stop_ ? first + first_len : first), true};
    held_.clear();
    return out;
  }
  // Hold back the longest suffix of held_ that is a proper prefix of some stop string.
  size_t keep = 0;
  for (const auto& s : stops_) {
    const size_t max_len = std::min(s.size() - 1, held_.size());
    for (size_t len = max_len; len > keep; --len) {
      if (held_.compare(held_.size() - len, len, s, 0, len) == 0) {
        keep = len;
        break;
      }
    }
  }
  // Never release half of a UTF-8 character.
  size_t cut = held_.size() - keep;
  while (cut > 0 && cut < held_.size() && (static_cast<uint8_t>(held_[cut]) & 0xC0) == 0x80) --cut;
  Out out{held_.substr(0, cut), false};
  held_.erase(0, cut);
  return out;
}

std::string StopStringMatcher::flush() {
  if (stopped_) return {};
  std::string out = std::move(held_);
  held_.clear();
  return out;
}

}  // namespace jinx
