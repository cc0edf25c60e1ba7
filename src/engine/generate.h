// Single-sequence generation: prefill the prompt, then sample one token at a time, streaming
// text deltas. (The batched engine with a paged cache builds on the same pieces.)
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/thread_pool.h"
#include "engine/sampler.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace jinx {

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (without the prompt)
  std::string text;             // the text streamed, stop strings removed
  std::string finish_reason;    // "stop" (EOS, stop token or stop string) or "length"
  int64_t n_prompt = 0;
  double prompt_seconds = 0.0;  // prefill time
  double decode_seconds = 0.0;  // time for the tokens after the first
};

// Called with each text delta; return false to stop generating.
using TextCallback = std::function<bool(std::string_view)>;

GenerationResult generate(const Model& model, const Tokenizer& tok, std::span<const int32_t> prompt,
                          const SamplingParams& params, ThreadPool& pool,
                          const TextCallback& on_text = nullptr);

// The prompt for a user message: through the model's chat template when it has one (or
// `raw` is false and a fallback applies), else the text as it is. Returns token ids.
std::vector<int32_t> build_prompt(const Tokenizer& tok, const std::string& text, bool raw,
                                  const std::string& system = "");

}  // namespace jinx
