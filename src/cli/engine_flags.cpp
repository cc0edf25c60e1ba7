#include "cli/engine_flags.h"

#include <algorithm>
#include <thread>

#include "core/check.h"

namespace jinx::cli {

EngineOptions EngineFlags::resolve() const {
  EngineOptions o = options;
  const bool gpu = o.device != "cpu";
  o.kv_dtype = parse_kv_dtype(kv_dtype, gpu);
  o.prefix_caching = !no_prefix_cache;
  o.cuda_graphs = !enforce_eager;
  o.quantize = parse_quantize(quantize);
  o.scheduling_policy = scheduling_policy_from_name(scheduling_policy);
  if (speculative_sampling != "match" && speculative_sampling != "rejection")
    fail("--speculative-sampling must be match or rejection, not \"", speculative_sampling, "\"");
  o.speculative_sampling = speculative_sampling == "rejection" ? SpeculativeSampling::kRejection
                                                               : SpeculativeSampling::kMatch;
  if (overlap == "auto") {
    o.overlap = OverlapMode::kAuto;
  } else if (overlap == "on") {
    o.overlap = OverlapMode::kOn;
  } else if (overlap == "off") {
    o.overlap = OverlapMode::kOff;
  } else {
    fail("--overlap must be auto, on or off, not \"", overlap, "\"");
  }
  if (tensor_parallel_size > 1) {
    o.comm = process_comm();
    const int have = o.comm ? o.comm->size() : 1;
    if (have != tensor_parallel_size)
      fail("--tensor-parallel-size ", tensor_parallel_size, " needs ", tensor_parallel_size,
           " processes: run `mpirun -np ", tensor_parallel_size, " jinx ...` (this one has ",
           have, ")");
    if (o.threads == 0)  // the ranks share this machine's cores
      o.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / have);
  }
  return o;
}

namespace {
std::shared_ptr<Communicator>& comm_slot() {
  static std::shared_ptr<Communicator> comm;
  return comm;
}
}  // namespace

void set_process_comm(std::shared_ptr<Communicator> comm) { comm_slot() = std::move(comm); }
std::shared_ptr<Communicator> process_comm() { return comm_slot(); }

DType parse_kv_dtype(const std::string& v, bool gpu) {
  if (v == "auto") return gpu ? DType::BF16 : DType::F16;
  if (v == "f32") return DType::F32;
  if (v == "f16") return DType::F16;
  if (v == "bf16") return DType::BF16;
  if (v == "int8") return DType::I8;
  if (v == "fp8" || v == "fp8_e4m3") return DType::F8_E4M3;
  fail("--kv-cache-dtype must be auto, f32, f16, bf16, int8 or fp8, not \"", v, "\"");
}

WeightQuant parse_quantize(const std::string& value) {
  auto q = weight_quant_from_name(value);
  if (!q) fail("--quantize must be q8_0, q4_0, q4_k, int4 or none, not \"", value, "\"");
  return *q;
}

void add_quantize_flag(CLI::App* sub, std::string* value) {
  sub->add_option("--quantize", *value,
                  "Quantize F32/F16/BF16 layer weights at load: q8_0, q4_0, q4_k (GGML "
                  "k-quant), int4 (MLX affine 4-bit, group 64) or none (an untied lm_head "
                  "becomes q8_0; GGUF/MLX-quantized weights stay as they are)");
}

void add_engine_flags(CLI::App* sub, EngineFlags* f) {
  EngineOptions& o = f->options;
  sub->add_option("--kv-cache-memory", o.kv_cache_gib, "KV cache size in GiB")
      ->check(CLI::Range(0.0, 4096.0));
  sub->add_option("--kv-cache-tokens", o.kv_cache_tokens, "KV cache size in tokens")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 30));
  sub->add_option("--block-size", o.block_size, "Tokens per KV block")->check(CLI::Range(1, 1024));
  sub->add_option(
      "--kv-cache-dtype", f->kv_dtype,
      "KV cache storage: f32, f16, bf16, int8 or fp8 (e4m3; both with a scale per token "
      "and head), or auto (f16 on the CPU, bf16 on a GPU)");
  sub->add_option("--device", o.device, "Where the model runs: cpu, cuda or cuda:N");
  sub->add_option("--gpu-memory-utilization", o.gpu_memory_utilization,
                  "Share of GPU memory for weights, activations and the KV pool")
      ->check(CLI::Range(0.05, 0.99));
  sub->add_flag("--enforce-eager", f->enforce_eager,
                "GPU: launch every kernel of a decode step instead of replaying a CUDA graph");
  sub->add_option("--overlap", f->overlap,
                  "Overlap scheduling: build step N+1 while the device runs step N (auto: on a "
                  "GPU; on; off)");
  sub->add_flag("--no-prefix-cache", f->no_prefix_cache, "Turn prefix caching off");
  add_quantize_flag(sub, &f->quantize);
  sub->add_option("--max-num-seqs", o.max_num_seqs, "Sequences per step at most")
      ->check(CLI::Range(1, 1 << 16));
  sub->add_option("--scheduling-policy", f->scheduling_policy,
                  "fcfs (arrival order) or priority (requests' `priority`, smaller first; a "
                  "running request of a worse priority gives way when the pool is full)")
      ->capture_default_str();
  sub->add_option("--max-model-len", o.max_model_len,
                  "Longest sequence, prompt + output (0: the model's context, capped by the pool)")
      ->check(CLI::Range(0, 1 << 24));
  sub->add_option("--max-num-batched-tokens", o.max_num_batched_tokens, "Tokens per step at most")
      ->check(CLI::Range(1, 1 << 20));
  sub->add_option("--tensor-parallel-size,--tp", f->tensor_parallel_size,
                  "shard the model over N processes started by `mpirun -np N` (CPU; MPI)")
      ->check(CLI::Range(1, 256));
  sub->add_option("--lora", o.lora,
                  "Apply this LoRA adapter (a PEFT directory: adapter_config.json + "
                  "adapter_model.safetensors) to the model");
  sub->add_option("--num-speculative-tokens", o.num_speculative_tokens,
                  "Speculative decoding: guesses checked per decode step (prompt lookup, or "
                  "--speculative-model's; 0: off, or 4 with a draft model)")
      ->check(CLI::Range(0, 64));
  sub->add_option("--speculative-model,--model-draft", o.speculative_model,
                  "Speculative decoding with this draft model (directory or .gguf) sharing the "
                  "model's tokenizer, instead of prompt lookup");
  sub->add_option("--draft-p-min", o.draft_p_min,
                  "Draft model: stop guessing at a guess the draft gives less than this "
                  "probability (0: never)")
      ->check(CLI::Range(0.0f, 1.0f));
  sub->add_option("--speculative-sampling", f->speculative_sampling,
                  "Draft model, sampled requests: match (greedy guesses, each row sampled as "
                  "without them: a seed gives the same tokens) or rejection (guesses drawn from "
                  "the draft, kept with probability min(1, p/q): more kept, same distribution)")
      ->capture_default_str();
  sub->add_option("--prompt-lookup-max", o.prompt_lookup_max,
                  "Prompt lookup: longest n-gram matched to find guesses")
      ->check(CLI::Range(1, 64));
  sub->add_option("--prompt-lookup-min", o.prompt_lookup_min,
                  "Prompt lookup: shortest n-gram matched to find guesses")
      ->check(CLI::Range(1, 64));
}

}  // namespace jinx::cli
