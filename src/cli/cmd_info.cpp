// jinx info: what a model file is, without running it.
#include <cstdio>

#include "backend/cpu/kernels.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "core/check.h"
#include "loader/gguf.h"
#include "model/executor.h"
#ifdef JINX_CUDA
#include "backend/cuda/ops.h"
#endif

namespace jinx::cli {

namespace {

void print_cuda_devices() {
  if (!cuda_built()) {
    std::printf("cuda:            not built (configure with -DJINX_CUDA=ON)\n");
    return;
  }
  const int n = cuda_device_count();
  if (n == 0) std::printf("cuda:            built; no GPU visible\n");
#ifdef JINX_CUDA
  for (int i = 0; i < n; ++i)
    std::printf("cuda:%d:          %s\n", i, cuda::describe_device(i).c_str());
#endif
}

void run_info(const std::string& path) {
  auto store = WeightStore::open(path);
  const ModelConfig& c = store->config();
  std::printf("path:            %s\n", path.c_str());
  std::printf("format:          %s\n", store->is_gguf() ? "GGUF" : "Hugging Face safetensors");
  std::printf("architecture:    %s (%s)\n", arch_name(c.arch), c.hf_architecture.c_str());
  std::printf("layers:          %lld\n", static_cast<long long>(c.n_layers));
  std::printf("hidden size:     %lld\n", static_cast<long long>(c.hidden_size));
  std::printf("intermediate:    %lld\n", static_cast<long long>(c.intermediate_size));
  if (c.n_experts > 0) {
    int64_t n_moe = 0;
    for (int64_t i = 0; i < c.n_layers; ++i) n_moe += c.is_moe_layer(i) ? 1 : 0;
    std::printf(
        "experts:         %lld per MoE layer (%lld of %lld layers), %lld per token, width "
        "%lld%s",
        static_cast<long long>(c.n_experts), static_cast<long long>(n_moe),
        static_cast<long long>(c.n_layers), static_cast<long long>(c.n_experts_per_tok),
        static_cast<long long>(c.moe_intermediate_size),
        c.norm_topk_prob ? ", weights renormalized" : "");
    if (c.shared_expert_intermediate_size > 0)
      std::printf(", shared expert %lld",
                  static_cast<long long>(c.shared_expert_intermediate_size));
    if (c.swiglu_limit > 0)
      std::printf(", SwiGLU clamped at %g (alpha %g)", c.swiglu_limit, c.swiglu_alpha);
    if (c.mxfp4_experts) std::printf(", MXFP4 (repacked at load)");
    std::printf("\n");
  }
  if (c.attn_sinks) std::printf("attention sinks: one learned logit per head\n");
  std::printf("heads:           %lld (kv %lld, head_dim %lld)\n", static_cast<long long>(c.n_heads),
              static_cast<long long>(c.n_kv_heads), static_cast<long long>(c.head_dim));
  std::printf("vocab:           %lld\n", static_cast<long long>(c.vocab_size));
  std::printf("context length:  %lld\n", static_cast<long long>(c.max_position_embeddings));
  std::string scaling;
  if (c.rope_scaling == RopeScaling::kLinear) scaling = str(", linear scaling x", c.rope_factor);
  if (c.rope_scaling == RopeScaling::kLlama3) scaling = str(", llama3 scaling x", c.rope_factor);
  if (c.rope_scaling == RopeScaling::kYarn)
    scaling = str(", yarn scaling x", c.rope_factor, " of ", c.rope_original_max_pos,
                  " positions (attention factor ", c.rope_attention_factor, ")");
  std::printf("rope:            theta %g%s%s\n", c.rope_theta, scaling.c_str(),
              c.rope_freq_factors.empty() ? "" : ", per-frequency factors");
  if (c.sliding_window > 0) {
    int64_t n = 0;
    for (int64_t i = 0; i < c.n_layers; ++i) n += c.is_sliding_layer(i);
    std::printf("sliding window:  %lld positions on %lld of %lld layers%s\n",
                static_cast<long long>(c.sliding_window), static_cast<long long>(n),
                static_cast<long long>(c.n_layers),
                c.rope_local_theta > 0 ? str(" (rope theta ", c.rope_local_theta, ")").c_str() : "");
  }
  std::printf("tied embeddings: %s\n", c.tie_word_embeddings ? "yes" : "no");
  std::printf("pooling:         %s\n",
              !c.pooling_unsupported.empty()
                  ? str(c.pooling_unsupported, " (declared; not supported: pass --pooling)").c_str()
                  : str(pooling_name(c.pooling),
                        c.pooling_declared ? " (declared)" : " (default for embeddings)")
                        .c_str());
  std::printf("weights:         %s, %.1f MiB\n", store->dtype_summary().c_str(),
              static_cast<double>(store->total_bytes()) / (1 << 20));
  bool has_template = false;
  try {
    auto tok = load_tokenizer(path, nullptr);
    has_template = !tok->chat_template().empty();
    std::printf("tokenizer:       %d tokens, bos %d, eos %d\n", tok->vocab_size(), tok->bos_id(),
                tok->eos_id());
  } catch (const std::exception& e) {
    std::printf("tokenizer:       unavailable (%s)\n", e.what());
  }
  std::printf("chat template:   %s\n", has_template ? "present" : "absent");
  std::printf("cpu kernels:     %s\n", cpu::isa_name(cpu::active_isa()));
  print_cuda_devices();
}

}  // namespace

void add_info(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* sub = app.add_subcommand("info", "Describe a model");
  sub->add_option("-m,--model", *path, "Model directory or .gguf file")->required();
  sub->callback([path] { run_info(*path); });
}

}  // namespace jinx::cli
