#include "server/openai_request.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "structured/deferred_constraint.h"
#include "structured/gbnf_constraint.h"
#include "structured/json_constraint.h"
#include "structured/regex_grammar.h"

namespace jinx::server {

namespace {

using nlohmann::json;
using nlohmann::ordered_json;

constexpr int kMaxStops = 16;
constexpr size_t kMaxStopBytes = 256;
constexpr size_t kMaxLogitBias = 1024;
constexpr size_t kMaxBadWords = 128;
constexpr size_t kMaxBadWordBytes = 1024;
constexpr size_t kMaxCompletionPrompts = 64;

std::string type_name(const json& v) { return v.type_name(); }

const json* field(const json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return nullptr;
  return &*it;
}

bool get_bool(const json& body, const char* name, bool def) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_boolean()) bad_request(name, str("'", name, "' must be a boolean, got ", type_name(*v)));
  return v->get<bool>();
}

double get_number(const json& body, const char* name, double def, double lo, double hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number()) bad_request(name, str("'", name, "' must be a number, got ", type_name(*v)));
  const double x = v->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad_request(name, str("'", name, "' must be in [", lo, ", ", hi, "], got ", x));
  return x;
}

int64_t get_int(const json& body, const char* name, int64_t def, int64_t lo, int64_t hi) {
  const json* v = field(body, name);
  if (!v) return def;
  if (!v->is_number_integer() && !(v->is_number_float() && std::floor(v->get<double>()) ==
                                                               v->get<double>()))
    bad_request(name, str("'", name, "' must be an integer, got ", v->dump()));
  const double d = v->get<double>();
  if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
    bad_request(name, str("'", name, "' must be in [", lo, ", ", hi, "], got ", v->dump()));
  return v->is_number_float() ? static_cast<int64_t>(d) : v->get<int64_t>();
}

void parse_stop(const json& body, SamplingParams* p) {
  const json* v = field(body, "stop");
  if (!v) return;
  std::vector<std::string> stops;
  if (v->is_string()) {
    stops.push_back(v->get<std::string>());
  } else if (v->is_array()) {
    if (v->size() > kMaxStops) bad_request("stop", str("at most ", kMaxStops, " stop strings"));
    for (const json& s : *v) {
      if (!s.is_string()) bad_request("stop", "'stop' must be a string or an array of strings");
      stops.push_back(s.get<std::string>());
    }
  } else {
    bad_request("stop", "'stop' must be a string or an array of strings");
  }
  for (const auto& s : stops) {
    if (s.empty()) bad_request("stop", "stop strings must not be empty");
    if (s.size() > kMaxStopBytes)
      bad_request("stop", str("stop strings are limited to ", kMaxStopBytes, " bytes"));
  }
  p->stop = std::move(stops);
}

// An optional array of token ids inside the vocabulary (at most the vocabulary's size).
std::vector<int32_t> token_id_list(const json& body, const char* name, const ModelContext& ctx) {
  const json* v = field(body, name);
  if (!v) return {};
  if (!v->is_array()) bad_request(name, str("'", name, "' must be an array of token ids"));
  if (v->size() > static_cast<size_t>(ctx.vocab_size))
    bad_request(name, str("'", name, "' has more entries than the vocabulary"));
  std::vector<int32_t> ids;
  for (const json& t : *v) {
    if (!t.is_number_integer()) bad_request(name, str("'", name, "' must be an array of token ids"));
    const int64_t id = t.get<int64_t>();
    if (id < 0 || id >= ctx.vocab_size)
      bad_request(name, str("token id ", id, " in '", name, "' is outside the vocabulary [0, ",
                            ctx.vocab_size, ")"));
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

void parse_logit_bias(const json& body, const ModelContext& ctx, SamplingParams* p) {
  const json* v = field(body, "logit_bias");
  if (!v) return;
  if (!v->is_object()) bad_request("logit_bias", "'logit_bias' must be an object");
  if (v->size() > kMaxLogitBias)
    bad_request("logit_bias", str("at most ", kMaxLogitBias, " logit_bias entries"));
  for (const auto& [k, b] : v->items()) {
    int64_t id = -1;
    size_t used = 0;
    try {
      id = std::stoll(k, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != k.size() || id < 0 || id >= ctx.vocab_size)
      bad_request("logit_bias", str("logit_bias key '", k, "' is not a token id in [0, ",
                                    ctx.vocab_size, ")"));
    if (!b.is_number() || !std::isfinite(b.get<double>()) || b.get<double>() < -100 ||
        b.get<double>() > 100)
      bad_request("logit_bias", str("logit_bias values must be numbers in [-100, 100]"));
    p->logit_bias.emplace_back(static_cast<int32_t>(id), b.get<float>());
  }
}

// vLLM's bad_words: each word as the tokenizer writes it alone and, where that differs only in
// its first token, after a space (as vLLM tokenizes them).
void parse_bad_words(const json& body, const ModelContext& ctx, SamplingParams* p) {
  const json* v = field(body, "bad_words");
  if (!v) return;
  if (!v->is_array()) bad_request("bad_words", "'bad_words' must be an array of strings");
  if (v->size() > kMaxBadWords) bad_request("bad_words", str("at most ", kMaxBadWords, " bad_words"));
  for (const json& w : *v) {
    if (!w.is_string() || w.get<std::string>().size() > kMaxBadWordBytes)
      bad_request("bad_words", str("bad_words entries must be strings of at most ", kMaxBadWordBytes,
                                   " bytes"));
    std::string word = w.get<std::string>();
    word.erase(0, word.find_first_not_of(' '));
    if (word.empty()) bad_request("bad_words", "bad_words entries must not be blank");
    const std::vector<int32_t> plain = ctx.tok->encode(word, false, false);
    const std::vector<int32_t> spaced = ctx.tok->encode(" " + word, false, false);
    if (!plain.empty()) p->bad_words_ids.push_back(plain);
    if (!spaced.empty() && !plain.empty() && spaced.size() == plain.size() && spaced[0] != plain[0])
      p->bad_words_ids.push_back(spaced);
  }
}

// Fields common to both endpoints.
void parse_sampling(const json& body, const ModelContext& ctx, GenPlan* plan) {
  SamplingParams& p = plan->params;
  p.temperature = static_cast<float>(get_number(body, "temperature", 1.0, 0.0, 2.0));
  p.top_p = static_cast<float>(get_number(body, "top_p", 1.0, 0.0, 1.0));
  if (p.top_p <= 0.0f) bad_request("top_p", "'top_p' must be in (0, 1]");
  p.top_k = static_cast<int>(get_int(body, "top_k", 0, -1, std::numeric_limits<int32_t>::max()));
  p.min_p = static_cast<float>(get_number(body, "min_p", 0.0, 0.0, 1.0));
  p.presence_penalty = static_cast<float>(get_number(body, "presence_penalty", 0.0, -2.0, 2.0));
  p.frequency_penalty =
      static_cast<float>(get_number(body, "frequency_penalty", 0.0, -2.0, 2.0));
  p.repetition_penalty =
      static_cast<float>(get_number(body, "repetition_penalty", 1.0, 0.0, 2.0));
  if (p.repetition_penalty <= 0.0f)
    bad_request("repetition_penalty", "'repetition_penalty' must be in (0, 2]");
  if (const json* s = field(body, "seed")) {
    if (!s->is_number_integer()) bad_request("seed", "'seed' must be an integer");
    p.seed = s->is_number_unsigned() ? s->get<uint64_t>()
                                     : static_cast<uint64_t>(s->get<int64_t>());
  }
  plan->n = static_cast<int>(get_int(body, "n", 1, 1, ctx.max_n));
  // vLLM's `priority` (--scheduling-policy priority): smaller is served first.
  plan->priority = static_cast<int32_t>(get_int(body, "priority", 0,
                                                std::numeric_limits<int32_t>::min(),
                                                std::numeric_limits<int32_t>::max()));
  if (plan->priority != 0 && !ctx.priority_scheduling) {
    bad_request("priority", "'priority' needs the server started with --scheduling-policy "
                            "priority (got priority " + std::to_string(plan->priority) + ")");
  }
  plan->stream = get_bool(body, "stream", false);
  plan->prompt_logprobs = static_cast<int>(get_int(body, "prompt_logprobs", -1, 0, kMaxLogprobs));
  if (plan->prompt_logprobs >= 0 && plan->stream)
    bad_request("prompt_logprobs", "'prompt_logprobs' is not supported with stream");
  plan->params.prompt_logprobs = plan->prompt_logprobs;
  if (const json* so = field(body, "stream_options")) {
    if (!so->is_object()) bad_request("stream_options", "'stream_options' must be an object");
    if (!plan->stream)
      bad_request("stream_options", "'stream_options' is only allowed with stream: true");
    plan->include_usage = get_bool(*so, "include_usage", false);
  }
  p.ignore_eos = get_bool(body, "ignore_eos", false);
  p.include_stop_str_in_output = get_bool(body, "include_stop_str_in_output", false);
  p.min_tokens = static_cast<int>(get_int(body, "min_tokens", 0, 0, std::numeric_limits<int32_t>::max()));
  p.stop_token_ids = token_id_list(body, "stop_token_ids", ctx);
  p.allowed_token_ids = token_id_list(body, "allowed_token_ids", ctx);
  p.skip_special_tokens = get_bool(body, "skip_special_tokens", true);
  parse_stop(body, &p);
  parse_logit_bias(body, ctx, &p);
  parse_bad_words(body, ctx, &p);
  if (std::string err = p.validate(ctx.vocab_size); !err.empty()) bad_request("", err);
}

// max_tokens / max_completion_tokens against the context left after the prompt.
void set_max_tokens(const json& body, const ModelContext& ctx, GenPlan* plan) {
  // vLLM's truncate_prompt_tokens: the last k prompt tokens (-1: as many as the context takes).
  if (const json* t = field(body, "truncate_prompt_tokens"); t && !t->is_null()) {
    int64_t k = get_int(body, "truncate_prompt_tokens", -1, -1, ctx.max_model_len);
    if (k == 0) bad_request("truncate_prompt_tokens", "'truncate_prompt_tokens' must be -1 or >= 1");
    if (k < 0) k = ctx.max_model_len - 1;
    for (auto& pp : plan->prompts) {
      if (static_cast<int64_t>(pp.ids.size()) <= k) continue;
      pp.ids.erase(pp.ids.begin(), pp.ids.end() - k);
      pp.text = ctx.tok->decode(pp.ids);
    }
  }
  size_t longest = 0;
  for (const auto& pp : plan->prompts) longest = std::max(longest, pp.ids.size());
  const int64_t room = ctx.max_model_len - static_cast<int64_t>(longest);
  if (room < 1)
    bad_request("messages", str("the prompt has ", longest, " tokens; this model's context is ",
                                ctx.max_model_len, " tokens"));
  const char* name = field(body, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  // Completions with echo may ask for no new token (scoring a text: lm-eval-harness'
  // loglikelihood requests); one is run and not shown.
  const int64_t max_tokens =
      get_int(body, name, room, plan->echo ? 0 : 1, std::numeric_limits<int32_t>::max());
  if (max_tokens == 0) {
    if (plan->stream) bad_request(name, str("'", name, "' 0 is not supported with stream"));
    plan->echo_only = true;
    plan->params.max_tokens = 1;
    plan->params.min_tokens = std::min(plan->params.min_tokens, 1);
    return;
  }
  if (max_tokens > room)
    bad_request(name, str("'", name, "' is ", max_tokens, " but the prompt has ", longest,
                          " tokens and the context is ", ctx.max_model_len,
                          " tokens: at most ", room, " can be generated"));
  plan->params.max_tokens = static_cast<int>(max_tokens);
  if (plan->params.min_tokens > plan->params.max_tokens)
    bad_request("min_tokens", str("'min_tokens' (", plan->params.min_tokens, ") is more than '", name,
                                  "' (", max_tokens, ")"));
}

// Message content: a string, null, or an array of {"type": "text", "text": ...} parts.
ordered_json normalise_content(const ordered_json& c, size_t i) {
  if (c.is_string() || c.is_null()) return c;
  const std::string where = str("messages[", i, "].content");
  if (!c.is_array()) bad_request(where, "content must be a string or an array of text parts");
  std::string text;
  for (const auto& part : c) {
    if (!part.is_object() || !part.contains("type") || part["type"] != "text" ||
        !part.contains("text") || !part["text"].is_string())
      bad_request(where, "only text content parts ({\"type\": \"text\", \"text\": ...}) are supported");
    text += part["text"].get<std::string>();
  }
  return text;
}

ordered_json parse_messages(const ordered_json& body) {
  auto it = body.find("messages");
  if (it == body.end() || !it->is_array())
    bad_request("messages", "'messages' must be an array of messages");
  if (it->empty()) bad_request("messages", "'messages' must not be empty");
  ordered_json out = ordered_json::array();
  for (size_t i = 0; i < it->size(); ++i) {
    const ordered_json& m = (*it)[i];
    const std::string where = str("messages[", i, "]");
    if (!m.is_object()) bad_request(where, where + " must be an object");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string()) bad_request(where, where + ".role must be a string");
    const std::string r = role->get<std::string>();
    if (r != "system" && r != "developer" && r != "user" && r != "assistant" && r != "tool")
      bad_request(where + ".role", str("unknown role '", r,
                                       "' (system, developer, user, assistant or tool)"));
    ordered_json msg = m;
    if (r == "developer") msg["role"] = "system";
    auto content = m.find("content");
    const bool has_calls = m.contains("tool_calls") && !m["tool_calls"].is_null();
    if (content == m.end() || content->is_null()) {
      if (!(r == "assistant" && has_calls))
        bad_request(where + ".content", where + " has no content");
      msg["content"] = nullptr;
    } else {
      msg["content"] = normalise_content(*content, i);
    }
    out.push_back(std::move(msg));
  }
  return out;
}

// Takes the body with its key order: properties are generated in the order the schema lists.
std::shared_ptr<const JsonGrammar> parse_response_format(const ordered_json& obody) {
  const ordered_json* rf = nullptr;
  if (auto it = obody.find("response_format"); it != obody.end() && !it->is_null()) rf = &*it;
  if (!rf) return nullptr;
  if (!rf->is_object() || !rf->contains("type") || !(*rf)["type"].is_string())
    bad_request("response_format", "'response_format' must be an object with a string 'type'");
  const std::string type = (*rf)["type"];
  if (type == "text") return nullptr;
  try {
    if (type == "json_object") return JsonGrammar::any_object();
    if (type == "json_schema") {
      auto js = rf->find("json_schema");
      if (js == rf->end() || !js->is_object())
        bad_request("response_format.json_schema", "'json_schema' must be an object");
      auto schema = js->find("schema");
      if (schema == js->end() || !schema->is_object())
        bad_request("response_format.json_schema.schema", "'json_schema.schema' must be an object");
      return JsonGrammar::from_schema(*schema);
    }
  } catch (const ApiError&) {
    throw;
  } catch (const Error& e) {
    bad_request("response_format", str("unsupported schema: ", e.what()));
  }
  bad_request("response_format.type",
              str("unknown response_format type '", type, "' (text, json_object or json_schema)"));
}

constexpr size_t kMaxGrammarBytes = 1 << 20;

// One structured-output field besides response_format: a GBNF grammar, a regex, a list of
// choices or a JSON schema, under llama.cpp's names (grammar, json_schema), vLLM's older
// ones (guided_grammar, guided_regex, guided_choice, guided_json) or its newer
// structured_outputs object ({"grammar" | "regex" | "choice" | "json": ...}).
void parse_structured_field(const std::string& where, const std::string& kind, const ordered_json& v,
                            GenPlan* plan) {
  try {
    if (kind == "grammar" || kind == "regex") {
      if (!v.is_string()) bad_request(where, str("'", where, "' must be a string"));
      const std::string text = v.get<std::string>();
      if (text.size() > kMaxGrammarBytes)
        bad_request(where, str("'", where, "' is longer than ", kMaxGrammarBytes, " bytes"));
      plan->gbnf = kind == "grammar" ? GbnfGrammar::parse(text) : regex_grammar(text);
    } else if (kind == "choice") {
      if (!v.is_array() || v.empty()) bad_request(where, str("'", where, "' must be a non-empty array of strings"));
      std::vector<std::string> options;
      size_t bytes = 0;
      for (const auto& o : v) {
        if (!o.is_string()) bad_request(where, str("'", where, "' must be a non-empty array of strings"));
        options.push_back(o.get<std::string>());
        bytes += options.back().size();
      }
      if (bytes > kMaxGrammarBytes) bad_request(where, str("'", where, "' is longer than ", kMaxGrammarBytes, " bytes"));
      plan->gbnf = GbnfGrammar::choice(options);
    } else {  // json
      if (v.is_string()) {
        plan->grammar = JsonGrammar::from_schema_text(v.get<std::string>());
      } else if (v.is_object()) {
        plan->grammar = JsonGrammar::from_schema(v);
      } else {
        bad_request(where, str("'", where, "' must be a JSON schema (an object or its text)"));
      }
    }
  } catch (const ApiError&) {
    throw;
  } catch (const nlohmann::json::exception& e) {
    bad_request(where, str("'", where, "' is not valid JSON: ", e.what()));
  } catch (const Error& e) {
    bad_request(where, e.what());
  }
}

// Fills plan->grammar or plan->gbnf from whichever structured-output field the body has;
// two of them at once are refused.
void parse_structured(const ordered_json& obody, GenPlan* plan) {
  std::vector<std::pair<std::string, std::string>> found;  // field, kind
  static const std::pair<const char*, const char*> kFields[] = {
      {"grammar", "grammar"},      {"guided_grammar", "grammar"}, {"guided_regex", "regex"},
      {"guided_choice", "choice"}, {"guided_json", "json"},        {"json_schema", "json"}};
  for (const auto& [name, kind] : kFields) {
    auto it = obody.find(name);
    if (it != obody.end() && !it->is_null()) found.emplace_back(name, kind);
  }
  const ordered_json* so = nullptr;
  if (auto it = obody.find("structured_outputs"); it != obody.end() && !it->is_null()) {
    if (!it->is_object()) bad_request("structured_outputs", "'structured_outputs' must be an object");
    so = &*it;
    for (const char* kind : {"grammar", "regex", "choice", "json"}) {
      auto k = so->find(kind);
      if (k != so->end() && !k->is_null()) found.emplace_back(str("structured_outputs.", kind), kind);
    }
    if (found.empty()) bad_request("structured_outputs", "'structured_outputs' needs one of grammar, regex, choice or json");
  }
  auto rf = parse_response_format(obody);
  if (found.size() + (rf ? 1 : 0) > 1) {
    std::string names = rf ? "response_format" : "";
    for (const auto& f : found) names += (names.empty() ? "" : ", ") + f.first;
    bad_request(found.back().first, str("only one structured output constraint per request (got ", names, ")"));
  }
  if (rf) {
    plan->grammar = std::move(rf);
    return;
  }
  if (found.empty()) return;
  const auto& [name, kind] = found[0];
  const ordered_json& v = so && name.rfind("structured_outputs.", 0) == 0 ? (*so)[kind] : obody[name];
  parse_structured_field(name, kind, v, plan);
}

void parse_logprobs_chat(const json& body, GenPlan* plan) {
  plan->chat_logprobs = get_bool(body, "logprobs", false);
  const int64_t top = get_int(body, "top_logprobs", -1, 0, kMaxLogprobs);
  if (top >= 0 && !plan->chat_logprobs)
    bad_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  plan->params.logprobs = plan->chat_logprobs ? static_cast<int>(std::max<int64_t>(top, 0)) : -1;
}

}  // namespace

int32_t AdapterNames::find(const std::string& name) const {
  std::lock_guard<std::mutex> lk(mu_);
  for (const auto& [n, id] : names_)
    if (n == name) return id;
  return -1;
}

std::vector<std::pair<std::string, int32_t>> AdapterNames::list() const {
  std::lock_guard<std::mutex> lk(mu_);
  return names_;
}

void AdapterNames::add(const std::string& name, int32_t id) {
  std::lock_guard<std::mutex> lk(mu_);
  names_.emplace_back(name, id);
}

int32_t AdapterNames::remove(const std::string& name) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = std::find_if(names_.begin(), names_.end(), [&](const auto& e) { return e.first == name; });
  if (it == names_.end()) return -1;
  const int32_t id = it->second;
  names_.erase(it);
  return id;
}

int32_t check_model_field(const json& body, const ModelContext& ctx) {
  const json* m = field(body, "model");
  if (!m) return -1;
  if (!m->is_string()) bad_request("model", "'model' must be a string");
  const std::string name = m->get<std::string>();
  if (name == ctx.served_name) return -1;
  if (const int32_t id = ctx.adapters->find(name); id > 0) return id;
  std::string have = "'" + ctx.served_name + "'";
  for (const auto& [n, id] : ctx.adapters->list()) have += ", '" + n + "'";
  throw ApiError(404, str("the model '", name, "' does not exist; this server has ", have),
                 "model", "not_found_error");
}

namespace {

// continue_final_message: the prompt ends with the final message's text (what the template
// writes after it, its end-of-turn marker, is cut), as transformers' apply_chat_template does.
std::string cut_after_final_message(const std::string& rendered, const std::string& final) {
  const size_t a = final.find_first_not_of(" \t\n\r\f\v");
  const size_t b = final.find_last_not_of(" \t\n\r\f\v");
  const std::string stripped = a == std::string::npos ? "" : final.substr(a, b - a + 1);
  const std::string lstripped = a == std::string::npos ? "" : final.substr(a);
  const size_t at = stripped.empty() ? std::string::npos : rendered.rfind(stripped);
  if (at == std::string::npos)
    bad_request("continue_final_message",
                "the final message does not appear in the prompt the chat template writes");
  if (rendered.compare(at, lstripped.size(), lstripped) == 0 && lstripped == final)
    return rendered.substr(0, at + lstripped.size());
  return rendered.substr(0, at + stripped.size());
}

void set_model(const json& body, const ModelContext& ctx, GenPlan* plan) {
  plan->adapter = check_model_field(body, ctx);
  plan->model_name = plan->adapter < 0 ? ctx.served_name : body.at("model").get<std::string>();
}

}  // namespace

GenPlan parse_chat_request(const ordered_json& obody, const ModelContext& ctx) {
  if (!obody.is_object()) bad_request("", "the request body must be a JSON object");
  const json body = json::parse(obody.dump());
  GenPlan plan;
  set_model(body, ctx, &plan);
  plan.chat = true;
  plan.tool_format = ctx.tool_format;
  plan.reasoning = ctx.reasoning;
  parse_sampling(body, ctx, &plan);
  parse_logprobs_chat(body, &plan);
  ordered_json messages = parse_messages(obody);
  // Tools.
  const json* tools = field(body, "tools");
  const json* choice = field(body, "tool_choice");
  ordered_json otools;
  if (tools) {
    try {
      validate_tools(*tools, choice ? *choice : json());
    } catch (const ApiError&) {
      throw;
    } catch (const Error& e) {
      bad_request("tools", e.what());
    }
    otools = obody["tools"];
    const bool none = choice && choice->is_string() && *choice == "none";
    const bool forced = choice && (choice->is_object() || *choice == "required");
    plan.tool_mode = none ? ToolMode::kNone : forced ? ToolMode::kForced : ToolMode::kAuto;
    if (plan.tool_mode == ToolMode::kForced && ctx.reasoning == ReasoningMode::kHarmony)
      bad_request("tool_choice",
                  "forced tool calls ('required' or a named function) are not supported for "
                  "gpt-oss's harmony format yet; use 'auto'");
    if (plan.tool_mode == ToolMode::kForced) {
      plan.grammar =
          JsonGrammar::from_schema(forced_call_schema(otools, obody["tool_choice"], ctx.tool_format));
      plan.forced_prefix = forced_call_prefix(ctx.tool_format);
    }
  } else if (choice && !(choice->is_string() && *choice == "none")) {
    bad_request("tool_choice", "'tool_choice' needs 'tools'");
  }
  try {  // OpenAI tool-call forms to what templates expect (also without tools: history)
    messages = prepare_tool_messages(messages, otools.is_null() ? ordered_json::array() : otools,
                                     ctx.tmpl_source, ctx.tool_format);
  } catch (const Error& e) {
    bad_request("messages", e.what());
  }
  {
    GenPlan structured;
    parse_structured(obody, &structured);
    if ((structured.grammar || structured.gbnf) && plan.grammar)
      bad_request("tool_choice", "structured output cannot be combined with a forced tool call");
    if (structured.grammar) plan.grammar = std::move(structured.grammar);
    plan.gbnf = std::move(structured.gbnf);
  }
  // JSON output (response_format, JSON schemas) under a reasoning parser comes after the
  // thoughts: the constraint waits for the block's end marker. A forced call has none (the
  // prompt ends at the call's JSON); a GBNF grammar covers the whole output, a <think> block
  // included when it writes one.
  if (plan.grammar &&
      (plan.tool_mode == ToolMode::kForced || !reasoning_end_marker(plan.reasoning)))
    plan.reasoning = ReasoningMode::kNone;
  if (plan.grammar && plan.reasoning != ReasoningMode::kNone)
    plan.constraint_after = *reasoning_end_marker(plan.reasoning);
  // Harmony's channel markers are special tokens: the splitter needs them in the text.
  if (plan.reasoning == ReasoningMode::kHarmony) plan.params.skip_special_tokens = false;
  ordered_json c = ordered_json::object();
  c["messages"] = messages;
  if (!otools.is_null() && !otools.empty() && template_supports_tools(ctx.tmpl_source))
    c["tools"] = otools;
  const bool cont = get_bool(body, "continue_final_message", false);
  if (cont && get_bool(body, "add_generation_prompt", false))
    bad_request("continue_final_message",
                "'continue_final_message' and 'add_generation_prompt' cannot both be true");
  if (cont && (messages.empty() || !messages.back().contains("content") ||
               !messages.back()["content"].is_string()))
    bad_request("continue_final_message", "the final message must have text content to continue");
  c["add_generation_prompt"] = !cont && get_bool(body, "add_generation_prompt", true);
  c["bos_token"] = ctx.tok->bos_token();
  c["eos_token"] = ctx.tok->eos_token();
  // OpenAI's reasoning_effort, which gpt-oss's template reads ("Reasoning: low").
  if (const json* effort = field(body, "reasoning_effort")) {
    if (!effort->is_string() || (*effort != "minimal" && *effort != "low" && *effort != "medium" &&
                                 *effort != "high"))
      bad_request("reasoning_effort",
                  "'reasoning_effort' must be one of 'minimal', 'low', 'medium', 'high'");
    c["reasoning_effort"] = effort->get<std::string>();
  }
  if (const json* kw = field(body, "chat_template_kwargs")) {
    if (!kw->is_object()) bad_request("chat_template_kwargs", "'chat_template_kwargs' must be an object");
    for (const auto& [k, v] : ordered_json::parse(kw->dump()).items())
      if (!c.contains(k)) c[k] = v;
  }
  PromptPlan pp;
  try {
    pp.text = ctx.tmpl->render(c);
  } catch (const Error& e) {
    bad_request("messages", str("the chat template rejected the messages: ", e.what()));
  }
  if (cont) pp.text = cut_after_final_message(pp.text, messages.back()["content"]);
  pp.text += plan.forced_prefix;
  if (!plan.constraint_after.empty())
    plan.constraint_armed = prompt_closes_reasoning(pp.text, plan.reasoning);
  pp.ids = ctx.tok->encode(pp.text, /*add_special=*/false, /*parse_special=*/true);
  if (pp.ids.empty()) bad_request("messages", "the rendered prompt is empty");
  plan.prompts.push_back(std::move(pp));
  set_max_tokens(body, ctx, &plan);
  return plan;
}

namespace {

std::vector<int32_t> token_list(const json& a, const ModelContext& ctx) {
  std::vector<int32_t> ids;
  for (const json& t : a) {
    if (!t.is_number_integer()) bad_request("prompt", "token prompts must be arrays of integers");
    const int64_t id = t.get<int64_t>();
    if (id < 0 || id >= ctx.vocab_size)
      bad_request("prompt", str("token id ", id, " is outside the vocabulary [0, ", ctx.vocab_size, ")"));
    ids.push_back(static_cast<int32_t>(id));
  }
  return ids;
}

}  // namespace

GenPlan parse_completion_request(const ordered_json& obody, const ModelContext& ctx) {
  if (!obody.is_object()) bad_request("", "the request body must be a JSON object");
  const json body = json::parse(obody.dump());
  GenPlan plan;
  set_model(body, ctx, &plan);
  parse_sampling(body, ctx, &plan);
  plan.completion_logprobs = static_cast<int>(get_int(body, "logprobs", -1, 0, 5));
  plan.params.logprobs = plan.completion_logprobs;
  plan.echo = get_bool(body, "echo", false);
  // echo with logprobs: the prompt tokens' logprobs come first (OpenAI's legacy completions).
  if (plan.echo && plan.completion_logprobs >= 0)
    plan.params.prompt_logprobs = std::max(plan.params.prompt_logprobs, plan.completion_logprobs);
  if (field(body, "suffix")) bad_request("suffix", "'suffix' is not supported");
  const json* p = field(body, "prompt");
  if (!p) bad_request("prompt", "'prompt' is required");
  auto add_text = [&](const std::string& s) {
    PromptPlan pp;
    pp.text = s;
    pp.ids = ctx.tok->encode(s, /*add_special=*/true, /*parse_special=*/true);
    plan.prompts.push_back(std::move(pp));
  };
  if (p->is_string()) {
    add_text(p->get<std::string>());
  } else if (p->is_array() && !p->empty() && (*p)[0].is_number_integer()) {
    PromptPlan pp;
    pp.ids = token_list(*p, ctx);
    pp.text = ctx.tok->decode(pp.ids);
    plan.prompts.push_back(std::move(pp));
  } else if (p->is_array() && !p->empty()) {
    if (p->size() > kMaxCompletionPrompts)
      bad_request("prompt", str("at most ", kMaxCompletionPrompts, " prompts per request"));
    for (const json& e : *p) {
      if (e.is_string()) {
        add_text(e.get<std::string>());
      } else if (e.is_array()) {
        PromptPlan pp;
        pp.ids = token_list(e, ctx);
        pp.text = ctx.tok->decode(pp.ids);
        plan.prompts.push_back(std::move(pp));
      } else {
        bad_request("prompt", "'prompt' must be a string, an array of strings or token arrays");
      }
    }
  } else {
    bad_request("prompt", "'prompt' must be a non-empty string or array");
  }
  for (const auto& pp : plan.prompts)
    if (pp.ids.empty()) bad_request("prompt", "the prompt is empty");
  if (plan.prompts.size() * static_cast<size_t>(plan.n) > static_cast<size_t>(ctx.max_n) * 4)
    bad_request("n", "too many choices in one request (prompts x n)");
  parse_structured(obody, &plan);
  set_max_tokens(body, ctx, &plan);
  return plan;
}

std::shared_ptr<TokenConstraint> make_constraint(const GenPlan& plan, const ModelContext& ctx) {
  if (!plan.grammar && !plan.gbnf) return nullptr;
  auto vocab = ctx.constraint_vocab ? ctx.constraint_vocab() : nullptr;
  if (!vocab) throw ApiError(500, "structured output is unavailable for this tokenizer");
  if (plan.gbnf) return std::make_shared<GbnfConstraint>(plan.gbnf, vocab, ctx.tok->eos_ids());
  auto json = std::make_shared<JsonConstraint>(plan.grammar, vocab, ctx.tok->eos_ids());
  if (plan.constraint_after.empty()) return json;
  return std::make_shared<DeferredConstraint>(
      json, plan.constraint_after,
      [tok = ctx.tok](int32_t id) { return tok->token_bytes(id, /*skip_special=*/false); },
      plan.constraint_armed);
}

}  // namespace jinx::server
