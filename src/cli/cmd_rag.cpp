// jinx rag index | search | ask: the RAG pipeline over a knowledge base file.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/engine_flags.h"
#include "core/check.h"
#include "engine/generate.h"
#include "engine/llm.h"
#include "rag/knowledge_base.h"

namespace jinx::cli {

namespace {

using Clock = std::chrono::steady_clock;

struct RagArgs {
  std::string db, model, embed_model, pooling, query_prefix, mode = "hybrid", system;
  std::vector<std::string> paths;
  std::string query;
  int k = 4;
  int64_t chunk_tokens = 256, overlap_tokens = 32;
  int max_tokens = 256;
  float temperature = 0.0f;
  bool json = false;
  int threads = 0;
};

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// An engine over the embedding model and the Embedder that uses it.
struct EmbedEngine {
  std::unique_ptr<LLM> llm;
  rag::Embedder embedder;
};

EmbedEngine open_embedder(const std::string& path, const RagArgs& a) {
  EngineOptions eo;
  eo.threads = a.threads;
  eo.kv_cache_tokens = 4096;  // the embedding path keeps no KV; generation (ask) is one prompt
  std::shared_ptr<const Model> model = Model::load(path, LoadOptions{WeightQuant::kNone, a.threads});
  std::shared_ptr<const Tokenizer> tok = load_tokenizer(path, model.get());
  const ModelConfig& c = model->config();
  Pooling pooling = c.pooling;
  if (!a.pooling.empty()) {
    pooling = pooling_from_name(a.pooling);
  } else if (!c.pooling_unsupported.empty()) {
    fail(path, " declares pooling \"", c.pooling_unsupported,
         "\", which Jinx does not do; pass --pooling mean|cls|last");
  }
  EmbedEngine e;
  e.llm = std::make_unique<LLM>(model, tok, eo);
  LLM* llm = e.llm.get();
  e.embedder.model_id = rag::embedder_id(path, pooling, c.hidden_size);
  e.embedder.dim = c.hidden_size;
  e.embedder.tok = llm->tokenizer();
  e.embedder.embed = [llm, pooling](std::span<const std::vector<int32_t>> seqs, float* out) {
    llm->embed(seqs, pooling, /*normalize=*/true, out);
  };
  return e;
}

rag::RagOptions rag_options(const RagArgs& a) {
  rag::RagOptions o;
  o.chunk.max_tokens = a.chunk_tokens;
  o.chunk.overlap_tokens = a.overlap_tokens;
  o.query_prefix = a.query_prefix;
  return o;
}

void run_index(const RagArgs& a) {
  const auto t0 = Clock::now();
  EmbedEngine e = open_embedder(a.model, a);
  rag::KnowledgeBase kb(a.db, e.embedder, rag_options(a));
  const double load_s = seconds_since(t0);
  const auto t1 = Clock::now();
  rag::IndexReport total;
  for (const std::string& p : a.paths) {
    const rag::IndexReport r = kb.add_path(p, [](const std::string& f) {
      if (isatty(2)) std::fprintf(stderr, "\r[jinx] indexed %s\033[K", f.c_str());
    });
    total.files_added += r.files_added;
    total.files_unchanged += r.files_unchanged;
    total.files_skipped += r.files_skipped;
    total.chunks += r.chunks;
    total.tokens += r.tokens;
  }
  const double s = seconds_since(t1);
  if (isatty(2)) std::fprintf(stderr, "\r\033[K");
  std::printf("%s: %lld files added (%lld chunks, %lld tokens embedded in %.2f s, %.0f tok/s), "
              "%lld unchanged, %lld skipped; %lld documents, %lld chunks in all (load %.2f s)\n",
              a.db.c_str(), static_cast<long long>(total.files_added),
              static_cast<long long>(total.chunks), static_cast<long long>(total.tokens), s,
              total.tokens / std::max(s, 1e-9), static_cast<long long>(total.files_unchanged),
              static_cast<long long>(total.files_skipped),
              static_cast<long long>(kb.n_documents()), static_cast<long long>(kb.n_chunks()),
              load_s);
}

void print_passages(const std::vector<rag::Passage>& ps, bool as_json) {
  if (as_json) {
    nlohmann::json out = nlohmann::json::array();
    for (const rag::Passage& p : ps)
      out.push_back({{"chunk_id", p.chunk.id}, {"source", p.chunk.source},
                     {"start", p.chunk.start}, {"end", p.chunk.end}, {"text", p.chunk.text},
                     {"score", p.hit.score}, {"vector_rank", p.hit.vector_rank},
                     {"keyword_rank", p.hit.keyword_rank}, {"similarity", p.hit.similarity},
                     {"bm25", p.hit.bm25}});
    std::printf("%s\n", out.dump(1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return;
  }
  for (size_t i = 0; i < ps.size(); ++i) {
    const rag::Passage& p = ps[i];
    std::printf("[%zu] %s bytes %lld-%lld  (score %.4f; vector rank %d, cosine %.3f; keyword "
                "rank %d)\n%s\n\n",
                i + 1, p.chunk.source.c_str(), static_cast<long long>(p.chunk.start),
                static_cast<long long>(p.chunk.end), p.hit.score, p.hit.vector_rank,
                p.hit.similarity, p.hit.keyword_rank, p.chunk.text.c_str());
  }
}

void run_search(const RagArgs& a) {
  EmbedEngine e = open_embedder(a.model, a);
  rag::KnowledgeBase kb(a.db, e.embedder, rag_options(a));
  print_passages(kb.search(a.query, a.k, rag::search_mode_from_name(a.mode)), a.json);
}

// Retrieves, then answers with the generation model (-m), streaming; lists the sources.
void run_ask(const RagArgs& a) {
  const auto t0 = Clock::now();
  EmbedEngine gen = open_embedder(a.model, a);
  std::unique_ptr<EmbedEngine> other;
  if (!a.embed_model.empty() && a.embed_model != a.model)
    other = std::make_unique<EmbedEngine>(open_embedder(a.embed_model, a));
  const EmbedEngine& emb = other ? *other : gen;
  rag::KnowledgeBase kb(a.db, emb.embedder, rag_options(a));
  const auto passages = kb.search(a.query, a.k, rag::search_mode_from_name(a.mode));
  const double retrieve_s = seconds_since(t0);
  const Tokenizer& tok = *gen.llm->tokenizer();
  SamplingParams p;
  p.temperature = a.temperature;
  p.max_tokens = a.max_tokens;
  p.skip_special_tokens = true;
  Request r{build_prompt(tok, rag::rag_prompt(a.query, passages), false, a.system), p, nullptr,
            [](const StreamUpdate& u) {
              std::fwrite(u.text.data(), 1, u.text.size(), stdout);
              std::fflush(stdout);
            }};
  std::vector<Request> reqs;
  reqs.push_back(std::move(r));
  const RequestOutput out = std::move(gen.llm->generate(std::move(reqs)).at(0));
  std::printf("\n\nSources:\n");
  for (size_t i = 0; i < passages.size(); ++i)
    std::printf("  [%zu] %s (bytes %lld-%lld)\n", i + 1, passages[i].chunk.source.c_str(),
                static_cast<long long>(passages[i].chunk.start),
                static_cast<long long>(passages[i].chunk.end));
  std::fprintf(stderr, "[jinx] load + retrieval %.2f s | prompt %lld tokens | generated %zu "
               "tokens in %.2f s\n", retrieve_s, static_cast<long long>(out.n_prompt),
               out.token_ids.size(), out.total_s);
}

void common_flags(CLI::App* sub, RagArgs* a, bool embed_model_only) {
  sub->add_option("--db", a->db, "knowledge base file (SQLite; created by index)")->required();
  sub->add_option("-m,--model", a->model,
                  embed_model_only ? "embedding model (GGUF file or Hugging Face folder)"
                                   : "model that answers (and embeds, unless --embed-model)")
      ->required();
  sub->add_option("--pooling", a->pooling, "mean, cls or last (default: the model's, else mean)")
      ->check(CLI::IsMember({"mean", "cls", "last"}));
  sub->add_option("--query-prefix", a->query_prefix,
                  "text put before queries when they are embedded (instruction-tuned embedders)");
  sub->add_option("-t,--threads", a->threads, "CPU threads (0: every core)");
}

}  // namespace

void add_rag(CLI::App& app) {
  auto* rag = app.add_subcommand("rag", "retrieval-augmented generation over a knowledge base");
  rag->require_subcommand(1);
  auto a = std::make_shared<RagArgs>();

  auto* index = rag->add_subcommand("index", "add files or folders to a knowledge base");
  common_flags(index, a.get(), true);
  index->add_option("paths", a->paths, "files or folders (UTF-8 text)")->required();
  index->add_option("--chunk-tokens", a->chunk_tokens, "tokens per chunk")
      ->capture_default_str()->check(CLI::Range(8, 8192));
  index->add_option("--overlap-tokens", a->overlap_tokens, "tokens repeated between chunks")
      ->capture_default_str()->check(CLI::Range(0, 4096));
  index->callback([a] { run_index(*a); });

  auto* search = rag->add_subcommand("search", "the passages that best match a query");
  common_flags(search, a.get(), true);
  search->add_option("query", a->query, "what to look for")->required();
  search->add_option("-k", a->k, "passages")->capture_default_str()->check(CLI::Range(1, 100));
  search->add_option("--mode", a->mode, "hybrid (vector + keyword, fused), vector or keyword")
      ->capture_default_str()->check(CLI::IsMember({"hybrid", "vector", "keyword"}));
  search->add_flag("--json", a->json, "print the passages as JSON");
  search->callback([a] { run_search(*a); });

  auto* ask = rag->add_subcommand("ask", "answer a question from the knowledge base");
  common_flags(ask, a.get(), false);
  ask->add_option("question", a->query, "the question")->required();
  ask->add_option("--embed-model", a->embed_model,
                  "the model the knowledge base was indexed with (default: -m)");
  ask->add_option("-k", a->k, "passages given to the model")
      ->capture_default_str()->check(CLI::Range(1, 100));
  ask->add_option("--mode", a->mode, "hybrid, vector or keyword")
      ->capture_default_str()->check(CLI::IsMember({"hybrid", "vector", "keyword"}));
  ask->add_option("--max-tokens", a->max_tokens, "longest answer")->capture_default_str();
  ask->add_option("--temperature", a->temperature, "0: greedy")->capture_default_str();
  ask->add_option("--system", a->system, "system message");
  ask->callback([a] { run_ask(*a); });
}

}  // namespace jinx::cli
