// jinx serve: the OpenAI-compatible server.
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "server/server.h"

namespace jinx::cli {

void add_serve(CLI::App& app) {
  auto* sub = app.add_subcommand("serve", "OpenAI-compatible HTTP server (chat page at /)");
  struct Args {
    server::ServeOptions opt;
    EngineFlags engine;
    std::vector<std::string> lora_modules;
  };
  auto a = std::make_shared<Args>();
  sub->add_option("-m,--model", a->opt.model_path, "GGUF file or Hugging Face folder")->required();
  sub->add_option("--host", a->opt.host, "address to listen on")->capture_default_str();
  sub->add_option("--port", a->opt.port, "port")->capture_default_str()->check(CLI::Range(0, 65535));
  sub->add_option("--api-key", a->opt.api_key,
                  "require Authorization: Bearer KEY on /v1/*, /tokenize, /detokenize");
  sub->add_option("--served-model-name", a->opt.served_name,
                  "model id in the API (default: the file name)");
  sub->add_option("--max-queue", a->opt.max_queue,
                  "requests waiting for a run slot (beyond --max-num-seqs running) before new "
                  "ones get 429")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 20));
  sub->add_option("--max-body-bytes", a->opt.max_body_bytes, "largest request body (413 above)")
      ->capture_default_str();
  sub->add_option("--http-threads", a->opt.http_threads,
                  "connections served at once (each stream holds one)")
      ->capture_default_str()
      ->check(CLI::Range(4, 4096));
  sub->add_option("--pooling", a->opt.pooling,
                  "how /v1/embeddings pools the hidden states: mean, cls or last (default: "
                  "what the model declares, else mean)")
      ->check(CLI::IsMember({"mean", "cls", "last"}));
  sub->add_option("--rag-db", a->opt.rag_db,
                  "knowledge base for /v1/rag/* and chat requests with \"rag\" (a `jinx rag "
                  "index` file made with this model, or a new file)");
  sub->add_option("--lora-modules", a->lora_modules,
                  "LoRA adapters served beside the model, NAME=DIR each (a PEFT directory); a "
                  "request whose \"model\" is NAME uses it");
  sub->add_flag("--allow-runtime-lora", a->opt.allow_runtime_lora,
                "serve POST /v1/load_lora_adapter and /v1/unload_lora_adapter (vLLM's runtime "
                "LoRA updating; also on with VLLM_ALLOW_RUNTIME_LORA_UPDATING=true): clients "
                "name adapter paths on this machine, so only for trusted clients");
  sub->add_option("--reasoning-parser", a->opt.reasoning_parser,
                  "return a thinking model's <think> block (gpt-oss: its analysis channel) as "
                  "reasoning_content: auto (gpt_oss for a harmony template, qwen3 when the chat "
                  "template writes a <think> block), none, qwen3, deepseek_r1 or gpt_oss")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "none", "qwen3", "deepseek_r1", "gpt_oss", "openai_gptoss"}));
  add_engine_flags(sub, &a->engine);
  sub->callback([a] {
    a->opt.engine = a->engine.resolve();
    for (const std::string& m : a->lora_modules) {
      const size_t eq = m.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == m.size())
        throw CLI::ValidationError("--lora-modules", "expected NAME=DIR, got '" + m + "'");
      a->opt.lora_modules.emplace_back(m.substr(0, eq), m.substr(eq + 1));
    }
    const int rc = server::serve(a->opt);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace jinx::cli
