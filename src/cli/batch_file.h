// `jinx generate --input prompts.jsonl --output out.jsonl`: offline batch mode.
#pragma once

#include <string>

#include "cli/common.h"
#include "cli/engine_flags.h"
#include "engine/sampler.h"

namespace jinx::cli {

struct BatchArgs {
  std::string model, input, output;
  SamplingParams defaults;  // from the command-line sampling flags
  EngineFlags engine;
  ConstraintSpec constraint;  // from --grammar / --json-schema / --regex: lines without their own
};

// Each input line is {"prompt": "..."} or {"messages": [...]}, with optional OpenAI-style
// sampling fields, a "priority" (with --scheduling-policy priority) and at most one
// structured-output field ("grammar" GBNF text, "regex", "json_schema" an object or its text,
// "choice" a list of strings); each output line (same order) has text, token_ids,
// finish_reason and token counts, or {"error": "..."} for a line that could not run. Throws
// only for unreadable files.
void run_batch_file(const BatchArgs& a);

}  // namespace jinx::cli
