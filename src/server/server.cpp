#include "server/server.h"

#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include <httplib.h>

#include "core/log.h"
#include "model/model.h"
#include "server/anthropic_api.h"
#include "server/embeddings.h"
#include "server/openai_response.h"
#include "server/responses_api.h"
#include "server/rag_api.h"
#include "structured/json_constraint.h"

namespace jinx::server {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string dump(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

// The Anthropic routes answer errors in Anthropic's shape, every other route in OpenAI's.
bool anthropic_route(const std::string& path) {
  return path == "/v1/messages" || path.rfind("/v1/messages/", 0) == 0;
}

void send_error(httplib::Response& res, const ApiError& e, const std::string& path) {
  send_json(res, e.status,
            anthropic_route(path) ? anthropic_error_body(e.status, e.what(), e.param)
                                  : error_body(e.status, e.what(), e.param, e.type));
}

// Updates of every choice of one HTTP request, handed from the engine thread.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::pair<int, StreamUpdate>> q;
  int n_open = 0;  // choices not finished yet

  void push(int choice, const StreamUpdate& u) {
    {
      std::lock_guard<std::mutex> lk(mu);
      q.emplace_back(choice, u);
      if (u.finished) --n_open;
    }
    cv.notify_all();
  }
  // Waits up to `timeout` for updates; returns them (maybe none).
  std::deque<std::pair<int, StreamUpdate>> take(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk(mu);
    cv.wait_for(lk, timeout, [&] { return !q.empty(); });
    std::deque<std::pair<int, StreamUpdate>> out;
    out.swap(q);
    return out;
  }
};

struct ServerState {
  ServeOptions opt;
  std::atomic<bool> ready{false};
  std::atomic<bool> load_failed{false};
  std::string load_error;
  std::unique_ptr<AsyncEngine> engine;
  ModelContext ctx;
  std::once_flag vocab_once;
  std::shared_ptr<const ConstraintVocab> vocab;
  int64_t created = 0;
  // /v1/embeddings: the pooling (--pooling, else what the model declares, else mean), or why
  // there is none.
  Pooling pooling = Pooling::kMean;
  std::string pooling_error;
  // --rag-db: the knowledge base; its Store is one SQLite connection, so one user at a time.
  std::unique_ptr<rag::KnowledgeBase> kb;
  std::mutex kb_mu;
  // Runtime LoRA: one load or unload at a time (a name is checked and taken under it).
  std::mutex lora_mu;
};

// The choices of one request, submitted; cancels them all when dropped unfinished.
struct Job {
  ServerState* st = nullptr;
  GenPlan plan;
  std::shared_ptr<Channel> ch = std::make_shared<Channel>();
  std::vector<uint64_t> handles;
  std::vector<ChoiceState> choices;
  ResponseMeta meta;
  json rag_sources;  // the passages a "rag" chat request was answered from (null: none)

  void cancel_all() {
    for (uint64_t h : handles) st->engine->cancel(h);
  }
  ~Job() {
    bool open;
    {
      std::lock_guard<std::mutex> lk(ch->mu);
      open = ch->n_open > 0;
    }
    if (open) cancel_all();
  }
};

void submit_job(Job& job) {
  ServerState& st = *job.st;
  const int n = job.plan.n;
  const int total = static_cast<int>(job.plan.prompts.size()) * n;
  job.choices.resize(total);
  job.ch->n_open = total;
  try {
    for (int i = 0; i < total; ++i) {
      ChoiceState& c = job.choices[i];
      c.index = i;
      c.prompt = i / n;
      Request r;
      r.prompt = job.plan.prompts[c.prompt].ids;
      r.params = job.plan.params;
      r.adapter = job.plan.adapter;
      r.priority = job.plan.priority;
      if (r.params.seed) r.params.seed = *r.params.seed + static_cast<uint64_t>(i);
      r.constraint = make_constraint(job.plan, st.ctx);
      std::weak_ptr<Channel> wch = job.ch;
      r.on_update = [wch, i](const StreamUpdate& u) {
        if (auto ch = wch.lock()) ch->push(i, u);
      };
      job.handles.push_back(st.engine->submit(std::move(r)));
    }
  } catch (const QueueFull& e) {
    job.cancel_all();
    job.ch->n_open = 0;
    throw ApiError(429, e.what(), "", "server_busy");
  } catch (const ApiError&) {
    job.cancel_all();
    job.ch->n_open = 0;
    throw;
  } catch (const Error& e) {
    job.cancel_all();
    job.ch->n_open = 0;
    bad_request("", e.what());
  }
}

nlohmann::ordered_json parse_body(const httplib::Request& req) {
  auto body = nlohmann::ordered_json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) bad_request("", "the request body is not valid JSON");
  if (!body.is_object()) bad_request("", "the request body must be a JSON object");
  return body;
}

void require_ready(ServerState& st) {
  if (st.load_failed) throw ApiError(503, "the model failed to load: " + st.load_error);
  if (!st.ready) throw ApiError(503, "the model is still loading");
  if (st.engine->metrics().failed) throw ApiError(503, "the engine stopped after an internal error");
}

// Folds every update of the job's choices in until all of them finished.
void wait_all(Job& job) {
  int open = static_cast<int>(job.choices.size());
  while (open > 0) {
    for (auto& [i, u] : job.ch->take(std::chrono::milliseconds(500))) {
      apply_update(job.choices[i], u);
      if (u.finished) --open;
    }
  }
}

// Streams until every choice finished: each update is folded into its choice and handed to
// `emit`, which writes what it gives (false: the client went away). While nothing comes, a
// comment line now and then notices a client that left, e.g. while it waits in the queue.
// false (the job cancelled) when the client went away.
bool pump_stream(Job& job, httplib::DataSink& sink,
                 const std::function<bool(ChoiceState&, const StreamUpdate&)>& emit) {
  int open = static_cast<int>(job.choices.size());
  auto last_write = Clock::now();
  while (open > 0) {
    auto updates = job.ch->take(std::chrono::milliseconds(200));
    for (auto& [i, u] : updates) {
      ChoiceState& c = job.choices[i];
      apply_update(c, u);
      if (u.finished) --open;
      if (!emit(c, u)) {
        job.cancel_all();
        return false;
      }
      last_write = Clock::now();
    }
    if (updates.empty() && Clock::now() - last_write > std::chrono::seconds(1)) {
      static const char kPing[] = ": ping\n\n";
      if (!sink.write(kPing, sizeof(kPing) - 1) || !sink.is_writable()) {
        job.cancel_all();
        return false;
      }
      last_write = Clock::now();
    }
  }
  return true;
}

void run_blocking(Job& job, httplib::Response& res) {
  wait_all(job);
  const Tokenizer& tok = *job.st->ctx.tok;
  json out = job.plan.chat ? chat_response(job.meta, job.plan, job.choices, tok)
                           : completion_response(job.meta, job.plan, job.choices, tok);
  if (!job.rag_sources.is_null()) out["rag_sources"] = job.rag_sources;
  send_json(res, 200, out);
}

bool write_event(httplib::DataSink& sink, const std::string& data) {
  const std::string ev = "data: " + data + "\n\n";
  return sink.write(ev.data(), ev.size());
}

// Events that name their type (Responses, Anthropic): `event: TYPE` + `data: JSON`.
bool write_typed_events(httplib::DataSink& sink, const std::vector<json>& events) {
  for (const json& e : events) {
    const std::string ev =
        "event: " + e["type"].get<std::string>() + "\ndata: " + dump(e) + "\n\n";
    if (!sink.write(ev.data(), ev.size())) return false;
  }
  return true;
}

// Streams SSE until every choice finished or the client went away (then cancels).
void run_streaming(std::shared_ptr<Job> job, httplib::Response& res) {
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  res.set_chunked_content_provider(
      "text/event-stream",
      [job](size_t, httplib::DataSink& sink) {
        const Tokenizer& tok = *job->st->ctx.tok;
        if (!job->rag_sources.is_null()) {  // first, in a chunk without choices
          json r = {{"id", job->meta.id}, {"object", "chat.completion.chunk"},
                    {"created", job->meta.created}, {"model", job->meta.model},
                    {"choices", json::array()}, {"rag_sources", job->rag_sources}};
          job->rag_sources = nullptr;
          if (!write_event(sink, dump(r))) {
            job->cancel_all();
            return false;
          }
        }
        const bool stayed = pump_stream(*job, sink, [&](ChoiceState& c, const StreamUpdate& u) {
          auto chunks = job->plan.chat ? chat_chunks(job->meta, job->plan, c, u, tok)
                                       : completion_chunks(job->meta, job->plan, c, u, tok);
          for (const json& j : chunks)
            if (!write_event(sink, dump(j))) return false;
          return true;
        });
        if (!stayed) return false;
        if (job->plan.include_usage) {
          json u = {{"id", job->meta.id},
                    {"object", job->plan.chat ? "chat.completion.chunk" : "text_completion"},
                    {"created", job->meta.created},
                    {"model", job->meta.model},
                    {"choices", json::array()},
                    {"usage", usage_json(job->plan, job->choices)}};
          if (!write_event(sink, dump(u))) return false;
        }
        write_event(sink, "[DONE]");
        sink.done();
        return true;
      },
      [job](bool success) {
        if (!success) job->cancel_all();
      });
}

std::vector<rag::Passage> rag_search(ServerState& st, const RagSearch& s) {
  if (!st.kb) throw ApiError(404, "no knowledge base: start jinx serve with --rag-db FILE");
  std::lock_guard<std::mutex> lk(st.kb_mu);
  return st.kb->search(s.query, s.k, s.mode);
}

void handle_rag_search(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  require_ready(st);
  const json body = json::parse(parse_body(req).dump());
  const std::vector<rag::Passage> passages = rag_search(st, parse_rag_search(body));
  send_json(res, 200, {{"object", "list"}, {"data", passages_json(passages)}});
}

void handle_rag_document(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  require_ready(st);
  const json body = json::parse(parse_body(req).dump());
  const auto [source, text] = parse_rag_document(body);
  if (!st.kb) throw ApiError(404, "no knowledge base: start jinx serve with --rag-db FILE");
  std::lock_guard<std::mutex> lk(st.kb_mu);
  rag::IndexReport r;
  const bool added = st.kb->add_text(source, text, &r);
  send_json(res, 200, {{"source", source}, {"added", added}, {"chunks", r.chunks},
                       {"tokens", r.tokens}, {"documents", st.kb->n_documents()},
                       {"total_chunks", st.kb->n_chunks()}});
}

void handle_generate(ServerState& st, const httplib::Request& req, httplib::Response& res,
                     bool chat) {
  require_ready(st);
  auto body = parse_body(req);
  auto job = std::make_shared<Job>();
  job->st = &st;
  if (std::optional<RagSearch> rs = chat ? take_chat_rag(body) : std::nullopt) {
    const std::vector<rag::Passage> passages = rag_search(st, *rs);
    apply_chat_rag(body, passages);
    job->rag_sources = passages_json(passages);
  }
  job->plan = chat ? parse_chat_request(body, st.ctx) : parse_completion_request(body, st.ctx);
  job->meta = {new_response_id(chat ? "chatcmpl-" : "cmpl-"),
               static_cast<int64_t>(std::time(nullptr)), job->plan.model_name};
  submit_job(*job);
  if (job->plan.stream) {
    run_streaming(job, res);
  } else {
    run_blocking(*job, res);
  }
}

// POST /v1/responses: the request as the chat request it means, its result as a Response.
void handle_responses(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  require_ready(st);
  auto rq = std::make_shared<const ResponsesRequest>(responses_to_chat(parse_body(req)));
  auto job = std::make_shared<Job>();
  job->st = &st;
  job->plan = parse_chat_request(rq->chat, st.ctx);
  const int64_t created = static_cast<int64_t>(std::time(nullptr));
  job->meta = {new_response_id("chatcmpl-"), created, job->plan.model_name};
  const std::string id = new_response_id("resp_");
  submit_job(*job);
  if (!rq->stream) {
    wait_all(*job);
    const json chat = chat_response(job->meta, job->plan, job->choices, *st.ctx.tok);
    send_json(res, 200, response_object(chat, *rq, id, created));
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto stream = std::make_shared<ResponsesStream>(*rq, id, created, job->plan.model_name);
  res.set_chunked_content_provider(
      "text/event-stream",
      [job, rq, stream](size_t, httplib::DataSink& sink) {
        auto send = [&](const std::vector<json>& events) {
          return write_typed_events(sink, events);
        };
        if (!send(stream->start())) {
          job->cancel_all();
          return false;
        }
        const Tokenizer& tok = *job->st->ctx.tok;
        const bool stayed = pump_stream(*job, sink, [&](ChoiceState& c, const StreamUpdate& u) {
          for (const json& chunk : chat_chunks(job->meta, job->plan, c, u, tok))
            if (!send(stream->on_chunk(chunk))) return false;
          return true;
        });
        if (!stayed) return false;
        send(stream->finish(usage_json(job->plan, job->choices)));
        sink.done();
        return true;
      },
      [job](bool success) {
        if (!success) job->cancel_all();
      });
}

// Which of the request's stop sequences ended its choice (null: none did). The engine says
// only "stop"; the choice's tokens, decoded, go on past its text with the stop string that cut
// it (the detokenizer's deltas add up to that decoding), so the match is exact.
json stop_sequence_of(const Job& job, const AnthropicRequest& rq) {
  const ChoiceState& c = job.choices.at(0);
  if (c.finish_reason != "stop" || rq.stop_sequences.empty()) return nullptr;
  const std::string decoded =
      job.st->ctx.tok->decode(c.token_ids, job.plan.params.skip_special_tokens);
  return matched_stop_sequence(c.text, decoded, rq.stop_sequences);
}

// POST /v1/messages: the request as the chat request it means, its result as a Message.
void handle_messages(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  require_ready(st);
  auto rq = std::make_shared<const AnthropicRequest>(anthropic_to_chat(parse_body(req)));
  auto job = std::make_shared<Job>();
  job->st = &st;
  job->plan = parse_chat_request(rq->chat, st.ctx);
  job->meta = {new_response_id("chatcmpl-"), static_cast<int64_t>(std::time(nullptr)),
               job->plan.model_name};
  const std::string id = new_response_id("msg_");
  submit_job(*job);
  if (!rq->stream) {
    wait_all(*job);
    if (job->choices.at(0).finish_reason == "abort")
      throw ApiError(503, "the request was aborted: the server is stopping or its engine failed");
    const json chat = chat_response(job->meta, job->plan, job->choices, *st.ctx.tok);
    send_json(res, 200, message_object(chat, id, stop_sequence_of(*job, *rq)));
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  auto stream = std::make_shared<AnthropicStream>(
      id, job->plan.model_name, static_cast<int64_t>(job->plan.prompts.at(0).ids.size()));
  res.set_chunked_content_provider(
      "text/event-stream",
      [job, rq, stream](size_t, httplib::DataSink& sink) {
        if (!write_typed_events(sink, {stream->start()})) {
          job->cancel_all();
          return false;
        }
        const Tokenizer& tok = *job->st->ctx.tok;
        const bool stayed = pump_stream(*job, sink, [&](ChoiceState& c, const StreamUpdate& u) {
          for (const json& chunk : chat_chunks(job->meta, job->plan, c, u, tok))
            if (!write_typed_events(sink, stream->on_chunk(chunk))) return false;
          return true;
        });
        if (!stayed) return false;
        write_typed_events(sink, stream->finish(job->choices.at(0).n_generated,
                                                stop_sequence_of(*job, *rq)));
        sink.done();
        return true;
      },
      [job](bool success) {
        if (!success) job->cancel_all();
      });
}

// POST /v1/messages/count_tokens: the prompt's length as the chat path renders it.
void handle_count_tokens(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  require_ready(st);
  const AnthropicRequest rq = anthropic_to_chat(parse_body(req), /*count_only=*/true);
  const GenPlan plan = parse_chat_request(rq.chat, st.ctx);
  send_json(res, 200, {{"input_tokens", plan.prompts.at(0).ids.size()}});
}

// A non-empty string field of a runtime-LoRA body.
std::string lora_field(const nlohmann::ordered_json& body, const char* name) {
  auto it = body.find(name);
  if (it == body.end() || !it->is_string() || it->get<std::string>().empty())
    bad_request(name, str("'", name, "' must be a non-empty string"));
  return it->get<std::string>();
}

// POST /v1/load_lora_adapter {"lora_name", "lora_path"} (vLLM's): the adapter is read by the
// engine thread between steps; requests may name it once this answers.
void handle_load_lora(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  require_ready(st);
  const auto body = parse_body(req);
  const std::string name = lora_field(body, "lora_name");
  const std::string path = lora_field(body, "lora_path");
  std::lock_guard<std::mutex> lk(st.lora_mu);
  if (name == st.ctx.served_name || st.ctx.adapters->find(name) > 0)
    throw ApiError(400, str("The lora adapter '", name, "' has already been loaded."), "lora_name");
  int32_t id = 0;
  try {
    id = st.engine->run_between_steps([path](LLM& llm) { return llm.load_adapter(path); }).get();
  } catch (const std::exception& e) {
    throw ApiError(400, str("cannot load LoRA adapter '", name, "': ", e.what()), "lora_path");
  }
  st.ctx.adapters->add(name, id);
  log_info("server: loaded LoRA adapter '", name, "' from ", path, " (id ", id, ")");
  res.set_content(str("Success: LoRA adapter '", name, "' added successfully."), "text/plain");
}

// POST /v1/unload_lora_adapter {"lora_name"}: new requests naming it get 404 at once; those
// already queued or running finish with it, and its weights are freed after them.
void handle_unload_lora(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  require_ready(st);
  const auto body = parse_body(req);
  const std::string name = lora_field(body, "lora_name");
  std::lock_guard<std::mutex> lk(st.lora_mu);
  const int32_t id = st.ctx.adapters->remove(name);
  if (id < 0)
    throw ApiError(404, str("The lora adapter '", name, "' cannot be found."), "lora_name");
  try {
    st.engine->run_between_steps([id](LLM& llm) {
      llm.unload_adapter(id);
      return id;
    }).get();
  } catch (const std::exception& e) {
    throw ApiError(500, str("cannot unload LoRA adapter '", name, "': ", e.what()));
  }
  log_info("server: unloaded LoRA adapter '", name, "' (id ", id, ")");
  res.set_content(str("Success: LoRA adapter '", name, "' removed successfully."), "text/plain");
}

// The served model, then its LoRA adapters (with "parent", as vLLM lists them).
json models_json(const ServerState& st) {
  json data = json::array({{{"id", st.ctx.served_name},
                            {"object", "model"},
                            {"created", st.created},
                            {"owned_by", "jinx"},
                            {"max_model_len", st.ctx.max_model_len}}});
  for (const auto& [name, id] : st.ctx.adapters->list())
    data.push_back({{"id", name},
                    {"object", "model"},
                    {"created", st.created},
                    {"owned_by", "jinx"},
                    {"parent", st.ctx.served_name},
                    {"max_model_len", st.ctx.max_model_len}});
  return {{"object", "list"}, {"data", data}};
}

void handle_tokenize(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  require_ready(st);
  const auto body = parse_body(req);
  check_model_field(json::parse(body.dump()), st.ctx);
  std::vector<int32_t> ids;
  if (body.contains("messages")) {
    auto b = body;
    b.erase("max_tokens");
    b.erase("max_completion_tokens");
    ids = parse_chat_request(b, st.ctx).prompts.at(0).ids;
  } else {
    if (!body.contains("prompt") || !body["prompt"].is_string())
      bad_request("prompt", "'prompt' must be a string (or send 'messages')");
    bool add = true;
    if (body.contains("add_special_tokens")) {
      if (!body["add_special_tokens"].is_boolean())
        bad_request("add_special_tokens", "'add_special_tokens' must be a boolean");
      add = body["add_special_tokens"];
    }
    ids = st.ctx.tok->encode(body["prompt"].get<std::string>(), add, true);
  }
  send_json(res, 200, {{"tokens", ids}, {"count", ids.size()},
                       {"max_model_len", st.ctx.max_model_len}});
}

void handle_embeddings(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  require_ready(st);
  const json body = json::parse(parse_body(req).dump());
  if (check_model_field(body, st.ctx) >= 0)
    throw ApiError(400, "embeddings with a LoRA adapter are not supported; ask the base model",
                   "model");
  if (!st.pooling_error.empty()) throw ApiError(400, st.pooling_error);
  const int64_t H = st.engine->llm().model().config().hidden_size;
  EmbeddingPlan plan = parse_embedding_request(body, st.ctx, H);
  std::future<std::vector<float>> f;
  try {
    f = st.engine->embed(plan.inputs, st.pooling, /*normalize=*/true);
  } catch (const QueueFull& e) {
    throw ApiError(429, e.what());
  }
  const std::vector<float> vectors = f.get();  // rethrows the job's jinx::Error
  send_json(res, 200, embedding_response(plan, vectors, H, st.ctx.served_name));
}

void handle_detokenize(ServerState& st, const httplib::Request& req, httplib::Response& res) {
  require_ready(st);
  const json body = json::parse(parse_body(req).dump());
  check_model_field(body, st.ctx);
  if (!body.contains("tokens") || !body["tokens"].is_array())
    bad_request("tokens", "'tokens' must be an array of token ids");
  std::vector<int32_t> ids;
  for (const json& t : body["tokens"]) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= st.ctx.vocab_size)
      bad_request("tokens", str("token ids must be integers in [0, ", st.ctx.vocab_size, ")"));
    ids.push_back(t.get<int32_t>());
  }
  send_json(res, 200, {{"prompt", st.ctx.tok->decode(ids)}});
}

// Wraps a handler: ApiError and jinx::Error become error bodies (OpenAI-shaped; Anthropic's
// shape on its routes).
template <typename F>
httplib::Server::Handler guarded(F f) {
  return [f](const httplib::Request& req, httplib::Response& res) {
    try {
      f(req, res);
    } catch (const ApiError& e) {
      send_error(res, e, req.path);
    } catch (const Error& e) {
      send_error(res, ApiError(400, e.what()), req.path);
    } catch (const std::exception& e) {
      log_warn("server: internal error: ", e.what());
      send_error(res, ApiError(500, str("internal error: ", e.what())), req.path);
    }
  };
}

// The knowledge base embeds with the served model, through the engine thread.
void open_knowledge_base(ServerState& st, int64_t hidden) {
  if (!st.pooling_error.empty()) fail(st.pooling_error);
  rag::Embedder e;
  e.model_id = rag::embedder_id(st.opt.model_path, st.pooling, hidden);
  e.dim = hidden;
  e.tok = st.ctx.tok.get();
  AsyncEngine* eng = st.engine.get();
  const Pooling pooling = st.pooling;
  e.embed = [eng, pooling, hidden](std::span<const std::vector<int32_t>> seqs, float* out) {
    const std::vector<float> v =
        eng->embed(std::vector<std::vector<int32_t>>(seqs.begin(), seqs.end()), pooling, true)
            .get();
    std::copy(v.begin(), v.end(), out);
  };
  st.kb = std::make_unique<rag::KnowledgeBase>(st.opt.rag_db, std::move(e), rag::RagOptions{});
  log_info("server: knowledge base ", st.opt.rag_db, " (", st.kb->n_documents(), " documents, ",
           st.kb->n_chunks(), " chunks)");
}

void load_model(ServerState& st) {
  try {
    auto llm = std::make_unique<LLM>(st.opt.model_path, st.opt.engine);
    ModelContext& c = st.ctx;
    c.tok = std::shared_ptr<const Tokenizer>(llm->tokenizer_ptr());
    c.tmpl_source = c.tok->chat_template().empty() ? fallback_chat_template()
                                                    : c.tok->chat_template();
    c.tmpl = std::make_shared<ChatTemplate>(c.tmpl_source);
    c.tool_format = detect_tool_format(c.tmpl_source);
    c.reasoning = st.opt.reasoning_parser == "auto" ? detect_reasoning_mode(c.tmpl_source)
                                                    : parse_reasoning_mode(st.opt.reasoning_parser);
    c.vocab_size = static_cast<int32_t>(llm->model().config().vocab_size);
    c.max_model_len = llm->max_model_len();
    c.max_n = st.opt.max_n;
    c.priority_scheduling = st.opt.engine.scheduling_policy == SchedulingPolicy::kPriority;
    const ModelConfig& mc = llm->model().config();
    st.pooling = mc.pooling;
    if (!st.opt.pooling.empty()) {
      st.pooling = pooling_from_name(st.opt.pooling);
    } else if (!mc.pooling_unsupported.empty()) {
      st.pooling_error = str("the model declares pooling \"", mc.pooling_unsupported,
                             "\", which Jinx does not do; start jinx serve with --pooling "
                             "mean|cls|last to serve embeddings");
    }
    c.constraint_vocab = [&st]() {
      std::call_once(st.vocab_once, [&st] {
        st.vocab = std::make_shared<const ConstraintVocab>(*st.ctx.tok);
      });
      return st.vocab;
    };
    const int64_t hidden = mc.hidden_size;
    st.engine = std::make_unique<AsyncEngine>(
        std::move(llm),
        AsyncOptions{.max_queue = st.opt.max_queue, .max_running = st.opt.engine.max_num_seqs});
    if (!st.opt.rag_db.empty()) open_knowledge_base(st, hidden);
    st.ready = true;
    log_info("server: model ready (", c.served_name, ", context ", c.max_model_len, " tokens)");
  } catch (const std::exception& e) {
    st.load_error = e.what();
    st.load_failed = true;
  }
}

// What the user sees at the default log level (warnings only): where to point the browser.
void print_line(const std::string& line) {
  std::fprintf(stderr, "jinx serve: %s\n", line.c_str());
  std::fflush(stderr);
}

std::string default_name(const std::string& path) {
  std::filesystem::path p(path);
  std::string name = p.filename().string();
  if (name.empty()) name = p.parent_path().filename().string();
  if (p.extension() == ".gguf") name = p.stem().string();
  return name.empty() ? "model" : name;
}

void add_routes(httplib::Server& svr, ServerState& st) {
  svr.Post("/v1/chat/completions", guarded([&st](const auto& req, auto& res) {
             handle_generate(st, req, res, true);
           }));
  svr.Post("/v1/completions", guarded([&st](const auto& req, auto& res) {
             handle_generate(st, req, res, false);
           }));
  svr.Post("/v1/responses", guarded([&st](const auto& req, auto& res) {
    handle_responses(st, req, res);
  }));
  svr.Post("/v1/messages",
           guarded([&st](const auto& req, auto& res) { handle_messages(st, req, res); }));
  svr.Post("/v1/messages/count_tokens",
           guarded([&st](const auto& req, auto& res) { handle_count_tokens(st, req, res); }));
  svr.Get("/v1/models", guarded([&st](const auto&, auto& res) {
            require_ready(st);
            send_json(res, 200, models_json(st));
          }));
  svr.Get("/health", [&st](const auto&, auto& res) {
    if (st.ready && !st.engine->metrics().failed) {
      send_json(res, 200, {{"status", "ok"}});
    } else {
      // Not ready: still loading, or the load (or later the engine thread) failed.
      const bool failed = st.load_failed || st.ready;
      send_json(res, 503, {{"status", failed ? "failed" : "loading"}});
    }
  });
  svr.Get("/metrics", [&st](const auto&, auto& res) {
    EngineMetrics m;
    if (st.ready) m = st.engine->metrics();
    res.set_content(metrics_text(m, st.ctx.served_name), "text/plain; version=0.0.4");
  });
  svr.Post("/v1/embeddings",
           guarded([&st](const auto& req, auto& res) { handle_embeddings(st, req, res); }));
  svr.Post("/v1/rag/search",
           guarded([&st](const auto& req, auto& res) { handle_rag_search(st, req, res); }));
  svr.Post("/v1/rag/documents",
           guarded([&st](const auto& req, auto& res) { handle_rag_document(st, req, res); }));
  if (st.opt.allow_runtime_lora) {
    svr.Post("/v1/load_lora_adapter",
             guarded([&st](const auto& req, auto& res) { handle_load_lora(st, req, res); }));
    svr.Post("/v1/unload_lora_adapter",
             guarded([&st](const auto& req, auto& res) { handle_unload_lora(st, req, res); }));
  }
  svr.Post("/tokenize", guarded([&st](const auto& req, auto& res) { handle_tokenize(st, req, res); }));
  svr.Post("/detokenize",
           guarded([&st](const auto& req, auto& res) { handle_detokenize(st, req, res); }));
  svr.Get("/", [](const auto&, auto& res) {
    res.set_content(chat_page_html(), "text/html; charset=utf-8");
  });
}

void add_policies(httplib::Server& svr, ServerState& st) {
  svr.set_pre_routing_handler([&st](const auto& req, auto& res) {
    if (req.method == "OPTIONS") {  // CORS preflight
      res.set_header("Access-Control-Allow-Headers",
                     "Authorization, Content-Type, x-api-key, anthropic-version, anthropic-beta");
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      res.status = 204;
      return httplib::Server::HandlerResponse::Handled;
    }
    const bool protected_path = req.path.rfind("/v1/", 0) == 0 || req.path == "/tokenize" ||
                                req.path == "/detokenize";
    // The key as OpenAI clients send it, or as Anthropic's do (x-api-key).
    const bool key_ok = req.get_header_value("Authorization") == "Bearer " + st.opt.api_key ||
                        req.get_header_value("x-api-key") == st.opt.api_key;
    if (!st.opt.api_key.empty() && protected_path && !key_ok) {
      send_error(res,
                 ApiError(401, "missing or wrong API key (send Authorization: Bearer KEY or "
                               "x-api-key: KEY)", "", "authentication_error"),
                 req.path);
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  svr.set_error_handler([](const auto& req, auto& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      send_error(res, ApiError(404, str("no route ", req.method, " ", req.path)), req.path);
    } else if (res.status == 413) {
      send_error(res, ApiError(413, "the request body is too large"), req.path);
    } else if (res.status == 405) {
      send_error(res, ApiError(405, str("method ", req.method, " not allowed here")), req.path);
    } else {
      send_error(res, ApiError(res.status, "bad request"), req.path);
    }
  });
  svr.set_default_headers({{"Access-Control-Allow-Origin", "*"}});
}

// Binds the listening socket, fixing two defaults of cpp-httplib 0.11:
// - it sets SO_REUSEPORT, so a second server on a taken port binds too and the kernel splits
//   the connections between the two; only SO_REUSEADDR here (restart while old connections
//   linger in TIME_WAIT), so a taken port fails plainly;
// - its listen backlog is 5, compiled into the library: a burst of connections (a client
//   opening 32 streams at once) overflows it, and overflowed connections stall or reset.
//   listen() again on the bound socket raises the backlog.
bool bind_with_backlog(httplib::Server& svr, const ServeOptions& options) {
  int listen_fd = -1;
  svr.set_socket_options([&listen_fd](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    listen_fd = sock;
  });
  if (!svr.bind_to_port(options.host, options.port)) {
    print_line(str("error: cannot listen on ", options.host, ":", options.port,
                   " (address in use, or not an address of this machine)"));
    return false;
  }
  if (listen_fd >= 0 && ::listen(listen_fd, SOMAXCONN) != 0)
    log_warn("server: could not raise the listen backlog: ", std::strerror(errno));
  return true;
}

// The loader thread: loads the model; if that fails, says why and stops the server (nothing
// to serve, so `jinx serve` exits 1 instead of answering 503 forever).
void load_or_stop(ServerState& st, httplib::Server& svr, const std::atomic<bool>& listen_returned,
                  const std::string& url) {
  load_model(st);
  if (!st.load_failed) {
    print_line(str("ready: model ", st.ctx.served_name, ", chat page at ", url, "/"));
    return;
  }
  print_line("error: the model failed to load: " + st.load_error);
  // stop() does nothing until listen_after_bind() runs: wait for it (a fast failure).
  while (!svr.is_running() && !listen_returned)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  svr.stop();
}

}  // namespace

int serve(const ServeOptions& options) {
  // SIGINT/SIGTERM go to a thread that stops the server; SIGPIPE (client gone) is ignored.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ServerState st;
  st.opt = options;
  st.ctx.served_name =
      options.served_name.empty() ? default_name(options.model_path) : options.served_name;
  for (const auto& [name, dir] : options.lora_modules) {
    if (name.empty() || name == st.ctx.served_name || st.ctx.adapters->find(name) > 0) {
      print_line(str("error: LoRA module name '", name, "' is empty or taken"));
      return 1;
    }
    st.opt.engine.loras.push_back(dir);
    st.ctx.adapters->add(name, static_cast<int32_t>(st.opt.engine.loras.size()));
  }
  if (const char* env = std::getenv("VLLM_ALLOW_RUNTIME_LORA_UPDATING")) {
    const std::string v = env;
    if (v == "1" || v == "true" || v == "True" || v == "TRUE") st.opt.allow_runtime_lora = true;
  }
  st.created = static_cast<int64_t>(std::time(nullptr));
  httplib::Server svr;
  const int threads = std::max(4, options.http_threads);
  svr.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  svr.set_payload_max_length(options.max_body_bytes);
  svr.set_read_timeout(30, 0);
  svr.set_write_timeout(30, 0);
  svr.set_keep_alive_max_count(1000);
  add_policies(svr, st);
  add_routes(svr, st);
  if (!bind_with_backlog(svr, options)) return 1;
  const std::string url = str("http://", options.host, ":", options.port);
  print_line(str("listening on ", url, " (model ", st.ctx.served_name, ", loading ",
                 options.model_path, ")"));
  std::atomic<bool> listen_returned{false};
  std::thread loader([&] { load_or_stop(st, svr, listen_returned, url); });
  std::thread signals([&svr, sigs] {
    int sig = 0;
    sigwait(&sigs, &sig);
    svr.stop();
  });
  svr.listen_after_bind();
  listen_returned = true;
  loader.join();
  if (signals.joinable()) {
    pthread_kill(signals.native_handle(), SIGTERM);  // wake it if the server stopped by itself
    signals.join();
  }
  st.engine.reset();
  return st.load_failed ? 1 : 0;
}

}  // namespace jinx::server
