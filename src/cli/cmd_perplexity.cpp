// jinx perplexity: the model's perplexity on a text file, as llama.cpp's llama-perplexity
// measures it (chunks of --ctx tokens, each starting with BOS where the tokenizer adds one; the
// tokens of the second half of each chunk are scored), for one or several KV cache dtypes in the
// same run. With several, the first is the baseline and every other one also reports the mean
// KL divergence of its next-token distributions from the baseline's and how often their top
// tokens agree: the quality cost of a smaller cache.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <sstream>

#include "backend/cpu/attention.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "cli/engine_flags.h"
#include "core/check.h"
#include "model/paged_kv.h"

namespace jinx::cli {

namespace {

constexpr int64_t kBlockSize = 16;

struct PerplexityArgs {
  std::string model, file, kv_dtypes = "f32", quantize = "none", lora;
  int ctx = 512, chunks = 0, batch = 256, threads = 0;
};

// Running totals of one KV dtype.
struct Score {
  DType dtype;
  double nll = 0, nll2 = 0, kl = 0, seconds = 0;
  int64_t n = 0, top1_same = 0;
};

std::vector<DType> parse_dtypes(const std::string& list) {
  std::vector<DType> out;
  std::stringstream ss(list);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(parse_kv_dtype(item, false));
  JINX_CHECK(!out.empty(), "--kv-cache-dtype: empty list");
  return out;
}

// Log-softmax of one row of logits, in double.
void log_softmax(const float* x, int64_t n, std::vector<double>* out) {
  out->resize(static_cast<size_t>(n));
  const double mx = *std::max_element(x, x + n);
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += std::exp(double{x[j]} - mx);
  const double lse = mx + std::log(sum);
  for (int64_t j = 0; j < n; ++j) (*out)[static_cast<size_t>(j)] = x[j] - lse;
}

// Runs one chunk through a fresh cache of the dtype, in steps of at most `batch` tokens; returns
// the logits of rows [first, n - 1) (each predicts the next token), [n - 1 - first, vocab].
std::vector<float> run_chunk(const Model& m, const std::vector<int32_t>& ids, int64_t first,
                             DType dtype, int64_t batch, ThreadPool& pool) {
  const int64_t n = static_cast<int64_t>(ids.size()), vocab = m.config().vocab_size;
  const int64_t n_blocks = (n + kBlockSize - 1) / kBlockSize;
  PagedKvStorage kv(m.config(), n_blocks, kBlockSize, dtype);
  std::vector<int32_t> table(static_cast<size_t>(n_blocks));
  for (int64_t i = 0; i < n_blocks; ++i) table[static_cast<size_t>(i)] = static_cast<int32_t>(i);
  std::vector<float> logits(static_cast<size_t>((n - 1 - first) * vocab));
  for (int64_t p0 = 0; p0 < n - 1; p0 += batch) {
    const int64_t p1 = std::min(n - 1, p0 + batch);  // the last token predicts nothing scored
    std::vector<int32_t> pos, rows;
    std::vector<int64_t> slots;
    for (int64_t p = p0; p < p1; ++p) {
      pos.push_back(static_cast<int32_t>(p));
      slots.push_back(p);
      if (p >= first) rows.push_back(static_cast<int32_t>(p - p0));
    }
    const int32_t qstart[2] = {0, static_cast<int32_t>(p1 - p0)};
    const int32_t ctx = static_cast<int32_t>(p1);
    ForwardBatch fb;
    fb.tokens = std::span<const int32_t>(ids.data() + p0, static_cast<size_t>(p1 - p0));
    fb.positions = pos;
    fb.slot_mapping = slots;
    fb.attn = {1, qstart, &ctx, table.data(), n_blocks};
    fb.out_rows = rows;
    if (rows.empty()) {
      std::vector<float> none;
      m.forward_batch(fb, kv, none.data(), pool);
      continue;
    }
    const int64_t r0 = std::max(p0, first) - first;
    m.forward_batch(fb, kv, logits.data() + r0 * vocab, pool);
  }
  return logits;
}

void score_chunk(const Model& m, const std::vector<int32_t>& ids, int64_t first, int64_t batch,
                 std::vector<Score>& scores, ThreadPool& pool) {
  const int64_t vocab = m.config().vocab_size, n_rows = static_cast<int64_t>(ids.size()) - 1 - first;
  std::vector<std::vector<double>> base(static_cast<size_t>(n_rows));
  std::vector<double> lp;
  for (size_t d = 0; d < scores.size(); ++d) {
    Score& s = scores[d];
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<float> logits = run_chunk(m, ids, first, s.dtype, batch, pool);
    s.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (int64_t r = 0; r < n_rows; ++r) {
      const float* row = logits.data() + r * vocab;
      log_softmax(row, vocab, &lp);
      const double nll = -lp[static_cast<size_t>(ids[static_cast<size_t>(first + r + 1)])];
      s.nll += nll;
      s.nll2 += nll * nll;
      ++s.n;
      auto& b = base[static_cast<size_t>(r)];
      if (d == 0) {
        b = lp;
        continue;
      }
      double kl = 0;
      for (int64_t j = 0; j < vocab; ++j) kl += std::exp(b[j]) * (b[j] - lp[j]);
      s.kl += kl;
      const auto top = [](const std::vector<double>& v) {
        return std::max_element(v.begin(), v.end()) - v.begin();
      };
      s.top1_same += top(b) == top(lp);
    }
  }
}

void run_perplexity(const PerplexityArgs& a) {
  JINX_CHECK(a.ctx >= 4, "--ctx must be at least 4");
  JINX_CHECK(a.batch >= 1, "--batch must be positive");
  auto model =
      Model::load(a.model, LoadOptions{parse_quantize(a.quantize), a.threads, nullptr, a.lora});
  auto tok = load_tokenizer(a.model, model.get());
  const std::vector<DType> dtypes = parse_dtypes(a.kv_dtypes);
  const std::vector<int32_t> text = tok->encode(read_file(a.file), false, false);
  const bool bos = tok->add_bos() && tok->bos_id() >= 0;
  const int64_t n_avail = static_cast<int64_t>(text.size()) / a.ctx;
  JINX_CHECK(n_avail > 0, a.file, " has ", text.size(), " tokens, fewer than --ctx ", a.ctx);
  const int64_t n_chunks = a.chunks > 0 ? std::min<int64_t>(a.chunks, n_avail) : n_avail;
  const int64_t first = a.ctx / 2;
  std::fprintf(stderr, "[jinx] %zu tokens, %lld chunks of %d (scoring the second half of each)%s\n",
               text.size(), static_cast<long long>(n_chunks), a.ctx,
               bos ? ", each starting with BOS" : "");
  ThreadPool pool(a.threads);
  std::vector<Score> scores;
  for (DType t : dtypes) scores.push_back({t});
  for (int64_t c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> ids(text.begin() + c * a.ctx, text.begin() + (c + 1) * a.ctx);
    if (bos) ids[0] = tok->bos_id();
    score_chunk(*model, ids, first, a.batch, scores, pool);
    std::fprintf(stderr, "[jinx] chunk %lld/%lld: ppl %.4f (%s)\n", static_cast<long long>(c + 1),
                 static_cast<long long>(n_chunks), std::exp(scores[0].nll / scores[0].n),
                 std::string(name(scores[0].dtype)).c_str());
  }
  const ModelConfig& cfg = model->config();
  std::printf("%-8s %12s %10s %14s %12s %10s %10s\n", "kv", "bytes/token", "ppl", "+/-",
              "KL vs first", "top1 same", "tok/s");
  for (const Score& s : scores) {
    const double mean = s.nll / s.n, var = std::max(0.0, s.nll2 / s.n - mean * mean);
    const double ppl = std::exp(mean), err = ppl * std::sqrt(var / std::max<int64_t>(1, s.n - 1));
    const size_t per_token = PagedKvStorage::bytes_per_block(cfg, 1, s.dtype);
    const bool base = &s == &scores[0];
    std::printf("%-8s %12zu %10.4f %14.4f %12s %10s %10.1f\n", std::string(name(s.dtype)).c_str(),
                per_token, ppl, err, base ? "-" : str(s.kl / s.n).c_str(),
                base ? "-" : str(100.0 * s.top1_same / s.n, "%").c_str(),
                n_chunks * a.ctx / std::max(s.seconds, 1e-9));
  }
}

}  // namespace

void add_perplexity(CLI::App& app) {
  auto a = std::make_shared<PerplexityArgs>();
  CLI::App* sub = app.add_subcommand(
      "perplexity", "Perplexity of a text file, and the quality cost of each KV cache dtype");
  sub->add_option("-m,--model", a->model, "Model directory or .gguf file")->required();
  sub->add_option("-f,--file", a->file, "Text file")->required();
  sub->add_option("--ctx", a->ctx, "Tokens per chunk")->check(CLI::Range(4, 1 << 20));
  sub->add_option("--chunks", a->chunks, "Chunks to score (0: all)")->check(CLI::Range(0, 1 << 20));
  sub->add_option("--batch", a->batch, "Tokens per forward step")->check(CLI::Range(1, 1 << 16));
  sub->add_option("--kv-cache-dtype", a->kv_dtypes,
                  "Comma-separated KV dtypes (f32, f16, bf16, int8, fp8); the first is the "
                  "baseline of the KL / top-1 columns");
  add_quantize_flag(sub, &a->quantize);
  sub->add_option("--lora", a->lora, "Apply this LoRA adapter (PEFT directory) to the model");
  sub->add_option("-t,--threads", a->threads, "Threads (0: every core)");
  sub->callback([a] { run_perplexity(*a); });
}

}  // namespace jinx::cli
