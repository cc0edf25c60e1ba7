#include "server/reasoning.h"

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace jinx::server {

namespace {

constexpr std::string_view kOpen = "<think>";
constexpr std::string_view kClose = "</think>";
// Harmony's markers (special tokens of o200k_harmony).
constexpr std::string_view kChannel = "<|channel|>";
constexpr std::string_view kMessage = "<|message|>";
constexpr std::string_view kEnds[] = {"<|end|>", "<|call|>", "<|return|>", "<|start|>"};

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
  if (name == "gpt_oss" || name == "openai_gptoss") return ReasoningMode::kHarmony;
  fail("unknown reasoning parser '", name, "' (none, auto, qwen3, deepseek_r1 or gpt_oss)");
}

ReasoningMode detect_reasoning_mode(std::string_view chat_template) {
  if (chat_template.find(kChannel) != std::string_view::npos) return ReasoningMode::kHarmony;
  return chat_template.find(kClose) != std::string_view::npos ? ReasoningMode::kQwen3
                                                              : ReasoningMode::kNone;
}

std::optional<std::string> reasoning_end_marker(ReasoningMode mode) {
  switch (mode) {
    case ReasoningMode::kQwen3:
    case ReasoningMode::kDeepSeekR1:
      return std::string(kClose);
    case ReasoningMode::kHarmony:
      return std::string(kChannel) + "final" + std::string(kMessage);
    case ReasoningMode::kNone:
      break;
  }
  return std::nullopt;
}

bool prompt_closes_reasoning(std::string_view prompt, ReasoningMode mode) {
  if (mode != ReasoningMode::kQwen3 && mode != ReasoningMode::kDeepSeekR1) return false;
  while (!prompt.empty() && is_space(prompt.back())) prompt.remove_suffix(1);
  return prompt.ends_with(kClose);
}

// DeepSeek-R1 starts inside the block but may still write the opening tag itself: both
// modes start by looking for it.
ReasoningSplitter::ReasoningSplitter(ReasoningMode mode)
    : state_(mode == ReasoningMode::kNone      ? State::kContent
             : mode == ReasoningMode::kHarmony ? State::kHeader
                                               : State::kStart),
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

// One harmony message at a time: its header up to <|message|> decides where the body goes.
void ReasoningSplitter::run_harmony(ReasoningDelta* d, bool final) {
  for (;;) {
    if (state_ == State::kHeader) {
      const size_t at = buf_.find(kMessage);
      if (at == std::string::npos) {
        if (final) {
          // A header without a body says nothing; text that never was a header (the model
          // wrote no harmony markers at all) is the reply.
          if (buf_.find("<|") == std::string::npos) d->content.append(buf_);
          buf_.clear();
        }
        return;
      }
      const std::string_view header = std::string_view(buf_).substr(0, at);
      std::string_view channel;
      if (const size_t c = header.find(kChannel); c != std::string_view::npos) {
        channel = header.substr(c + kChannel.size());
        channel = channel.substr(0, std::min(channel.find_first_of(" <"), channel.size()));
      }
      // The recipient may come before the channel (in the role part) or after it.
      std::string_view recipient;
      if (const size_t t = header.find(" to="); t != std::string_view::npos) {
        recipient = header.substr(t + 4);
        recipient = recipient.substr(0, std::min(recipient.find_first_of(" <"), recipient.size()));
      }
      call_name_.clear();
      call_args_.clear();
      if (recipient.substr(0, 10) == "functions.") {
        kind_ = Kind::kCall;
        call_name_ = std::string(recipient.substr(10));
      } else {
        kind_ = channel == "analysis" ? Kind::kThought : Kind::kContent;
      }
      buf_.erase(0, at + kMessage.size());
      state_ = State::kBody;
      continue;
    }
    // The body, up to the first end marker.
    size_t end = std::string::npos, marker = 0;
    for (std::string_view e : kEnds)
      if (const size_t at = buf_.find(e); at < end) {
        end = at;
        marker = e.size();
      }
    size_t take = end;
    if (end == std::string::npos) {
      size_t hold = 0;
      if (!final)
        for (std::string_view e : kEnds) hold = std::max(hold, partial_tag(buf_, e));
      take = buf_.size() - hold;
    }
    const std::string_view part = std::string_view(buf_).substr(0, take);
    if (kind_ == Kind::kThought) {
      d->reasoning.append(part);
    } else if (kind_ == Kind::kContent) {
      d->content.append(part);
    } else {
      call_args_.append(part);
    }
    const bool closed = end != std::string::npos;
    if (kind_ == Kind::kCall && (closed || final)) {
      std::string args = call_args_;
      while (!args.empty() && is_space(args.back())) args.pop_back();
      d->content += "<tool_call>\n{\"name\": " + nlohmann::json(call_name_).dump() +
                    ", \"arguments\": " + (args.empty() ? std::string("{}") : args) +
                    "}\n</tool_call>";
      kind_ = Kind::kContent;
    }
    if (!closed) {
      buf_.erase(0, take);
      return;
    }
    // <|start|> opens the next message: keep it for its header (it holds the role).
    const bool start = std::string_view(buf_).substr(end, kEnds[3].size()) == kEnds[3];
    buf_.erase(0, start ? end : end + marker);
    state_ = State::kHeader;
  }
}

void ReasoningSplitter::run(ReasoningDelta* d, bool final) {
  if (state_ == State::kHeader || state_ == State::kBody) return run_harmony(d, final);
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
      case State::kHeader:
      case State::kBody:
        return run_harmony(d, final);
    }
  }
}

}  // namespace jinx::server
