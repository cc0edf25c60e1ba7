// jinx generate: one prompt, streamed to stdout, timings to stderr.
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "cli/batch_file.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/engine_flags.h"
#include "core/check.h"
#include "engine/generate.h"
#include "engine/llm.h"

namespace jinx::cli {

namespace {

struct GenerateArgs {
  std::string model, prompt, prompt_ids, system;
  int max_tokens = 128;
  float temperature = -1.0f;  // <0: the model's default, else greedy
  float top_p = 1.0f;
  int top_k = 0;
  int64_t seed = -1;
  int threads = 0;
  bool raw = false;
  bool ignore_eos = false;
  std::string input, output;
  // Structured output (llama.cpp's flags): at most one.
  std::string grammar, grammar_file, json_schema, json_schema_file, regex;
  EngineFlags engine;
};

// The constraint the flags ask for ("" kind: none).
ConstraintSpec constraint_spec(const GenerateArgs& a) {
  ConstraintSpec spec;
  int given = 0;
  auto set = [&](const std::string& v, const char* kind, bool file) {
    if (v.empty()) return;
    ++given;
    spec.kind = kind;
    spec.text = file ? read_file(v) : v;
  };
  set(a.grammar, "grammar", false);
  set(a.grammar_file, "grammar", true);
  set(a.json_schema, "json_schema", false);
  set(a.json_schema_file, "json_schema", true);
  set(a.regex, "regex", false);
  if (given > 1) fail("give at most one of --grammar, --grammar-file, --json-schema, --json-schema-file, --regex");
  return spec;
}

SamplingParams sampling_from(const GenerateArgs& a, const ModelConfig* c) {
  SamplingParams p;
  p.temperature = a.temperature >= 0 ? a.temperature
                  : (c && c->default_temperature >= 0 ? c->default_temperature : 0.0f);
  p.top_p = a.top_p;
  p.top_k = a.top_k;
  if (a.seed >= 0) p.seed = static_cast<uint64_t>(a.seed);
  p.max_tokens = a.max_tokens;
  p.skip_special_tokens = true;
  p.ignore_eos = a.ignore_eos;
  return p;
}

// One prompt through the batched engine (so every engine flag applies: device, KV dtype, ...),
// streaming its text to stdout.
void run_generate(const GenerateArgs& a) {
  auto t0 = std::chrono::steady_clock::now();
  EngineOptions eo = a.engine.resolve();
  if (a.threads > 0) eo.threads = a.threads;
  std::shared_ptr<const Model> model =
      Model::load(a.model, LoadOptions{eo.quantize, eo.threads, eo.comm, eo.lora});
  if (!model->quantize_summary().empty())
    std::fprintf(stderr, "[jinx] %s\n", model->quantize_summary().c_str());
  if (!model->lora_summary().empty())
    std::fprintf(stderr, "[jinx] %s\n", model->lora_summary().c_str());
  std::shared_ptr<const Tokenizer> tok = load_tokenizer(a.model, model.get());
  std::vector<int32_t> prompt =
      a.prompt_ids.empty() ? build_prompt(*tok, a.prompt, a.raw, a.system) : parse_ids(a.prompt_ids);
  const ModelConfig& c = model->config();
  SamplingParams p = sampling_from(a, &c);
  if (std::string err = p.validate(static_cast<int>(c.vocab_size)); !err.empty()) fail(err);
  if (eo.max_num_batched_tokens < 2048) eo.max_num_batched_tokens = 2048;  // one prompt: big chunks
  LLM llm(model, tok, eo);
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::shared_ptr<const ConstraintVocab> vocab;
  std::shared_ptr<TokenConstraint> constraint = make_constraint(constraint_spec(a), *tok, &vocab);
  Request r{std::move(prompt), p, std::move(constraint), [](const StreamUpdate& u) {
              std::fwrite(u.text.data(), 1, u.text.size(), stdout);
              std::fflush(stdout);
            }};
  std::vector<Request> reqs;
  reqs.push_back(std::move(r));
  const RequestOutput out = std::move(llm.generate(std::move(reqs)).at(0));
  std::printf("\n");
  const double n_dec = static_cast<double>(out.token_ids.size()) - 1.0;
  std::fprintf(stderr,
               "[jinx] load %.2f s | prompt %lld tokens, %.1f tok/s | generated %zu tokens, "
               "decode %.1f tok/s | finish: %s | threads %d | %s\n",
               load_s, static_cast<long long>(out.n_prompt),
               out.n_prompt / std::max(out.ttft_s, 1e-9), out.token_ids.size(),
               n_dec > 0 ? n_dec / std::max(out.total_s - out.ttft_s, 1e-9) : 0.0,
               out.finish_reason.c_str(),
               a.threads > 0 ? a.threads : static_cast<int>(std::thread::hardware_concurrency()),
               llm.executor_description().c_str());
  const EngineStats& st = llm.stats();
  if (st.draft_tokens > 0)
    std::fprintf(stderr, "[jinx] speculative: %lld of %lld guessed tokens accepted (%.0f%%) in %lld "
                 "steps\n", static_cast<long long>(st.accepted_tokens),
                 static_cast<long long>(st.draft_tokens),
                 100.0 * static_cast<double>(st.accepted_tokens) / static_cast<double>(st.draft_tokens),
                 static_cast<long long>(st.steps));
  if (st.draft_passes > 0)
    std::fprintf(stderr, "[jinx] draft model: %lld passes, %.2f s of %.2f s\n",
                 static_cast<long long>(st.draft_passes), st.draft_seconds, st.seconds);
}

}  // namespace

void add_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  CLI::App* sub = app.add_subcommand("generate", "Generate a continuation of one prompt");
  sub->add_option("-m,--model", a->model, "Model directory or .gguf file")->required();
  auto* text = sub->add_option("-p,--prompt", a->prompt, "Prompt text");
  auto* ids = sub->add_option("--prompt-ids", a->prompt_ids, "Prompt as token ids: 1,2,3");
  text->excludes(ids);
  sub->add_option("-n,--max-tokens", a->max_tokens, "Tokens to generate")->check(CLI::Range(0, 1 << 20));
  sub->add_option("--temperature", a->temperature, "Sampling temperature (0 = greedy)");
  sub->add_option("--top-p", a->top_p, "Nucleus sampling threshold");
  sub->add_option("--top-k", a->top_k, "Top-k sampling (0 = off)");
  sub->add_option("--seed", a->seed, "Random seed");
  sub->add_option("-t,--threads", a->threads, "Threads (0 = all cores)");
  sub->add_option("--system", a->system, "System message for chat models");
  sub->add_flag("--ignore-eos", a->ignore_eos, "Keep generating after end-of-sequence tokens");
  sub->add_flag("--raw", a->raw, "Send the prompt as plain text, without the chat template");
  auto* input = sub->add_option("--input", a->input,
                                 "Batch mode: a JSONL file of {\"prompt\"} or {\"messages\"}");
  input->excludes(text)->excludes(ids);
  sub->add_option("--output", a->output, "Batch mode: where the JSONL results go");
  sub->add_option("--grammar", a->grammar, "Constrain the output to a GBNF grammar (llama.cpp's format)");
  sub->add_option("--grammar-file", a->grammar_file, "GBNF grammar file");
  sub->add_option("-j,--json-schema", a->json_schema, "Constrain the output to a JSON schema");
  sub->add_option("--json-schema-file", a->json_schema_file, "JSON schema file");
  sub->add_option("--regex", a->regex, "Constrain the output to a regular expression (matched whole)");
  add_engine_flags(sub, &a->engine);
  sub->callback([a, text, ids, input] {
    if (input->count() > 0) {
      if (a->output.empty()) fail("--input needs --output FILE");
      BatchArgs b{a->model, a->input, a->output, sampling_from(*a, nullptr), a->engine,
                  constraint_spec(*a)};
      b.engine.options.threads = a->threads;
      run_batch_file(b);
      return;
    }
    if (text->count() == 0 && ids->count() == 0)
      fail("give a prompt with -p TEXT, --prompt-ids, or --input FILE");
    run_generate(*a);
  });
}

}  // namespace jinx::cli
