// Building OpenAI response bodies and stream chunks from what the engine reported.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/llm.h"
#include "server/openai_request.h"
#include "server/tool_calls.h"

namespace jinx::server {

// One choice of a response as it accumulates (prompt index * n + sample index).
struct ChoiceState {
  int index = 0;
  int prompt = 0;  // which prompt of the plan
  std::string text;
  std::vector<int32_t> token_ids;
  std::vector<SampleResult> logprobs;
  std::vector<PromptLogprob> prompt_logprobs;  // prompt token i + 1 given those before it
  bool finished = false;
  std::string finish_reason;
  int64_t n_prompt = 0, n_cached = 0, n_generated = 0;
  bool role_sent = false;
  size_t text_offset = 0;  // completions logprobs text_offset so far
  std::unique_ptr<ToolCallStreamParser> tool_stream;  // chat, tool mode kAuto, streaming
  std::unique_ptr<ReasoningSplitter> reasoning;       // chat with a reasoning mode, streaming
  int tool_calls_sent = 0;
};

struct ResponseMeta {
  std::string id;  // chatcmpl-... / cmpl-...
  int64_t created = 0;
  std::string model;
};

std::string new_response_id(const char* prefix);

// Whole responses.
nlohmann::json chat_response(const ResponseMeta& m, const GenPlan& plan,
                             std::vector<ChoiceState>& choices, const Tokenizer& tok);
nlohmann::json completion_response(const ResponseMeta& m, const GenPlan& plan,
                                   std::vector<ChoiceState>& choices, const Tokenizer& tok);
nlohmann::json usage_json(const GenPlan& plan, const std::vector<ChoiceState>& choices);

// Stream chunks for one engine update of one choice (already folded into `c`): zero or more
// JSON chunks to send as `data:` events.
std::vector<nlohmann::json> chat_chunks(const ResponseMeta& m, const GenPlan& plan,
                                        ChoiceState& c, const StreamUpdate& u,
                                        const Tokenizer& tok);
std::vector<nlohmann::json> completion_chunks(const ResponseMeta& m, const GenPlan& plan,
                                              ChoiceState& c, const StreamUpdate& u,
                                              const Tokenizer& tok);

// Folds an update into the choice's accumulated state.
void apply_update(ChoiceState& c, const StreamUpdate& u);

}  // namespace jinx::server
