// jinx bench: the engine's throughput benchmark. N sequences with random prompt and output
// lengths, all submitted at once, EOS ignored, seed 0; prints total time, output and total
// tokens/s, and TTFT / time-per-output-token percentiles. Greedy unless --temperature is given
// (then each sequence samples with its own seed, with --top-k / --top-p / --min-p).
#include <algorithm>
#include <cstdio>
#include <random>

#include "cli/commands.h"
#include "cli/engine_flags.h"
#include "core/check.h"

namespace jinx::cli {

namespace {

struct BenchArgs {
  std::string model;
  int num_seqs = 256, min_input = 100, max_input = 1024, min_output = 100, max_output = 1024;
  uint64_t seed = 0;
  float temperature = 0.0f, top_p = 1.0f, min_p = 0.0f;
  int top_k = 0;
  EngineFlags engine;
  int threads = 0;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p / 100.0 * (v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void run_bench(const BenchArgs& a) {
  if (a.min_input < 1 || a.min_input > a.max_input || a.min_output < 1 ||
      a.min_output > a.max_output || a.num_seqs < 1)
    fail("bench: need 1 <= min <= max for input and output lengths and --num-seqs >= 1");
  EngineOptions o = a.engine.resolve();
  if (a.threads > 0) o.threads = a.threads;
  std::shared_ptr<const Model> model =
      Model::load(a.model, LoadOptions{o.quantize, o.threads, o.comm, o.lora});
  LLM llm(model, nullptr, o);
  const int32_t vocab = static_cast<int32_t>(model->config().vocab_size);
  std::mt19937_64 rng(a.seed);
  std::uniform_int_distribution<int> in_len(a.min_input, a.max_input),
      out_len(a.min_output, a.max_output);
  std::uniform_int_distribution<int32_t> tok(0, vocab - 1);
  std::vector<Request> reqs;
  int64_t n_in = 0;
  for (int i = 0; i < a.num_seqs; ++i) {
    Request r;
    r.prompt.resize(in_len(rng));
    for (auto& t : r.prompt) t = tok(rng);
    r.params.temperature = a.temperature;
    r.params.top_k = a.top_k;
    r.params.top_p = a.top_p;
    r.params.min_p = a.min_p;
    r.params.seed = a.seed * 1000003u + static_cast<uint64_t>(i);
    if (const std::string e = r.params.validate(vocab); !e.empty()) fail("bench: ", e);
    r.params.ignore_eos = true;
    r.params.max_tokens = out_len(rng);
    r.params.skip_special_tokens = false;
    n_in += static_cast<int64_t>(r.prompt.size());
    reqs.push_back(std::move(r));
  }
  std::printf("model %s | %d sequences, input %d-%d, output %d-%d tokens | KV %lld blocks of %d "
              "| max-num-seqs %d, max-num-batched-tokens %d | threads %d\n",
              a.model.c_str(), a.num_seqs, a.min_input, a.max_input, a.min_output, a.max_output,
              static_cast<long long>(llm.kv_blocks()), o.block_size, o.max_num_seqs,
              o.max_num_batched_tokens, a.threads);
  if (a.temperature > 0.0f)
    std::printf("sampling: temperature %g, top-k %d, top-p %g, min-p %g\n", a.temperature,
                a.top_k, a.top_p, a.min_p);
  if (!model->quantize_summary().empty()) std::printf("%s\n", model->quantize_summary().c_str());
  auto outs = llm.generate(std::move(reqs), [&](size_t done, size_t total, int64_t tokens) {
    std::fprintf(stderr, "\r[jinx bench] %zu/%zu done, %lld tokens", done, total,
                 static_cast<long long>(tokens));
  });
  std::fprintf(stderr, "\n");
  int64_t n_out = 0;
  std::vector<double> ttft, tpot;
  for (const auto& r : outs) {
    n_out += static_cast<int64_t>(r.token_ids.size());
    ttft.push_back(r.ttft_s);
    if (r.token_ids.size() > 1)
      tpot.push_back((r.total_s - r.ttft_s) / static_cast<double>(r.token_ids.size() - 1));
  }
  const EngineStats& st = llm.stats();
  std::printf("total time %.2f s | output %.1f tok/s | total %.1f tok/s | %lld steps, %lld "
              "preemptions\n",
              st.seconds, n_out / st.seconds, (n_in + n_out) / st.seconds,
              static_cast<long long>(st.steps), static_cast<long long>(st.preemptions));
  if (st.draft_tokens > 0)
    std::printf("speculative: %lld of %lld guessed tokens accepted (%.0f%%)\n",
                static_cast<long long>(st.accepted_tokens), static_cast<long long>(st.draft_tokens),
                100.0 * static_cast<double>(st.accepted_tokens) /
                    static_cast<double>(st.draft_tokens));
  if (st.draft_passes > 0)
    std::printf("draft model: %lld passes, %.2f s\n", static_cast<long long>(st.draft_passes),
                st.draft_seconds);
  std::printf("TTFT ms p50 %.1f p90 %.1f p99 %.1f | TPOT ms p50 %.2f p90 %.2f p99 %.2f\n",
              1e3 * percentile(ttft, 50), 1e3 * percentile(ttft, 90), 1e3 * percentile(ttft, 99),
              1e3 * percentile(tpot, 50), 1e3 * percentile(tpot, 90), 1e3 * percentile(tpot, 99));
  // Where a step's time goes: the forward pass (on a GPU: launches, kernels, copies back)
  // against everything else (scheduling, batch building, sampling, detokenizing). With overlap
  // scheduling the forward pass is the time spent submitting and waiting for steps, and the
  // rest is the host work that the device's running step did not hide.
  std::printf("forward pass %.2f s (%.1f ms per step, %.0f%% of the time); the rest %.1f ms per "
              "step\n",
              st.forward_seconds, 1e3 * st.forward_seconds / std::max<int64_t>(1, st.steps),
              100.0 * st.forward_seconds / st.seconds,
              1e3 * (st.seconds - st.forward_seconds) / std::max<int64_t>(1, st.steps));
  std::printf("executor: %s%s\n", llm.executor_description().c_str(),
              llm.overlaps() ? "; overlap scheduling" : "");
}

}  // namespace

void add_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* sub = app.add_subcommand("bench", "Throughput benchmark of the batched engine");
  sub->add_option("-m,--model", a->model, "Model directory or .gguf file")->required();
  sub->add_option("--num-seqs", a->num_seqs, "Sequences submitted at once");
  sub->add_option("--min-input", a->min_input, "Shortest prompt (tokens)");
  sub->add_option("--max-input", a->max_input, "Longest prompt (tokens)");
  sub->add_option("--min-output", a->min_output, "Shortest output (tokens)");
  sub->add_option("--max-output", a->max_output, "Longest output (tokens)");
  sub->add_option("--seed", a->seed, "Workload seed");
  sub->add_option("-t,--threads", a->threads, "Threads (0 = all cores)");
  sub->add_option("--temperature", a->temperature, "Sampling temperature (0: greedy)");
  sub->add_option("--top-k", a->top_k, "Keep the k most likely tokens (0: all)");
  sub->add_option("--top-p", a->top_p, "Nucleus: the smallest set holding this probability");
  sub->add_option("--min-p", a->min_p, "Drop tokens below this fraction of the top probability");
  add_engine_flags(sub, &a->engine);
  sub->callback([a] { run_bench(*a); });
}

}  // namespace jinx::cli
