// jinx make-random-model: a random-weight Hugging Face checkpoint of a real model's exact shape,
// so that the engine can be benchmarked at real sizes where the real weights are not at hand.
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "core/check.h"
#include "core/half.h"
#include "loader/safetensors_writer.h"

namespace jinx::cli {

namespace {

struct Shape {
  const char* name;
  const char* arch;
  int64_t hidden, inter, layers, heads, kv_heads, vocab, ctx;
  double theta;
  bool tied;
};

constexpr Shape kShapes[] = {
    {"qwen2-0.5b", "Qwen2ForCausalLM", 896, 4864, 24, 14, 2, 151936, 32768, 1e6, true},
    {"qwen2-7b", "Qwen2ForCausalLM", 3584, 18944, 28, 28, 4, 152064, 32768, 1e6, false},
    {"smollm2-135m", "LlamaForCausalLM", 576, 1536, 30, 9, 3, 49152, 8192, 1e5, true},
};

// Weights ~ N(0, std) (norm weights 1), written in `dtype`.
SafetensorsEntry random_tensor(std::string name, std::vector<int64_t> shape, DType dtype,
                               float std, uint64_t seed) {
  return {std::move(name), dtype, std::move(shape), [=](uint8_t* out, size_t nbytes) {
            std::mt19937_64 rng(seed);
            std::normal_distribution<float> nd(0.0f, std);
            const size_t esize = traits(dtype).block_bytes, n = nbytes / esize;
            for (size_t i = 0; i < n; ++i) {
              const float v = std == 0.0f ? 1.0f : nd(rng);
              if (dtype == DType::F32) {
                std::memcpy(out + 4 * i, &v, 4);
              } else {
                uint16_t h = dtype == DType::BF16 ? f32_to_bf16(v) : f32_to_f16(v);
                std::memcpy(out + 2 * i, &h, 2);
              }
            }
          }};
}

void write_config(const Shape& s, const std::string& dir, const std::string& dtype) {
  // model_type lets transformers load the file too (a peer for benchmarks).
  const std::string arch = s.arch;
  const char* model_type = arch.rfind("Qwen2", 0) == 0 ? "qwen2" : "llama";
  nlohmann::ordered_json c = {
      {"architectures", {s.arch}}, {"model_type", model_type}, {"hidden_size", s.hidden}, {"intermediate_size", s.inter},
      {"num_hidden_layers", s.layers}, {"num_attention_heads", s.heads},
      {"num_key_value_heads", s.kv_heads}, {"vocab_size", s.vocab},
      {"max_position_embeddings", s.ctx}, {"rms_norm_eps", 1e-6}, {"rope_theta", s.theta},
      {"tie_word_embeddings", s.tied}, {"torch_dtype", dtype}, {"bos_token_id", 1},
      {"eos_token_id", 2}};
  std::ofstream(dir + "/config.json") << c.dump(2) << "\n";
}

void run(const std::string& like, const std::string& out, const std::string& dtype_name) {
  const Shape* s = nullptr;
  for (const auto& k : kShapes)
    if (like == k.name) s = &k;
  if (!s) fail("unknown --like \"", like, "\" (qwen2-0.5b, qwen2-7b, smollm2-135m)");
  DType dt = dtype_name == "f32" ? DType::F32 : dtype_name == "f16" ? DType::F16 : DType::BF16;
  if (dtype_name != "f32" && dtype_name != "f16" && dtype_name != "bf16")
    fail("--dtype must be f32, f16 or bf16");
  std::filesystem::create_directories(out);
  const int64_t H = s->hidden, hd = H / s->heads, q = s->heads * hd, kv = s->kv_heads * hd;
  const bool bias = std::string(s->arch) == "Qwen2ForCausalLM";
  std::vector<SafetensorsEntry> ts;
  uint64_t seed = 0;
  auto add = [&](std::string n, std::vector<int64_t> shape, float std) {
    ts.push_back(random_tensor(std::move(n), std::move(shape), dt, std, ++seed));
  };
  add("model.embed_tokens.weight", {s->vocab, H}, 0.02f);
  for (int64_t i = 0; i < s->layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {H}, 0.0f);
    add(p + "self_attn.q_proj.weight", {q, H}, 0.02f);
    add(p + "self_attn.k_proj.weight", {kv, H}, 0.02f);
    add(p + "self_attn.v_proj.weight", {kv, H}, 0.02f);
    if (bias) {
      add(p + "self_attn.q_proj.bias", {q}, 0.02f);
      add(p + "self_attn.k_proj.bias", {kv}, 0.02f);
      add(p + "self_attn.v_proj.bias", {kv}, 0.02f);
    }
    add(p + "self_attn.o_proj.weight", {H, q}, 0.02f);
    add(p + "post_attention_layernorm.weight", {H}, 0.0f);
    add(p + "mlp.gate_proj.weight", {s->inter, H}, 0.02f);
    add(p + "mlp.up_proj.weight", {s->inter, H}, 0.02f);
    add(p + "mlp.down_proj.weight", {H, s->inter}, 0.02f);
  }
  add("model.norm.weight", {H}, 0.0f);
  if (!s->tied) add("lm_head.weight", {s->vocab, H}, 0.02f);
  write_config(*s, out, dt == DType::F32 ? "float32" : dt == DType::F16 ? "float16" : "bfloat16");
  write_safetensors(out + "/model.safetensors", ts);
  std::printf("wrote %s: random %s (%s)\n", out.c_str(), s->name, dtype_name.c_str());
}

}  // namespace

void add_make_random_model(CLI::App& app) {
  auto like = std::make_shared<std::string>(), out = std::make_shared<std::string>(),
       dtype = std::make_shared<std::string>("bf16");
  CLI::App* sub = app.add_subcommand("make-random-model",
                                     "Write a random-weight checkpoint of a real model's shape");
  sub->add_option("--like", *like, "qwen2-0.5b, qwen2-7b or smollm2-135m")->required();
  sub->add_option("--out", *out, "Output directory")->required();
  sub->add_option("--dtype", *dtype, "f32, f16 or bf16");
  sub->callback([=] { run(*like, *out, *dtype); });
}

}  // namespace jinx::cli
