// Parsing and validating OpenAI request bodies into what the engine runs. Every field is
// type- and range-checked; anything wrong throws ApiError(400) naming the field.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/sampler.h"
#include "server/api_error.h"
#include "server/reasoning.h"
#include "server/tool_calls.h"
#include "structured/constraint.h"
#include "tokenizer/template.h"
#include "tokenizer/tokenizer.h"

namespace jinx {
class JsonGrammar;
class GbnfGrammar;
class ConstraintVocab;
}  // namespace jinx

namespace jinx::server {

// The LoRA adapters served beside the base model by name (--lora-modules, and at run time
// /v1/load_lora_adapter); a request selects one by its "model" field. Thread-safe.
class AdapterNames {
 public:
  int32_t find(const std::string& name) const;                // its adapter id, or -1
  std::vector<std::pair<std::string, int32_t>> list() const;  // in load order
  void add(const std::string& name, int32_t id);
  int32_t remove(const std::string& name);  // its id, or -1 if not served
 private:
  mutable std::mutex mu_;
  std::vector<std::pair<std::string, int32_t>> names_;
};

// What the server knows that requests are checked against. Shared, immutable (but for the
// adapter names, which hold their own lock).
struct ModelContext {
  std::string served_name;
  std::shared_ptr<AdapterNames> adapters = std::make_shared<AdapterNames>();
  std::shared_ptr<const Tokenizer> tok;
  std::shared_ptr<const ChatTemplate> tmpl;
  std::string tmpl_source;
  ToolFormat tool_format = ToolFormat::kHermes;
  ReasoningMode reasoning = ReasoningMode::kNone;  // chat output's <think> block
  int32_t vocab_size = 0;  // the model's logits
  int64_t max_model_len = 0;
  int32_t max_n = 16;  // choices per request
  bool priority_scheduling = false;  // --scheduling-policy priority: requests may set `priority`
  // Built on first use (a pass over the vocabulary); returns null if unavailable.
  std::function<std::shared_ptr<const ConstraintVocab>()> constraint_vocab;
};

enum class ToolMode { kNone, kAuto, kForced };

// One prompt of a request, to be run `n` times.
struct PromptPlan {
  std::vector<int32_t> ids;
  std::string text;  // the rendered prompt (completions echo / debugging)
};

struct GenPlan {
  bool chat = false;
  int32_t adapter = -1;    // check_model_field's answer
  int32_t priority = 0;    // vLLM's `priority` (scheduling-policy priority only)
  std::string model_name;  // what responses report as "model": the name asked for
  std::vector<PromptPlan> prompts;  // completions may batch several; chat has one
  int n = 1;
  SamplingParams params;  // seed, if set, is offset by the choice index
  bool stream = false;
  bool include_usage = false;
  bool chat_logprobs = false;   // chat: logprobs: true
  int completion_logprobs = -1;  // completions: logprobs: N
  bool echo = false;             // completions: prepend the prompt text
  bool echo_only = false;        // completions: echo with max_tokens 0 (one token is run, not shown)
  int prompt_logprobs = -1;      // vLLM's prompt_logprobs: N best per prompt position
  ToolMode tool_mode = ToolMode::kNone;
  ToolFormat tool_format = ToolFormat::kHermes;
  ReasoningMode reasoning = ReasoningMode::kNone;
  std::string forced_prefix;  // appended to the prompt in forced tool mode (already in ids)
  std::shared_ptr<const JsonGrammar> grammar;  // response_format / forced tool call / json schema
  std::shared_ptr<const GbnfGrammar> gbnf;     // grammar, regex or choice (never with `grammar`)
  // A JSON constraint under a reasoning parser holds only after the thoughts: from this marker
  // on in the output (empty: from the start), or from the start when the prompt already closed
  // the block (structured/deferred_constraint.h).
  std::string constraint_after;
  bool constraint_armed = false;
};

// The body as parsed from the request text, key order kept (schemas and tool parameters are
// generated and rendered in the order the client wrote them).
GenPlan parse_chat_request(const nlohmann::ordered_json& obody, const ModelContext& ctx);
GenPlan parse_completion_request(const nlohmann::ordered_json& obody, const ModelContext& ctx);

// One constraint per choice (null when the plan has no grammar).
std::shared_ptr<TokenConstraint> make_constraint(const GenPlan& plan, const ModelContext& ctx);

// Checks the optional "model" field: ApiError(404) when it names another model.
// The LoRA adapter the "model" field names: -1 for the served model (or no field), a >= 1 for
// lora_names[a - 1]; ApiError 404 for any other name.
int32_t check_model_field(const nlohmann::json& body, const ModelContext& ctx);

}  // namespace jinx::server
