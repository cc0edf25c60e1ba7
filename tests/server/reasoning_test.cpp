// The <think> splitter of chat output: the whole text and every way of streaming it in pieces
// give the same thoughts and content.
#include "server/reasoning.h"

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include "core/check.h"
#include "server/tool_calls.h"

namespace jinx::server {
namespace {

ReasoningDelta whole(ReasoningMode mode, const std::string& text) {
  ReasoningSplitter s(mode);
  ReasoningDelta a = s.push(text), b = s.finish();
  return {a.reasoning + b.reasoning, a.content + b.content};
}

// Pieces of random sizes (1..8 bytes), so tags and whitespace are cut everywhere.
ReasoningDelta streamed(ReasoningMode mode, const std::string& text, uint32_t seed) {
  std::mt19937 rng(seed);
  ReasoningSplitter s(mode);
  ReasoningDelta out;
  for (size_t i = 0; i < text.size();) {
    const size_t n = std::min(text.size() - i, static_cast<size_t>(1 + rng() % 8));
    ReasoningDelta d = s.push(text.substr(i, n));
    out.reasoning += d.reasoning;
    out.content += d.content;
    i += n;
  }
  ReasoningDelta d = s.finish();
  return {out.reasoning + d.reasoning, out.content + d.content};
}

struct Case {
  ReasoningMode mode;
  std::string text, reasoning, content;
};

TEST(Reasoning, SplitsWholeAndStreamedAlike) {
  using M = ReasoningMode;
  const Case cases[] = {
      {M::kQwen3, "<think>\nLet me see.\n2+2=4.\n</think>\n\nIt is 4.", "Let me see.\n2+2=4.", "It is 4."},
      {M::kQwen3, "<think>\n\n</think>\n\nHello!", "", "Hello!"},  // enable_thinking=false
      {M::kQwen3, "Hello, no thoughts.", "", "Hello, no thoughts."},
      {M::kQwen3, "  <think>a</think>b", "a", "b"},
      {M::kQwen3, "<thin", "", "<thin"},                             // not the tag after all
      {M::kQwen3, "<think>cut off mid-thought  ", "cut off mid-thought", ""},
      {M::kQwen3, "<think>x</thinking></think>y", "x</thinking>", "y"},
      {M::kQwen3, "<think>a</think>b</think>c", "a", "b</think>c"},
      {M::kQwen3, "", "", ""},
      {M::kDeepSeekR1, "Hmm, 3 apples.\n</think>\n\n3", "Hmm, 3 apples.", "3"},
      {M::kDeepSeekR1, "<think>\nHmm.</think>ok", "Hmm.", "ok"},
      {M::kDeepSeekR1, "still thinking", "still thinking", ""},
      {M::kNone, "<think>a</think>b", "", "<think>a</think>b"},
      // gpt-oss (harmony), the message forms of OpenAI's harmony format guide.
      {M::kHarmony,
       "<|channel|>analysis<|message|>User asks 2+2. Simple.<|end|><|start|>assistant"
       "<|channel|>final<|message|>2 + 2 = 4.<|return|>",
       "User asks 2+2. Simple.", "2 + 2 = 4."},
      {M::kHarmony,  // stopped at <|return|> without its text
       "<|channel|>analysis<|message|>t<|end|><|start|>assistant<|channel|>final<|message|>ok",
       "t", "ok"},
      {M::kHarmony,
       "<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant<|channel|>"
       "commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\":\"Tokyo\"}"
       "<|call|>",
       "Need the weather.",
       "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\":\"Tokyo\"}}\n"
       "</tool_call>"},
      {M::kHarmony,  // the recipient in the role part of the header
       " to=functions.lookup<|channel|>commentary json<|message|>{\"q\": 1} <|call|>", "",
       "<tool_call>\n{\"name\": \"lookup\", \"arguments\": {\"q\": 1}}\n</tool_call>"},
      {M::kHarmony,  // a preamble to the user on the commentary channel is content
       "<|channel|>commentary<|message|>Checking. <|end|><|start|>assistant<|channel|>final"
       "<|message|>Done: a <b> | c.<|return|>",
       "", "Checking. Done: a <b> | c."},
      {M::kHarmony, "<|channel|>analysis<|message|>cut off <|e", "cut off <|e", ""},
      {M::kHarmony, "<|channel|>fin", "", ""},
      {M::kHarmony, "Plain text, no markers.", "", "Plain text, no markers."},
      {M::kHarmony, "", "", ""},
  };
  for (const Case& c : cases) {
    const ReasoningDelta w = whole(c.mode, c.text);
    EXPECT_EQ(w.reasoning, c.reasoning) << c.text;
    EXPECT_EQ(w.content, c.content) << c.text;
    for (uint32_t seed = 0; seed < 20; ++seed) {
      const ReasoningDelta s = streamed(c.mode, c.text, seed);
      EXPECT_EQ(s.reasoning, c.reasoning) << c.text << " seed " << seed;
      EXPECT_EQ(s.content, c.content) << c.text << " seed " << seed;
    }
  }
}

TEST(Reasoning, ThoughtsStreamBeforeTheBlockEnds) {
  ReasoningSplitter s(ReasoningMode::kQwen3);
  EXPECT_EQ(s.push("<think>\nStep one. ").reasoning, "Step one.");
  EXPECT_TRUE(s.in_reasoning());
  EXPECT_EQ(s.push("Step two.</th").reasoning, " Step two.");
  const ReasoningDelta d = s.push("ink>\n\nAnswer");
  EXPECT_EQ(d.reasoning, "");
  EXPECT_EQ(d.content, "Answer");
}

// A gpt-oss call reaches the tool-call parser as a Hermes block, which gives OpenAI's call.
TEST(Reasoning, HarmonyCallsParseAsToolCalls) {
  const ReasoningDelta d = whole(ReasoningMode::kHarmony,
                                 "<|channel|>commentary to=functions.get_weather <|constrain|>json"
                                 "<|message|>{\"city\": \"Oslo\", \"days\": [1, 2]}<|call|>");
  const ParsedOutput p = parse_tool_calls(d.content, ToolFormat::kHermes);
  ASSERT_EQ(p.calls.size(), 1u);
  EXPECT_EQ(p.calls[0].name, "get_weather");
  EXPECT_EQ(nlohmann::json::parse(p.calls[0].arguments),
            nlohmann::json::parse(R"({"city": "Oslo", "days": [1, 2]})"));
  EXPECT_EQ(p.content, "");
  EXPECT_EQ(parse_reasoning_mode("gpt_oss"), ReasoningMode::kHarmony);
  EXPECT_EQ(parse_reasoning_mode("openai_gptoss"), ReasoningMode::kHarmony);
}

// Where structured output starts under each parser (structured/deferred_constraint.h).
TEST(Reasoning, EndMarkersAndClosedPrompts) {
  EXPECT_EQ(reasoning_end_marker(ReasoningMode::kQwen3), "</think>");
  EXPECT_EQ(reasoning_end_marker(ReasoningMode::kDeepSeekR1), "</think>");
  EXPECT_EQ(reasoning_end_marker(ReasoningMode::kHarmony), "<|channel|>final<|message|>");
  EXPECT_EQ(reasoning_end_marker(ReasoningMode::kNone), std::nullopt);
  // Qwen3's template with enable_thinking=false ends the prompt with an empty block.
  EXPECT_TRUE(prompt_closes_reasoning("<|im_start|>assistant\n<think>\n\n</think>\n\n",
                                      ReasoningMode::kQwen3));
  EXPECT_FALSE(prompt_closes_reasoning("<|im_start|>assistant\n", ReasoningMode::kQwen3));
  EXPECT_FALSE(prompt_closes_reasoning("<|im_start|>assistant\n<think>\n",
                                       ReasoningMode::kDeepSeekR1));
  EXPECT_FALSE(prompt_closes_reasoning("</think>", ReasoningMode::kHarmony));
}

TEST(Reasoning, ModesByNameAndTemplate) {
  EXPECT_EQ(parse_reasoning_mode("qwen3"), ReasoningMode::kQwen3);
  EXPECT_EQ(parse_reasoning_mode("deepseek_r1"), ReasoningMode::kDeepSeekR1);
  EXPECT_EQ(parse_reasoning_mode("none"), ReasoningMode::kNone);
  EXPECT_THROW(parse_reasoning_mode("o1"), Error);
  EXPECT_EQ(detect_reasoning_mode("{{ '<think>\\n\\n</think>\\n\\n' }}"), ReasoningMode::kQwen3);
  EXPECT_EQ(detect_reasoning_mode("<|im_start|>assistant"), ReasoningMode::kNone);
  // gpt-oss's template (tests/fixtures/templates/gpt_oss.jinja): harmony, calls as Hermes.
  std::ifstream in(std::string(JINX_FIXTURES) + "/templates/gpt_oss.jinja");
  const std::string gpt_oss((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(gpt_oss.empty());
  EXPECT_EQ(detect_reasoning_mode(gpt_oss), ReasoningMode::kHarmony);
  EXPECT_EQ(detect_tool_format(gpt_oss), ToolFormat::kHermes);
  EXPECT_TRUE(template_supports_tools(gpt_oss));
}

}  // namespace
}  // namespace jinx::server
