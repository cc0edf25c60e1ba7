// Reasoning output (vLLM's --reasoning-parser, llama.cpp's reasoning_content): a thinking
// model writes `<think> ... </think>` before its answer; the chat API returns the thoughts as
// message.reasoning_content (streamed as delta.reasoning_content) and the rest as content,
// which is also what tool calls are parsed from.
//
// Modes:
//   kQwen3       thoughts only when the output starts with <think> (Qwen3: the template opens no
//                block; with enable_thinking=false the model writes none)
//   kDeepSeekR1  the output starts inside the block (DeepSeek-R1's template opens it): every
//                thing before </think> is thought, a leading <think> is dropped
// Whitespace: newlines after <think> and after </think>, and whitespace before </think>, are
// dropped (they are the template's layout, not text). Output that ends inside the block is all
// thought. Streaming and whole-text splitting give the same strings.
#pragma once

#include <string>
#include <string_view>

namespace jinx::server {

enum class ReasoningMode { kNone, kQwen3, kDeepSeekR1 };

// "none" / "qwen3" / "deepseek_r1" (throws jinx::Error for other names).
ReasoningMode parse_reasoning_mode(std::string_view name);
// --reasoning-parser auto: kQwen3 when the chat template writes a </think> block, else kNone.
ReasoningMode detect_reasoning_mode(std::string_view chat_template);

struct ReasoningDelta {
  std::string reasoning, content;
};

class ReasoningSplitter {
 public:
  explicit ReasoningSplitter(ReasoningMode mode);
  // New output text -> what can be said of it now (a possible tag or trailing whitespace is
  // held until the next push or finish()).
  ReasoningDelta push(std::string_view text);
  ReasoningDelta finish();
  bool in_reasoning() const { return state_ == State::kReasoning; }

 private:
  enum class State { kStart, kReasoning, kContent };
  void run(ReasoningDelta* d, bool final);

  State state_;
  bool deepseek_ = false;       // no opening tag needed: the output starts inside the block
  std::string buf_;             // text not yet emitted
  bool skip_newlines_ = false;  // at the start of the thoughts or of the content
};

}  // namespace jinx::server
