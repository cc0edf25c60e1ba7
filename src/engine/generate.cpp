#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tokenizer/template.h"

namespace jinx {

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool is_stop_token(const Model& m, const Tokenizer& tok, const SamplingParams& p, int32_t id) {
  if (std::find(p.stop_token_ids.begin(), p.stop_token_ids.end(), id) != p.stop_token_ids.end())
    return true;
  if (p.ignore_eos) return false;
  const auto& cfg_eos = m.config().eos_token_ids;
  if (std::find(cfg_eos.begin(), cfg_eos.end(), id) != cfg_eos.end()) return true;
  const auto tok_eos = tok.eos_ids();
  return std::find(tok_eos.begin(), tok_eos.end(), id) != tok_eos.end();
}

}  // namespace

GenerationResult generate(const Model& model, const Tokenizer& tok, std::span<const int32_t> prompt,
                          const SamplingParams& params, ThreadPool& pool,
                          const TextCallback& on_text) {
  const ModelConfig& c = model.config();
  if (prompt.empty()) fail("the prompt is empty");
  const int64_t budget = std::max<int64_t>(0, params.max_tokens);
  const int64_t capacity = std::min<int64_t>(c.max_position_embeddings,
                                             static_cast<int64_t>(prompt.size()) + budget);
  if (static_cast<int64_t>(prompt.size()) >= c.max_position_embeddings)
    fail("the prompt has ", prompt.size(), " tokens; the model's context is ",
         c.max_position_embeddings);
  GenerationResult r;
  r.n_prompt = static_cast<int64_t>(prompt.size());
  KvCache cache = model.new_cache(capacity);
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  Sampler sampler(params, prompt);
  IncrementalDetokenizer detok(tok, params.skip_special_tokens);
  StopStringMatcher stops(params.stop);
  auto emit = [&](const std::string& s) {
    r.text += s;
    return !on_text || s.empty() || on_text(s);
  };
  auto t0 = std::chrono::steady_clock::now();
  model.forward(prompt, cache, logits.data(), false, pool);
  r.prompt_seconds = seconds_since(t0);
  auto t1 = std::chrono::steady_clock::now();
  r.finish_reason = "length";
  bool stopped_by_string = false;
  for (int64_t i = 0; i < budget; ++i) {
    SampleResult s = sampler.sample(logits.data(), static_cast<int32_t>(c.vocab_size));
    sampler.accept(s.token);
    r.tokens.push_back(s.token);
    if (is_stop_token(model, tok, params, s.token)) {
      r.finish_reason = "stop";
      break;
    }
    auto out = stops.push(detok.push(s.token));
    stopped_by_string = out.stopped;
    if (!emit(out.text) || out.stopped) {
      r.finish_reason = "stop";
      break;
    }
    if (i + 1 == budget || cache.n_tokens >= cache.capacity) break;
    const int32_t next = s.token;
    model.forward(std::span<const int32_t>(&next, 1), cache, logits.data(), false, pool);
  }
  if (!stopped_by_string) {  // release bytes and text held back for UTF-8 or a stop string
    auto tail = stops.push(detok.flush());
    emit(tail.text);
    if (!tail.stopped) emit(stops.flush());
  }
  r.decode_seconds = seconds_since(t1);
  return r;
}

std::vector<int32_t> build_prompt(const Tokenizer& tok, const std::string& text, bool raw,
                                  const std::string& system) {
  if (raw) return tok.encode(text, /*add_special=*/true, /*parse_special=*/true);
  const std::string& src = tok.chat_template().empty() ? fallback_chat_template()
                                                       : tok.chat_template();
  ChatTemplate tmpl(src);
  nlohmann::json messages = nlohmann::json::array();
  if (!system.empty()) messages.push_back({{"role", "system"}, {"content", system}});
  messages.push_back({{"role", "user"}, {"content", text}});
  nlohmann::json ctx = {{"messages", messages},
                        {"add_generation_prompt", true},
                        {"bos_token", tok.bos_token()},
                        {"eos_token", tok.eos_token()}};
  // The template writes any BOS itself, as transformers' apply_chat_template assumes.
  return tok.encode(tmpl.render(ctx), /*add_special=*/false, /*parse_special=*/true);
}

}  // namespace jinx
