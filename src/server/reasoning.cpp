#include "server/reasoning.h"

#include "core/check.h"

namespace jinx::server {

namespace {

constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";

bool is_space(char c) { return c == ' ' || c == '\n' || c == '\r' || c == '\t'; }

// Length of the longest suffix of s that is a proper prefix of tag.
size_t partial_tag(std::string_view s, std::string_view tag) {
  for (size_t n = std::min(s.size(), tag.size() - 1); n > 0; --n)
    if (s.substr(s.size() - n) == tag.substr(0, n)) return n;
  return 0;
}

}  // namespace

ReasoningMode parse_reasoning_mode(std::string_view name) {
  if (name == "none" || name.empty()) return ReasoningMode::kNone;
  if (name == "qwen3") return ReasoningMode::kQwen3;
  if (name == "deepseek_r1") return ReasoningMode::kDeepSeekR1;
  fail("unknown reasoning parser '", name, "' (none, auto, qwen3 or deepseek_r1)");
}

ReasoningMode detect_reasoning_mode(std::string_view chat_template) {
  return chat_template.find(kClose) != std::string_view::npos ? ReasoningMode::kQwen3
                                                              : ReasoningMode::kNone;
}

// DeepSeek-R1 starts inside the block but may still write the opening tag itself: both
// modes start by looking for it.
ReasoningSplitter::ReasoningSplitter(ReasoningMode mode)
    : state_(mode == ReasoningMode::kNone ? State::kContent : State::kStart),
      deepseek_(mode == ReasoningMode::kDeepSeekR1) {}

ReasoningDelta ReasoningSplitter::push(std::string_view text) {
  buf_.append(text);
  ReasoningDelta d;
  run(&d, false);
  return d;
}

ReasoningDelta ReasoningSplitter::finish() {
  ReasoningDelta d;
  run(&d, true);
  return d;
}

void ReasoningSplitter::run(ReasoningDelta* d, bool final) {
  for (;;) {
    if (skip_newlines_) {
      size_t i = 0;
      while (i < buf_.size() && (buf_[i] == '\n' || buf_[i] == '\r')) ++i;
      buf_.erase(0, i);
      if (buf_.empty()) return;
      skip_newlines_ = false;
    }
    switch (state_) {
      case State::kStart: {  // does the output open a block?
        size_t i = 0;
        while (i < buf_.size() && is_space(buf_[i])) ++i;
        const std::string_view rest = std::string_view(buf_).substr(i);
        if (rest.substr(0, kOpen.size()) == kOpen) {
          buf_.erase(0, i + kOpen.size());
          state_ = State::kReasoning;
          skip_newlines_ = true;
          continue;
        }
        if (!final && kOpen.substr(0, rest.size()) == rest) return;  // maybe the tag
        state_ = deepseek_ ? State::kReasoning : State::kContent;
        skip_newlines_ = deepseek_;
        continue;
      }
      case State::kReasoning: {
        const size_t end = buf_.find(kClose);
        if (end != std::string::npos) {
          size_t keep = end;
          while (keep > 0 && is_space(buf_[keep - 1])) --keep;
          d->reasoning.append(buf_, 0, keep);
          buf_.erase(0, end + kClose.size());
          state_ = State::kContent;
          skip_newlines_ = true;
          continue;
        }
        // Hold a possible start of the tag and trailing whitespace (dropped if the tag comes).
        size_t keep = buf_.size() - (final ? 0 : partial_tag(buf_, kClose));
        while (keep > 0 && is_space(buf_[keep - 1])) --keep;
        d->reasoning.append(buf_, 0, keep);
        if (final) {
          buf_.clear();  // ended inside the block: all thought
        } else {
          buf_.erase(0, keep);
        }
        return;
      }
      case State::kContent:
        d->content.append(buf_);
        buf_.clear();
        return;
    }
  }
}

}  // namespace jinx::server
