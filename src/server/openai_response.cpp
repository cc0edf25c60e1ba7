#include "server/openai_response.h"

#include <random>

namespace jinx::server {

namespace {

using nlohmann::json;

json token_bytes_json(const std::string& b) {
  json a = json::array();
  for (unsigned char ch : b) a.push_back(static_cast<int>(ch));
  return a;
}

std::string token_text(const Tokenizer& tok, int32_t id) {
  return tok.decode(std::span<const int32_t>(&id, 1), /*skip_special=*/false);
}

json chat_logprob_entry(const Tokenizer& tok, const SampleResult& s, int32_t id) {
  json top = json::array();
  for (const TokenLogprob& t : s.top)
    top.push_back({{"token", token_text(tok, t.id)},
                   {"logprob", t.logprob},
                   {"bytes", token_bytes_json(tok.token_bytes(t.id, false))}});
  return {{"token", token_text(tok, id)},
          {"logprob", s.logprob},
          {"bytes", token_bytes_json(tok.token_bytes(id, false))},
          {"top_logprobs", top}};
}

json chat_logprobs(const Tokenizer& tok, const std::vector<SampleResult>& lp,
                   const std::vector<int32_t>& ids, size_t from) {
  json content = json::array();
  for (size_t i = from; i < lp.size() && i < ids.size(); ++i)
    content.push_back(chat_logprob_entry(tok, lp[i], ids[i]));
  return {{"content", content}};
}

// Completions' legacy shape; advances c.text_offset. With `prompt` (echo), the prompt's
// tokens come first: the first without a logprob (null), each other one given those before.
json completion_logprobs(const Tokenizer& tok, ChoiceState& c, size_t from, size_t to,
                         const std::vector<int32_t>* prompt = nullptr) {
  json tokens = json::array(), lps = json::array(), tops = json::array(), offs = json::array();
  if (prompt) {
    for (size_t i = 0; i < prompt->size(); ++i) {
      const std::string t = token_text(tok, (*prompt)[i]);
      tokens.push_back(t);
      if (i == 0 || i > c.prompt_logprobs.size()) {
        lps.push_back(nullptr);
        tops.push_back(nullptr);
      } else {
        const PromptLogprob& p = c.prompt_logprobs[i - 1];
        lps.push_back(p.logprob);
        json top = json::object();
        for (const TokenLogprob& e : p.top) top[token_text(tok, e.id)] = e.logprob;
        tops.push_back(top);
      }
      offs.push_back(c.text_offset);
      c.text_offset += t.size();
    }
  }
  for (size_t i = from; i < to && i < c.logprobs.size(); ++i) {
    const std::string t = token_text(tok, c.token_ids[i]);
    tokens.push_back(t);
    lps.push_back(c.logprobs[i].logprob);
    json top = json::object();
    for (const TokenLogprob& e : c.logprobs[i].top) top[token_text(tok, e.id)] = e.logprob;
    tops.push_back(top);
    offs.push_back(c.text_offset);
    c.text_offset += t.size();
  }
  return {{"tokens", tokens}, {"token_logprobs", lps}, {"top_logprobs", tops},
          {"text_offset", offs}};
}

// vLLM's prompt_logprobs: null for the first prompt token, then per token a map from token id
// to {logprob, rank, decoded_token} holding the prompt token and the best alternatives.
json vllm_prompt_logprobs(const Tokenizer& tok, const std::vector<PromptLogprob>& lps) {
  json out = json::array({nullptr});
  for (size_t i = 0; i < lps.size(); ++i) {
    const PromptLogprob& p = lps[i];
    json m = json::object();
    for (size_t r = 0; r < p.top.size(); ++r)
      m[std::to_string(p.top[r].id)] = {{"logprob", p.top[r].logprob},
                                        {"rank", static_cast<int>(r) + 1},
                                        {"decoded_token", token_text(tok, p.top[r].id)}};
    m[std::to_string(p.token)] = {{"logprob", p.logprob},
                                  {"rank", p.rank},
                                  {"decoded_token", token_text(tok, p.token)}};
    out.push_back(std::move(m));
  }
  return out;
}

json tool_call_json(const ToolCall& tc, int index, bool with_index) {
  json j = {{"id", tc.id},
            {"type", "function"},
            {"function", {{"name", tc.name}, {"arguments", tc.arguments}}}};
  if (with_index) j["index"] = index;
  return j;
}

// A forced call's output is the call object itself: {"name": ..., "arguments": {...}}.
bool forced_call(const std::string& text, ToolCall* out) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("name") || !j["name"].is_string()) return false;
  out->id = new_response_id("call_");
  out->name = j["name"];
  const json args = j.contains("arguments") ? j["arguments"]
                    : j.contains("parameters") ? j["parameters"] : json::object();
  out->arguments = args.dump();
  return true;
}

json chunk_base(const ResponseMeta& m, const char* object) {
  return {{"id", m.id}, {"object", object}, {"created", m.created}, {"model", m.model}};
}

std::string reason_for(const GenPlan& plan, const ChoiceState& c, bool has_calls) {
  if (has_calls && c.finish_reason == "stop") return "tool_calls";
  if (has_calls && plan.tool_mode == ToolMode::kForced) return "tool_calls";
  return c.finish_reason;
}

}  // namespace

std::string new_response_id(const char* prefix) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* hex = "0123456789abcdef";
  std::string id = prefix;
  for (int i = 0; i < 24; ++i) id += hex[rng() % 16];
  return id;
}

void apply_update(ChoiceState& c, const StreamUpdate& u) {
  c.text += u.text;
  c.token_ids.insert(c.token_ids.end(), u.token_ids.begin(), u.token_ids.end());
  c.logprobs.insert(c.logprobs.end(), u.logprobs.begin(), u.logprobs.end());
  if (!u.prompt_logprobs.empty()) c.prompt_logprobs = u.prompt_logprobs;
  c.n_prompt = u.n_prompt;
  c.n_cached = u.n_cached_prompt;
  c.n_generated = u.n_generated;
  if (u.finished) {
    c.finished = true;
    c.finish_reason = u.finish_reason;
  }
}

json usage_json(const GenPlan& plan, const std::vector<ChoiceState>& choices) {
  int64_t prompt = 0, cached = 0, completion = 0;
  std::vector<bool> seen(plan.prompts.size(), false);
  for (const auto& c : choices) {
    completion += c.n_generated;
    if (!seen[c.prompt]) {  // a prompt counts once however many samples it has
      seen[c.prompt] = true;
      prompt += static_cast<int64_t>(plan.prompts[c.prompt].ids.size());
      cached += c.n_cached;
    }
  }
  return {{"prompt_tokens", prompt},
          {"completion_tokens", completion},
          {"total_tokens", prompt + completion},
          {"prompt_tokens_details", {{"cached_tokens", cached}}}};
}

json chat_response(const ResponseMeta& m, const GenPlan& plan, std::vector<ChoiceState>& choices,
                   const Tokenizer& tok) {
  json out = chunk_base(m, "chat.completion");
  json arr = json::array();
  for (auto& c : choices) {
    json msg = {{"role", "assistant"}};
    std::vector<ToolCall> calls;
    std::string content = c.text, reasoning;
    if (plan.reasoning != ReasoningMode::kNone) {
      ReasoningSplitter split(plan.reasoning);
      ReasoningDelta a = split.push(c.text), b = split.finish();
      reasoning = a.reasoning + b.reasoning;
      content = a.content + b.content;
    }
    if (plan.tool_mode == ToolMode::kForced) {
      ToolCall tc;
      if (forced_call(c.text, &tc)) {
        calls.push_back(tc);
        content.clear();
      }
    } else if (plan.tool_mode == ToolMode::kAuto) {
      ParsedOutput p = parse_tool_calls(content, plan.tool_format);
      calls = std::move(p.calls);
      content = std::move(p.content);
    }
    msg["content"] = (calls.empty() || !content.empty()) ? json(content) : json();
    if (!reasoning.empty()) msg["reasoning_content"] = reasoning;
    if (!calls.empty()) {
      json tcs = json::array();
      for (const auto& tc : calls) tcs.push_back(tool_call_json(tc, 0, false));
      msg["tool_calls"] = tcs;
    }
    json ch = {{"index", c.index},
               {"message", msg},
               {"logprobs", plan.chat_logprobs ? chat_logprobs(tok, c.logprobs, c.token_ids, 0)
                                               : json()},
               {"finish_reason", reason_for(plan, c, !calls.empty())}};
    arr.push_back(ch);
  }
  out["choices"] = arr;
  out["usage"] = usage_json(plan, choices);
  if (plan.prompt_logprobs >= 0 && !choices.empty())
    out["prompt_logprobs"] = vllm_prompt_logprobs(tok, choices[0].prompt_logprobs);
  return out;
}

json completion_response(const ResponseMeta& m, const GenPlan& plan,
                         std::vector<ChoiceState>& choices, const Tokenizer& tok) {
  json out = chunk_base(m, "text_completion");
  json arr = json::array();
  for (auto& c : choices) {
    const std::string prefix = plan.echo ? plan.prompts[c.prompt].text : "";
    if (plan.echo_only) {  // max_tokens 0: the token run for the prompt's sake is not shown
      c.text.clear();
      c.token_ids.clear();
      c.logprobs.clear();
      c.n_generated = 0;
      c.finish_reason = "length";
    }
    const std::vector<int32_t>* prompt_ids =
        plan.echo && plan.params.prompt_logprobs >= 0 ? &plan.prompts[c.prompt].ids : nullptr;
    c.text_offset = prompt_ids ? 0 : prefix.size();
    json lp = plan.completion_logprobs >= 0
                  ? completion_logprobs(tok, c, 0, c.token_ids.size(), prompt_ids)
                  : json();
    json ch = {{"index", c.index},
               {"text", prefix + c.text},
               {"logprobs", lp},
               {"finish_reason", c.finish_reason}};
    if (plan.prompt_logprobs >= 0)
      ch["prompt_logprobs"] = vllm_prompt_logprobs(tok, c.prompt_logprobs);
    arr.push_back(std::move(ch));
  }
  out["choices"] = arr;
  out["usage"] = usage_json(plan, choices);
  return out;
}

std::vector<json> chat_chunks(const ResponseMeta& m, const GenPlan& plan, ChoiceState& c,
                              const StreamUpdate& u, const Tokenizer& tok) {
  std::vector<json> out;
  auto chunk = [&](json delta, json logprobs, json reason) {
    json j = chunk_base(m, "chat.completion.chunk");
    j["choices"] = json::array({{{"index", c.index},
                                 {"delta", std::move(delta)},
                                 {"logprobs", std::move(logprobs)},
                                 {"finish_reason", std::move(reason)}}});
    if (plan.include_usage) j["usage"] = nullptr;
    out.push_back(std::move(j));
  };
  if (!c.role_sent) {
    chunk({{"role", "assistant"}, {"content", ""}}, json(), json());
    c.role_sent = true;
  }
  bool any_calls = c.tool_calls_sent > 0;
  std::string text = u.text;  // what is content (thoughts split off first)
  if (plan.reasoning != ReasoningMode::kNone) {
    if (!c.reasoning) c.reasoning = std::make_unique<ReasoningSplitter>(plan.reasoning);
    ReasoningDelta d = c.reasoning->push(u.text);
    if (u.finished) {
      ReasoningDelta tail = c.reasoning->finish();
      d.reasoning += tail.reasoning;
      d.content += tail.content;
    }
    if (!d.reasoning.empty()) chunk({{"reasoning_content", d.reasoning}}, json(), json());
    text = std::move(d.content);
  }
  if (plan.tool_mode == ToolMode::kForced) {
    if (u.finished) {
      ToolCall tc;
      if (forced_call(c.text, &tc)) {
        chunk({{"tool_calls", json::array({tool_call_json(tc, 0, true)})}}, json(), json());
        c.tool_calls_sent = 1;
        any_calls = true;
      } else if (!c.text.empty()) {
        chunk({{"content", c.text}}, json(), json());
      }
    }
  } else if (plan.tool_mode == ToolMode::kAuto) {
    if (!c.tool_stream) c.tool_stream = std::make_unique<ToolCallStreamParser>(plan.tool_format);
    std::vector<StreamDelta> deltas = c.tool_stream->push(text);
    if (u.finished) {
      auto tail = c.tool_stream->finish();
      deltas.insert(deltas.end(), tail.begin(), tail.end());
    }
    for (const StreamDelta& d : deltas) {
      if (d.index >= 0) {
        ToolCall tc{d.id, d.name, d.arguments};
        chunk({{"tool_calls", json::array({tool_call_json(tc, d.index, true)})}}, json(), json());
        c.tool_calls_sent = std::max(c.tool_calls_sent, d.index + 1);
        any_calls = true;
      } else if (!d.content.empty()) {
        chunk({{"content", d.content}}, json(), json());
      }
    }
  } else if (!text.empty() || (plan.chat_logprobs && !u.token_ids.empty())) {
    const size_t from = c.token_ids.size() - u.token_ids.size();
    chunk({{"content", text}},
          plan.chat_logprobs ? chat_logprobs(tok, c.logprobs, c.token_ids, from) : json(),
          json());
  }
  if (u.finished) chunk(json::object(), json(), reason_for(plan, c, any_calls));
  return out;
}

std::vector<json> completion_chunks(const ResponseMeta& m, const GenPlan& plan, ChoiceState& c,
                                    const StreamUpdate& u, const Tokenizer& tok) {
  std::vector<json> out;
  std::string text = u.text;
  const std::vector<int32_t>* prompt_ids = nullptr;  // echo with logprobs: the prompt's first
  if (!c.role_sent) {  // first chunk of the choice: echo goes first
    c.role_sent = true;
    if (plan.echo) text = plan.prompts[c.prompt].text + text;
    if (plan.echo && plan.params.prompt_logprobs >= 0) prompt_ids = &plan.prompts[c.prompt].ids;
    c.text_offset = plan.echo && !prompt_ids ? plan.prompts[c.prompt].text.size() : 0;
  }
  if (text.empty() && !u.finished && (plan.completion_logprobs < 0 || u.token_ids.empty()))
    return out;
  json lp;
  if (plan.completion_logprobs >= 0) {
    const size_t from = c.token_ids.size() - u.token_ids.size();
    lp = completion_logprobs(tok, c, from, c.token_ids.size(), prompt_ids);
  }
  json j = chunk_base(m, "text_completion");
  j["choices"] = json::array({{{"index", c.index},
                               {"text", text},
                               {"logprobs", lp},
                               {"finish_reason", u.finished ? json(c.finish_reason) : json()}}});
  if (plan.include_usage) j["usage"] = nullptr;
  out.push_back(std::move(j));
  return out;
}

}  // namespace jinx::server
