// jinx chat: an interactive multi-turn conversation in the terminal, through the model's chat
// template, with line editing and history (libedit). Ctrl-C stops the reply being written;
// Ctrl-D or /exit leaves.
#include <editline/readline.h>

#include <atomic>
#include <csignal>
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "cli/engine_flags.h"
#include "core/check.h"
#include "engine/generate.h"
#include "tokenizer/template.h"

namespace jinx::cli {

namespace {

std::atomic<bool> g_interrupted{false};  // set by SIGINT while a reply streams

void on_sigint(int) { g_interrupted.store(true); }

struct ChatArgs {
  std::string model, system, lora;
  int max_tokens = 512;
  float temperature = 0.7f;
  float top_p = 0.9f;
  int64_t seed = -1;
  int threads = 0;
  std::string quantize = "none";
};

void run_chat(const ChatArgs& a) {
  auto model =
      Model::load(a.model, LoadOptions{parse_quantize(a.quantize), a.threads, nullptr, a.lora});
  if (!model->quantize_summary().empty())
    std::fprintf(stderr, "[jinx] %s\n", model->quantize_summary().c_str());
  auto tok = load_tokenizer(a.model, model.get());
  const std::string& src =
      tok->chat_template().empty() ? fallback_chat_template() : tok->chat_template();
  ChatTemplate tmpl(src);
  ThreadPool pool(a.threads);
  nlohmann::json messages = nlohmann::json::array();
  if (!a.system.empty()) messages.push_back({{"role", "system"}, {"content", a.system}});
  std::fprintf(stderr, "jinx chat: %s (Ctrl-C stops a reply, Ctrl-D or /exit quits)\n",
               a.model.c_str());
  std::signal(SIGINT, on_sigint);
  for (;;) {
    g_interrupted.store(false);
    char* line = readline("> ");
    if (!line) break;
    std::string text(line);
    std::free(line);
    if (text == "/exit" || text == "/quit") break;
    if (text.empty()) continue;
    add_history(text.c_str());
    messages.push_back({{"role", "user"}, {"content", text}});
    nlohmann::json ctx = {{"messages", messages}, {"add_generation_prompt", true},
                          {"bos_token", tok->bos_token()}, {"eos_token", tok->eos_token()}};
    auto ids = tok->encode(tmpl.render(ctx), false, true);
    SamplingParams p;
    p.temperature = a.temperature;
    p.top_p = a.top_p;
    p.max_tokens = a.max_tokens;
    if (a.seed >= 0) p.seed = static_cast<uint64_t>(a.seed);
    auto r = generate(*model, *tok, ids, p, pool, [](std::string_view s) {
      std::fwrite(s.data(), 1, s.size(), stdout);
      std::fflush(stdout);
      return !g_interrupted.load();
    });
    std::printf("\n");
    if (g_interrupted.load()) std::fprintf(stderr, "[stopped]\n");
    messages.push_back({{"role", "assistant"}, {"content", r.text}});
  }
  std::signal(SIGINT, SIG_DFL);
}

}  // namespace

void add_chat(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  CLI::App* sub = app.add_subcommand("chat", "Chat with a model in the terminal");
  sub->add_option("-m,--model", a->model, "Model directory or .gguf file")->required();
  sub->add_option("--system", a->system, "System message");
  sub->add_option("-n,--max-tokens", a->max_tokens, "Most tokens per reply");
  sub->add_option("--temperature", a->temperature, "Sampling temperature (0 = greedy)");
  sub->add_option("--top-p", a->top_p, "Nucleus sampling threshold");
  sub->add_option("--seed", a->seed, "Random seed");
  sub->add_option("-t,--threads", a->threads, "Threads (0 = all cores)");
  add_quantize_flag(sub, &a->quantize);
  sub->add_option("--lora", a->lora, "Apply this LoRA adapter (PEFT directory) to the model");
  sub->callback([a] { run_chat(*a); });
}

}  // namespace jinx::cli
