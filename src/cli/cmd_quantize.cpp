// jinx quantize IN OUT.gguf --type q8_0|q4_0|q4_k: writes a quantized GGUF v3 that Jinx and
// llama.cpp both load, from a Hugging Face directory (config.json + safetensors +
// tokenizer.json) or from another GGUF.
//
// What goes in the file (the same weights `--quantize <type>` makes at load, byte for byte):
//  - layer projections (attn_q/k/v/output, ffn_gate/up/down) in the chosen type; for q4_k a
//    matrix whose rows are not a multiple of 256 becomes Q8_0 (llama.cpp picks Q5_0, which
//    Jinx does not run), and one that fits no block stays as it is;
//  - the head (`output`) as Q8_0, from lm_head or, tied, from the embedding (llama.cpp uses
//    Q6_K for q4_k files);
//  - the token embedding as stored (F32/F16/BF16): it is read one row per token, so quantizing
//    it saves file size but no decode bandwidth (llama.cpp's quantizer would make it the
//    chosen type);
//  - norms, biases and rope factors as F32.
// Llama Q/K rows are permuted to llama.cpp's layout (rotation pairs adjacent), as
// convert_hf_to_gguf.py does. Already block-quantized GGUF tensors are copied unchanged.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/cpu/dequant.h"
#include "backend/cpu/quantize.h"
#include "cli/commands.h"
#include "cli/common.h"
#include "core/check.h"
#include "core/thread_pool.h"
#include "loader/gguf.h"
#include "loader/gguf_writer.h"
#include "model/config.h"
#include "model/weight_store.h"

namespace jinx::cli {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Args {
  std::string in, out, type = "q8_0", pre;
  int threads = 0;
};

// GGUF token types (llama.cpp's llama_token_type).
constexpr int32_t kTokNormal = 1, kTokControl = 3, kTokUserDefined = 4, kTokUnused = 5;

DType target_type(const std::string& t) {
  if (t == "q8_0") return DType::Q8_0;
  if (t == "q4_0") return DType::Q4_0;
  if (t == "q4_k") return DType::Q4_K;
  fail("--type must be q8_0, q4_0 or q4_k, not \"", t, "\"");
}

// llama_ftype for general.file_type (informational; the closest "mostly" type).
uint32_t file_type_of(DType t) {
  return t == DType::Q8_0 ? 7 : t == DType::Q4_0 ? 2 : 14;  // Q4_K_S
}

bool is_dense(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

// The type a dense [rows, cols] matrix becomes: `want`, or Q8_0 for Q4_K rows that are not a
// multiple of 256, or nullopt (kept) when no block fits.
std::optional<DType> matrix_type(DType want, int64_t cols) {
  if (cols % traits(want).block_elems == 0) return want;
  if (want == DType::Q4_K && cols % traits(DType::Q8_0).block_elems == 0) return DType::Q8_0;
  return std::nullopt;
}

struct Counts {
  std::map<std::string, int> by_type;
  int fallback = 0, kept = 0;
};

// Adds w ([rows, cols], any dense or block type) as tensor `name`, quantized to `to` when it is
// dense (nullopt: copied as it is). perm_heads > 0: rows permuted HF -> GGUF llama layout in
// groups of head_dim (perm_heads heads).
void add_matrix(GgufWriter& g, const std::string& name, const WeightMatrix& w,
                std::optional<DType> to, int64_t perm_heads, ThreadPool& pool, Counts& counts) {
  if (w.is_mlx()) fail(name, ": MLX-quantized input is not supported (use a float checkpoint)");
  const DType out_type = to && is_dense(w.dtype) ? *to : w.dtype;
  counts.by_type[std::string(jinx::name(out_type))]++;
  const int64_t rows = w.rows, cols = w.cols;
  JINX_CHECK(perm_heads == 0 || rows % (2 * perm_heads) == 0, name, ": rows do not split in heads");
  g.add_tensor(name, out_type, {rows, cols}, [=, &pool](uint8_t* out, size_t nbytes) {
    std::vector<uint8_t> storage;
    const uint8_t* src = static_cast<const uint8_t*>(w.data);
    size_t rb = w.row_bytes;
    if (out_type != w.dtype) {
      const WeightMatrix q = cpu::quantize_matrix(w, out_type, &storage, pool);
      src = storage.data();
      rb = q.row_bytes;
    }
    JINX_CHECK(rb * static_cast<size_t>(rows) == nbytes, name, ": size mismatch");
    const int64_t hd = perm_heads ? rows / perm_heads : 0;
    for (int64_t r = 0; r < rows; ++r) {
      int64_t from = r;
      if (perm_heads) {  // new row (h, j, s) <- old row (h, s, j), j < hd/2, s < 2
        const int64_t h = r / hd, j = (r % hd) / 2, s = r % 2;
        from = h * hd + s * (hd / 2) + j;
      }
      std::memcpy(out + r * rb, src + from * rb, rb);
    }
  });
}

void add_f32_vector(GgufWriter& g, const std::string& name, std::vector<float> v) {
  const int64_t n = static_cast<int64_t>(v.size());
  g.add_tensor(name, DType::F32, {n}, [v = std::move(v)](uint8_t* out, size_t nbytes) {
    JINX_CHECK(nbytes == v.size() * 4, "vector size mismatch");
    std::memcpy(out, v.data(), nbytes);
  });
}

const char* gguf_arch(Arch a) {
  switch (a) {
    case Arch::kLlama:
      return "llama";
    case Arch::kQwen2:
      return "qwen2";
    case Arch::kQwen3:
      return "qwen3";
    case Arch::kGemma3:
      return "gemma3";
    case Arch::kGptOss:
      return "gpt-oss";
  }
  return "?";
}

// Llama-3 rope scaling as llama.cpp stores it: one divisor per frequency (rope_freqs.weight).
std::vector<float> llama3_rope_factors(const ModelConfig& c) {
  std::vector<float> out(static_cast<size_t>(c.head_dim / 2));
  for (int64_t i = 0; i < c.head_dim / 2; ++i) {
    const double f = 1.0 / std::pow(static_cast<double>(c.rope_theta), 2.0 * i / c.head_dim);
    const double wavelen = 2.0 * M_PI / f;
    const double low = c.rope_original_max_pos / c.rope_low_freq_factor;
    const double high = c.rope_original_max_pos / c.rope_high_freq_factor;
    double div = 1.0;
    if (wavelen > low) {
      div = c.rope_factor;
    } else if (wavelen >= high) {
      const double smooth = (c.rope_original_max_pos / wavelen - c.rope_low_freq_factor) /
                            (c.rope_high_freq_factor - c.rope_low_freq_factor);
      div = 1.0 / ((1.0 - smooth) / c.rope_factor + smooth);
    }
    out[static_cast<size_t>(i)] = static_cast<float>(div);
  }
  return out;
}

void add_arch_keys(GgufWriter& g, const ModelConfig& c, const std::string& model_name, DType type) {
  const std::string a = gguf_arch(c.arch), p = a + ".";
  g.add_string("general.architecture", a);
  g.add_string("general.name", model_name);
  g.add_u32("general.file_type", file_type_of(type));
  g.add_u32("general.quantization_version", 2);
  g.add_u32(p + "context_length", static_cast<uint32_t>(c.max_position_embeddings));
  g.add_u32(p + "embedding_length", static_cast<uint32_t>(c.hidden_size));
  g.add_u32(p + "block_count", static_cast<uint32_t>(c.n_layers));
  g.add_u32(p + "feed_forward_length", static_cast<uint32_t>(c.intermediate_size));
  g.add_u32(p + "attention.head_count", static_cast<uint32_t>(c.n_heads));
  g.add_u32(p + "attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  g.add_f32(p + "rope.freq_base", c.rope_theta);
  g.add_f32(p + "attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  g.add_u32(p + "vocab_size", static_cast<uint32_t>(c.vocab_size));
  g.add_u32(p + "rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  if (c.arch == Arch::kQwen3 || c.head_dim * c.n_heads != c.hidden_size) {
    g.add_u32(p + "attention.key_length", static_cast<uint32_t>(c.head_dim));
    g.add_u32(p + "attention.value_length", static_cast<uint32_t>(c.head_dim));
  }
  if (c.rope_scaling == RopeScaling::kLinear) {
    g.add_string(p + "rope.scaling.type", "linear");
    g.add_f32(p + "rope.scaling.factor", c.rope_factor);
  } else if (c.rope_scaling == RopeScaling::kYarn) {
    // llama.cpp's keys (convert_hf_to_gguf.py writes the first three for Qwen2.5); its
    // magnitude is attn_factor * (1 + 0.1 ln factor), so attn_factor carries the rest of ours.
    if (!c.rope_truncate) fail("quantize: yarn with truncate = false has no GGUF form");
    g.add_string(p + "rope.scaling.type", "yarn");
    g.add_f32(p + "rope.scaling.factor", c.rope_factor);
    g.add_u32(p + "rope.scaling.original_context_length",
              static_cast<uint32_t>(c.rope_original_max_pos));
    const double mscale = c.rope_factor > 1.0f ? 1.0 + 0.1 * std::log(c.rope_factor) : 1.0;
    if (std::fabs(c.rope_attention_factor / mscale - 1.0) > 1e-6)
      g.add_f32(p + "rope.scaling.attn_factor", static_cast<float>(c.rope_attention_factor / mscale));
    if (c.rope_beta_fast != 32.0f) g.add_f32(p + "rope.scaling.yarn_beta_fast", c.rope_beta_fast);
    if (c.rope_beta_slow != 1.0f) g.add_f32(p + "rope.scaling.yarn_beta_slow", c.rope_beta_slow);
  }
}

json read_json(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail(p.string(), ": cannot open");
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded()) fail(p.string(), ": invalid JSON");
  return j;
}

// llama.cpp's name for the pre-tokenizer of a tokenizer.json (convert_hf_to_gguf.py finds it by
// hashing the tokenizer's output; here by the pre-tokenizer's regex, for the families Jinx knows).
std::string detect_pre(const json& pre) {
  std::string text = pre.dump();
  const bool digits = text.find("\"Digits\"") != std::string::npos;
  const bool byte_level = text.find("\"ByteLevel\"") != std::string::npos;
  if (text.find("\\\\p{N}{1,3}") != std::string::npos) return "llama-bpe";
  if (text.find("[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}|") != std::string::npos)
    return "qwen2";
  if (digits && byte_level) return "smollm";
  if (byte_level && text.find("\"Split\"") == std::string::npos) return "gpt-2";
  fail(
      "tokenizer.json: cannot tell llama.cpp's name for this pre-tokenizer; pass --pre "
      "(qwen2, llama-bpe, smollm, gpt-2, ...)");
}

int32_t token_id(const std::map<std::string, int32_t>& ids, const json& tok) {
  std::string s;
  if (tok.is_string())
    s = tok.get<std::string>();
  else if (tok.is_object() && tok.contains("content") && tok["content"].is_string())
    s = tok["content"].get<std::string>();
  else
    return -1;
  auto it = ids.find(s);
  return it == ids.end() ? -1 : it->second;
}

// tokenizer.ggml.* from tokenizer.json (+ tokenizer_config.json): byte-level BPE only.
void add_hf_tokenizer(GgufWriter& g, const fs::path& dir, const ModelConfig& c,
                      const std::string& pre_override) {
  const json tj = read_json(dir / "tokenizer.json");
  if (!tj.contains("model") || !tj["model"].is_object() || tj["model"].value("type", "") != "BPE")
    fail("tokenizer.json: only byte-level BPE (gpt2-style) tokenizers can be written to GGUF");
  const json& model = tj["model"];
  const json pre = tj.value("pre_tokenizer", json());
  if (pre.dump().find("\"ByteLevel\"") == std::string::npos)
    fail("tokenizer.json: not a byte-level BPE tokenizer (no ByteLevel pre-tokenizer)");
  if (!model.contains("vocab") || !model["vocab"].is_object())
    fail("tokenizer.json: model.vocab is not an object");
  std::map<std::string, int32_t> ids;
  int64_t n = c.vocab_size;
  auto put = [&](const std::string& s, const json& id) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= (1 << 24))
      fail("tokenizer.json: bad id for token \"", s, "\"");
    ids[s] = id.get<int32_t>();
    n = std::max<int64_t>(n, id.get<int64_t>() + 1);
  };
  for (auto it = model["vocab"].begin(); it != model["vocab"].end(); ++it) put(it.key(), *it);
  std::map<int32_t, bool> added;  // id -> special
  for (const json& t : tj.value("added_tokens", json::array())) {
    if (!t.is_object() || !t.contains("content") || !t["content"].is_string() || !t.contains("id"))
      fail("tokenizer.json: bad added_tokens entry");
    put(t["content"].get<std::string>(), t["id"]);
    added[t["id"].get<int32_t>()] = t.value("special", false);
  }
  std::vector<std::string> tokens(static_cast<size_t>(n));
  std::vector<int32_t> types(static_cast<size_t>(n), kTokUnused);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = "[PAD" + std::to_string(i) + "]";
  for (const auto& [s, id] : ids) {
    tokens[static_cast<size_t>(id)] = s;
    auto a = added.find(id);
    types[static_cast<size_t>(id)] =
        a == added.end() ? kTokNormal : (a->second ? kTokControl : kTokUserDefined);
  }
  std::vector<std::string> merges;
  for (const json& m : model.value("merges", json::array())) {
    if (m.is_string())
      merges.push_back(m.get<std::string>());
    else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
      merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    else
      fail("tokenizer.json: bad merge entry");
  }
  g.add_string("tokenizer.ggml.model", "gpt2");
  g.add_string("tokenizer.ggml.pre", pre_override.empty() ? detect_pre(pre) : pre_override);
  g.add_string_array("tokenizer.ggml.tokens", tokens);
  g.add_i32_array("tokenizer.ggml.token_type", types);
  g.add_string_array("tokenizer.ggml.merges", merges);
  json tc = fs::exists(dir / "tokenizer_config.json") ? read_json(dir / "tokenizer_config.json")
                                                      : json::object();
  if (c.bos_token_id >= 0) g.add_u32("tokenizer.ggml.bos_token_id", c.bos_token_id);
  if (!c.eos_token_ids.empty()) g.add_u32("tokenizer.ggml.eos_token_id", c.eos_token_ids[0]);
  if (const int32_t pad = token_id(ids, tc.value("pad_token", json())); pad >= 0)
    g.add_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(pad));
  // add_bos: tokenizer_config's flag, else a post-processor template that starts with a token.
  bool add_bos = false;
  if (tc.contains("add_bos_token") && tc["add_bos_token"].is_boolean()) {
    add_bos = tc["add_bos_token"].get<bool>();
  } else if (tj.contains("post_processor") && tj["post_processor"].is_object()) {
    const std::string pp = tj["post_processor"].dump();
    add_bos = pp.find("\"single\":[{\"SpecialToken\"") != std::string::npos;
  }
  g.add_bool("tokenizer.ggml.add_bos_token", add_bos);
  std::string tmpl;
  if (tc.contains("chat_template") && tc["chat_template"].is_string())
    tmpl = tc["chat_template"].get<std::string>();
  else if (fs::exists(dir / "chat_template.jinja"))
    tmpl = read_file((dir / "chat_template.jinja").string());
  if (!tmpl.empty()) g.add_string("tokenizer.chat_template", tmpl);
}

void print_counts(const Args& a, const Counts& counts, size_t n_tensors) {
  std::string types;
  for (const auto& [t, n] : counts.by_type)
    types += (types.empty() ? "" : ", ") + t + " x " + std::to_string(n);
  std::printf("wrote %s: %zu tensors; matrices %s", a.out.c_str(), n_tensors, types.c_str());
  if (counts.fallback) std::printf(" (%d as Q8_0: rows not a multiple of 256)", counts.fallback);
  if (counts.kept) std::printf(" (%d kept: rows fit no block)", counts.kept);
  std::printf("\n");
}

void from_hf(const Args& a, DType type, ThreadPool& pool) {
  const fs::path dir(a.in);
  if (!fs::exists(dir / "tokenizer.json"))
    fail(a.in, ": no tokenizer.json (a GGUF needs the tokenizer)");
  auto store = WeightStore::open(a.in);
  const ModelConfig& c = store->config();
  if (c.quant_bits) fail(a.in, ": MLX-quantized checkpoints cannot be re-quantized");
  if (c.n_experts > 0)
    fail(a.in, ": mixture-of-experts checkpoints cannot be written to GGUF yet (--quantize at "
         "load works)");
  if (c.arch == Arch::kGemma3)
    fail(a.in, ": Gemma 3 checkpoints cannot be written to GGUF yet (--quantize at load works)");
  GgufWriter g;
  add_arch_keys(g, c, dir.filename().string(), type);
  add_hf_tokenizer(g, dir, c, a.pre);
  Counts counts;
  auto proj_type = [&](int64_t cols) {
    auto t = matrix_type(type, cols);
    if (!t)
      ++counts.kept;
    else if (*t != type)
      ++counts.fallback;
    return t;
  };
  const int64_t H = c.hidden_size, hd = c.head_dim, I = c.intermediate_size;
  const int64_t qd = c.n_heads * hd, kvd = c.n_kv_heads * hd;
  const bool llama = c.arch == Arch::kLlama;
  add_matrix(g, "token_embd.weight", store->matrix("model.embed_tokens", c.vocab_size, H),
             std::nullopt, 0, pool, counts);
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string hf = "model.layers." + std::to_string(i) + ".",
                      b = "blk." + std::to_string(i) + ".";
    add_f32_vector(g, b + "attn_norm.weight", store->vector(hf + "input_layernorm.weight", H));
    struct P {
      const char *hf, *gg;
      int64_t rows, cols, perm;
      bool qkv;  // may have a bias (Qwen2)
    };
    const P projs[] = {{"self_attn.q_proj", "attn_q", qd, H, llama ? c.n_heads : 0, true},
                       {"self_attn.k_proj", "attn_k", kvd, H, llama ? c.n_kv_heads : 0, true},
                       {"self_attn.v_proj", "attn_v", kvd, H, 0, true},
                       {"self_attn.o_proj", "attn_output", H, qd, 0, false},
                       {"mlp.gate_proj", "ffn_gate", I, H, 0, false},
                       {"mlp.up_proj", "ffn_up", I, H, 0, false},
                       {"mlp.down_proj", "ffn_down", H, I, 0, false}};
    for (const P& p : projs) {
      add_matrix(g, b + p.gg + ".weight", store->matrix(hf + p.hf, p.rows, p.cols),
                 proj_type(p.cols), p.perm, pool, counts);
      if (c.attention_bias && p.qkv && store->has(hf + p.hf + ".bias"))
        add_f32_vector(g, b + p.gg + ".bias", store->vector(hf + p.hf + ".bias", p.rows));
    }
    if (c.qk_norm) {
      add_f32_vector(g, b + "attn_q_norm.weight",
                     store->vector(hf + "self_attn.q_norm.weight", hd));
      add_f32_vector(g, b + "attn_k_norm.weight",
                     store->vector(hf + "self_attn.k_norm.weight", hd));
    }
    add_f32_vector(g, b + "ffn_norm.weight",
                   store->vector(hf + "post_attention_layernorm.weight", H));
  }
  add_f32_vector(g, "output_norm.weight", store->vector("model.norm.weight", H));
  // The head as Q8_0: an untied lm_head, or a copy of a tied embedding (what --quantize does at
  // load; llama.cpp uses an output.weight when the file has one).
  const auto head_type = matrix_type(DType::Q8_0, H);
  if (!c.tie_word_embeddings || head_type)
    add_matrix(g, "output.weight",
               store->matrix(c.tie_word_embeddings ? "model.embed_tokens" : "lm_head",
                             c.vocab_size, H),
               head_type, 0, pool, counts);
  if (c.rope_scaling == RopeScaling::kLlama3)
    add_f32_vector(g, "rope_freqs.weight", llama3_rope_factors(c));
  g.write(a.out);
  print_counts(a, counts, g.n_tensors());
}

// blk.N.<projection>.weight
bool is_projection(const std::string& name) {
  static const std::regex kRe(
      R"(blk\.\d+\.(attn_q|attn_k|attn_v|attn_output|ffn_gate|ffn_up|ffn_down)\.weight)");
  return std::regex_match(name, kRe);
}

void from_gguf(const Args& a, DType type, ThreadPool& pool) {
  GgufFile f(a.in);
  (void)config_from_gguf(f);  // an architecture Jinx runs, with sane sizes
  GgufWriter g;
  for (const GgufKV& kv : f.metadata()) {
    if (kv.key == "general.file_type" || kv.key == "general.quantization_version" ||
        kv.key == "general.alignment")
      continue;
    g.add_value(kv.key, kv.value);
  }
  g.add_u32("general.file_type", file_type_of(type));
  g.add_u32("general.quantization_version", 2);
  Counts counts;
  for (const GgufTensor& t : f.tensors()) {
    const TensorView& v = t.view;
    const bool matrix = v.shape.size() == 2;
    const bool proj = matrix && is_projection(t.name), head = matrix && t.name == "output.weight";
    if ((proj || head) && is_dense(v.dtype)) {
      WeightMatrix w;
      w.dtype = v.dtype;
      w.data = v.data;
      w.rows = v.shape[0];
      w.cols = v.shape[1];
      w.row_bytes = *bytes_for(v.dtype, w.cols);
      auto to = head ? matrix_type(DType::Q8_0, w.cols) : matrix_type(type, w.cols);
      if (proj && !to) ++counts.kept;
      if (proj && to && *to != type) ++counts.fallback;
      add_matrix(g, t.name, w, to, 0, pool, counts);
      continue;
    }
    if (matrix) counts.by_type[std::string(name(v.dtype))]++;
    const uint8_t* src = static_cast<const uint8_t*>(v.data);
    g.add_tensor(t.name, v.dtype, v.shape, [src, n = v.nbytes](uint8_t* out, size_t nbytes) {
      JINX_CHECK(nbytes == n, "tensor size mismatch");
      std::memcpy(out, src, nbytes);
    });
  }
  if (fs::exists(a.out) && fs::equivalent(a.in, a.out)) fail(a.out, ": would overwrite the input");
  g.write(a.out);
  print_counts(a, counts, g.n_tensors());
}

void run(const Args& a) {
  const DType type = target_type(a.type);
  ThreadPool pool(a.threads);
  if (fs::is_directory(a.in))
    from_hf(a, type, pool);
  else if (fs::is_regular_file(a.in))
    from_gguf(a, type, pool);
  else
    fail(a.in, ": no such file or directory");
}

}  // namespace

void add_quantize(CLI::App& app) {
  auto args = std::make_shared<Args>();
  CLI::App* sub =
      app.add_subcommand("quantize",
                         "Write a quantized GGUF (readable by llama.cpp) from a Hugging Face "
                         "directory or a GGUF");
  sub->add_option("IN", args->in,
                  "Model directory (config.json, safetensors, tokenizer.json) "
                  "or .gguf file")
      ->required();
  sub->add_option("OUT", args->out, "Output .gguf file")->required();
  sub->add_option("--type", args->type, "q8_0, q4_0 or q4_k (default q8_0)");
  sub->add_option("--threads", args->threads, "Threads for quantizing (0: every core)")
      ->check(CLI::Range(0, 1024));
  sub->add_option("--pre", args->pre,
                  "llama.cpp pre-tokenizer name (qwen2, llama-bpe, smollm, ...); detected from "
                  "tokenizer.json when not given");
  sub->callback([args] { run(*args); });
}

}  // namespace jinx::cli
