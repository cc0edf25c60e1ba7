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
//   kHarmony     gpt-oss's harmony format (vLLM's openai_gptoss): the output is a run of
//                messages, each `[<|start|>assistant]<|channel|>C[ to=R][<|constrain|>T]
//                <|message|>BODY` ended by <|end|>, <|call|> or <|return|> (or the output's end).
//                Channel analysis is thought; final, and commentary without a recipient, are
//                content; a commentary message to=functions.NAME is a tool call, handed on in
//                the content as Hermes' <tool_call>\n{"name": NAME, "arguments": BODY}\n
//                </tool_call> block for the tool-call parser. The markers are special tokens:
//                the server decodes such requests with skip_special_tokens off.
// Whitespace: newlines after <think> and after </think>, and whitespace before </think>, are
// dropped (they are the template's layout, not text). Output that ends inside the block is all
// thought. Streaming and whole-text splitting give the same strings.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace jinx::server {

enum class ReasoningMode { kNone, kQwen3, kDeepSeekR1, kHarmony };

// "none" / "qwen3" / "deepseek_r1" / "gpt_oss" (also vLLM's "openai_gptoss"); throws
// jinx::Error for other names.
ReasoningMode parse_reasoning_mode(std::string_view name);
// --reasoning-parser auto: kHarmony when the chat template writes <|channel|>, kQwen3 when it
// writes a </think> block, else kNone.
ReasoningMode detect_reasoning_mode(std::string_view chat_template);

// The text that ends the thoughts in the output: "</think>" (qwen3, deepseek_r1), or harmony's
// "<|channel|>final<|message|>" (the answer's header); nullopt for kNone.
std::optional<std::string> reasoning_end_marker(ReasoningMode mode);
// The rendered prompt already closed the thoughts: it ends (but for whitespace) with "</think>"
// (Qwen3's template with enable_thinking=false writes an empty block). Never for harmony.
bool prompt_closes_reasoning(std::string_view prompt, ReasoningMode mode);

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
  enum class State { kStart, kReasoning, kContent, kHeader, kBody };
  void run(ReasoningDelta* d, bool final);
  void run_harmony(ReasoningDelta* d, bool final);

  State state_;
  bool deepseek_ = false;       // no opening tag needed: the output starts inside the block
  std::string buf_;             // text not yet emitted
  bool skip_newlines_ = false;  // at the start of the thoughts or of the content
  // Harmony: the current message's kind, and a tool call's name and arguments so far.
  enum class Kind { kThought, kContent, kCall };
  Kind kind_ = Kind::kContent;
  std::string call_name_, call_args_;
};

}  // namespace jinx::server
