#include "cli/batch_file.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tokenizer/template.h"

namespace jinx::cli {

namespace {

using Json = nlohmann::ordered_json;

template <typename T>
void read_field(const Json& j, const char* key, T* out) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return;
  try {
    *out = it->get<T>();
  } catch (const std::exception&) {
    fail("\"", key, "\" has the wrong type");
  }
}

SamplingParams params_from(const Json& j, const SamplingParams& defaults) {
  SamplingParams p = defaults;
  read_field(j, "max_tokens", &p.max_tokens);
  read_field(j, "max_completion_tokens", &p.max_tokens);
  read_field(j, "temperature", &p.temperature);
  read_field(j, "top_p", &p.top_p);
  read_field(j, "top_k", &p.top_k);
  read_field(j, "min_p", &p.min_p);
  read_field(j, "presence_penalty", &p.presence_penalty);
  read_field(j, "frequency_penalty", &p.frequency_penalty);
  read_field(j, "repetition_penalty", &p.repetition_penalty);
  read_field(j, "ignore_eos", &p.ignore_eos);
  read_field(j, "prompt_logprobs", &p.prompt_logprobs);
  read_field(j, "min_tokens", &p.min_tokens);
  read_field(j, "stop_token_ids", &p.stop_token_ids);
  read_field(j, "allowed_token_ids", &p.allowed_token_ids);
  read_field(j, "include_stop_str_in_output", &p.include_stop_str_in_output);
  uint64_t seed = 0;
  if (j.contains("seed") && !j["seed"].is_null()) {
    read_field(j, "seed", &seed);
    p.seed = seed;
  }
  if (j.contains("stop") && j["stop"].is_string()) p.stop = {j["stop"].get<std::string>()};
  else read_field(j, "stop", &p.stop);
  return p;
}

std::vector<int32_t> prompt_from(const Json& j, const Tokenizer& tok, const ChatTemplate& tmpl) {
  if (j.contains("prompt")) {
    if (!j["prompt"].is_string()) fail("\"prompt\" must be a string");
    return tok.encode(j["prompt"].get<std::string>(), true, true);
  }
  if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
    fail("a line needs \"prompt\" (a string) or \"messages\" (a non-empty array)");
  Json ctx = {{"messages", j["messages"]}, {"add_generation_prompt", true},
              {"bos_token", tok.bos_token()}, {"eos_token", tok.eos_token()}};
  if (j.contains("tools")) ctx["tools"] = j["tools"];
  return tok.encode(tmpl.render(ctx), false, true);
}

// A line's own structured-output field, else the command line's.
ConstraintSpec constraint_from(const Json& j, const ConstraintSpec& defaults) {
  ConstraintSpec spec;
  int given = 0;
  for (const char* kind : {"grammar", "regex", "json_schema", "choice"}) {
    auto it = j.find(kind);
    if (it == j.end() || it->is_null()) continue;
    ++given;
    spec.kind = kind;
    if (spec.kind == "choice") {
      if (!it->is_array()) fail("\"choice\" must be an array of strings");
      for (const auto& c : *it) {
        if (!c.is_string()) fail("\"choice\" must be an array of strings");
        spec.choices.push_back(c.get<std::string>());
      }
    } else if (spec.kind == "json_schema" && it->is_object()) {
      spec.text = it->dump();
    } else if (it->is_string()) {
      spec.text = it->get<std::string>();
    } else {
      fail("\"", kind, "\" must be a string");
    }
  }
  if (given > 1) fail("at most one of \"grammar\", \"regex\", \"json_schema\", \"choice\" per line");
  return given ? spec : defaults;
}

void progress_bar(size_t done, size_t total, int64_t tokens, double seconds) {
  std::fprintf(stderr, "\r[jinx] %zu/%zu requests, %lld tokens, %.1f tok/s   ", done, total,
               static_cast<long long>(tokens), seconds > 0 ? tokens / seconds : 0.0);
}

}  // namespace

void run_batch_file(const BatchArgs& a) {
  std::ifstream in(a.input);
  if (!in) fail(a.input, ": cannot open");
  LLM llm(a.model, a.engine.resolve());
  if (!llm.model().quantize_summary().empty())
    std::fprintf(stderr, "[jinx] %s\n", llm.model().quantize_summary().c_str());
  const Tokenizer& tok = *llm.tokenizer();
  ChatTemplate tmpl(tok.chat_template().empty() ? fallback_chat_template() : tok.chat_template());
  std::shared_ptr<const ConstraintVocab> vocab;  // built on the first constrained line
  std::vector<std::string> errors;  // per line; "" = runs
  std::vector<Request> reqs;
  std::vector<size_t> req_line;
  std::string line;
  for (size_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    errors.emplace_back();
    try {
      Json j = Json::parse(line);
      if (!j.is_object()) fail("expected a JSON object");
      Request r{prompt_from(j, tok, tmpl), params_from(j, a.defaults),
                make_constraint(constraint_from(j, a.constraint), tok, &vocab), nullptr};
      if (auto p = j.find("priority"); p != j.end() && !p->is_null()) {
        if (!p->is_number_integer() || *p < std::numeric_limits<int32_t>::min() ||
            *p > std::numeric_limits<int32_t>::max())
          fail("\"priority\" must be an integer");
        r.priority = p->get<int32_t>();
      }
      llm.check_request(r, n);
      reqs.push_back(std::move(r));
      req_line.push_back(errors.size() - 1);
    } catch (const std::exception& e) {
      errors.back() = str(a.input, ":", n, ": ", e.what());
      std::fprintf(stderr, "[jinx] %s\n", errors.back().c_str());
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  auto outs = llm.generate(reqs, [&](size_t done, size_t total, int64_t tokens) {
    progress_bar(done, total, tokens, elapsed());
  });
  std::fprintf(stderr, "\n");
  std::ofstream out(a.output);
  if (!out) fail(a.output, ": cannot write");
  size_t k = 0;
  for (size_t i = 0; i < errors.size(); ++i) {
    Json o;
    if (!errors[i].empty()) {
      o["error"] = errors[i];
    } else {
      const RequestOutput& r = outs[k++];
      o["text"] = r.text;
      o["token_ids"] = r.token_ids;
      o["finish_reason"] = r.finish_reason;
      o["prompt_tokens"] = r.n_prompt;
      o["completion_tokens"] = r.token_ids.size();
      o["cached_prompt_tokens"] = r.n_cached_prompt;
      if (!r.prompt_logprobs.empty()) {  // prompt token i + 1 given those before it
        Json lps = Json::array();
        for (const PromptLogprob& lp : r.prompt_logprobs) {
          Json e = {{"token", lp.token}, {"logprob", lp.logprob}, {"rank", lp.rank}};
          if (!lp.top.empty()) {
            Json top = Json::array();
            for (const TokenLogprob& t : lp.top) top.push_back({{"token", t.id}, {"logprob", t.logprob}});
            e["top"] = std::move(top);
          }
          lps.push_back(std::move(e));
        }
        o["prompt_logprobs"] = std::move(lps);
      }
    }
    out << o.dump(-1, ' ', false, Json::error_handler_t::replace) << "\n";
  }
  const EngineStats& st = llm.stats();
  std::fprintf(stderr, "[jinx] %zu requests in %.2f s, %lld steps, %lld tokens computed, "
               "%lld from the prefix cache, %lld preemptions\n",
               reqs.size(), st.seconds, static_cast<long long>(st.steps),
               static_cast<long long>(st.computed_tokens),
               static_cast<long long>(st.prefix_hit_tokens),
               static_cast<long long>(st.preemptions));
}

}  // namespace jinx::cli
