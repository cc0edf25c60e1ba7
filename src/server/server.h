// `jinx serve`: an OpenAI-compatible HTTP server over AsyncEngine.
//
// HTTP threads (cpp-httplib's pool) parse, validate, tokenize, submit and stream; the engine
// runs in its own thread. Routes: POST /v1/chat/completions, POST /v1/completions,
// POST /v1/embeddings, POST /v1/rag/documents and /v1/rag/search (--rag-db), GET /v1/models, GET /health (503 while the model loads), GET /metrics (Prometheus text),
// POST /tokenize, POST /detokenize, GET / (the chat page).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "engine/async_engine.h"
#include "engine/llm.h"

namespace jinx::server {

struct ServeOptions {
  std::string model_path;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;       // "" = no authentication
  std::string served_name;   // "" = the model file or folder name
  EngineOptions engine;
  int32_t max_queue = 256;   // requests waiting for a run slot (max_num_seqs) before 429
  size_t max_body_bytes = 8u << 20;
  int http_threads = 128;    // concurrent connections served (streams hold one each)
  int32_t max_n = 16;
  std::string pooling;       // /v1/embeddings: "mean", "cls", "last"; "" = the model's
  // A knowledge base (made by `jinx rag index` with this model, or new) for /v1/rag/* and the
  // "rag" field of chat requests; "" = none.
  std::string rag_db;
  // LoRA adapters served beside the model (--lora-modules NAME=DIR ...): a request whose
  // "model" is NAME runs with adapter DIR (a PEFT directory).
  std::vector<std::pair<std::string, std::string>> lora_modules;
  // POST /v1/load_lora_adapter {"lora_name", "lora_path"} and /v1/unload_lora_adapter
  // {"lora_name"} (vLLM's runtime LoRA updating); off: those paths are 404. Also on when the
  // environment has VLLM_ALLOW_RUNTIME_LORA_UPDATING=true (or 1), as in vLLM.
  bool allow_runtime_lora = false;
  // Thoughts in chat output (--reasoning-parser): "auto" (qwen3 when the chat template writes
  // a </think> block), "none", "qwen3" or "deepseek_r1" (server/reasoning.h).
  std::string reasoning_parser = "auto";
};

// Listens, loads the model in the background (/health says 503 until it is ready), serves
// until SIGINT or SIGTERM. Returns the process exit code: 1 when it cannot listen or the model
// fails to load (it stops serving then), else 0. Prints where it listens and when it is ready.
int serve(const ServeOptions& options);

// Prometheus text for the engine's metrics.
std::string metrics_text(const EngineMetrics& m, const std::string& model_name);

// The embedded chat page.
const std::string& chat_page_html();

}  // namespace jinx::server
