// gpt-oss (GptOssForCausalLM; GGUF gpt-oss): the Llama layer with q/k/v/o biases, a learned sink
// per query head in the attention, and in every layer a MoE of biased experts (moe.cpp).
//
// The experts come in three layouts, all ending as one row-major [rows, cols] matrix per expert
// and projection:
//   GGUF (llama.cpp): gate / up / down stacked [E, rows, cols] (MXFP4 in the published files),
//     read in place; biases [E, rows].
//   Hugging Face BF16/F32 (transformers' own layout): gate_up_proj [E, H, 2 ff] multiplies x
//     from the left, gate and up in alternate columns; down_proj [E, ff, H]. Transposed into
//     copies at load (expert e's gate is column 2j of gate_up_proj[e] as row j).
//   Hugging Face MXFP4 (OpenAI's release): gate_up_proj_blocks [E, 2 ff, H / 32, 16] and
//     gate_up_proj_scales [E, 2 ff, H / 32] (gate rows even, up rows odd), down_proj_* likewise
//     [E, H, ff / 32, ...]. A block holds 32 E2M1 codes, element 2j in the low nibble of byte j,
//     and its exponent + 127; GGML's MXFP4 block is that exponent byte followed by 16 bytes with
//     element j in the low nibble and j + 16 in the high one. Repacked at load (same size).
#include <cstring>

#include "core/check.h"
#include "core/quant_blocks.h"
#include "model/model.h"

namespace jinx {

namespace {

using Owned = std::vector<std::vector<uint8_t>>;

const TensorView& need(const WeightStore& s, const std::string& name,
                       std::initializer_list<int64_t> shape) {
  const TensorView* v = s.tensor(name);
  if (!v) fail(s.path(), ": missing tensor ", name);
  if (v->shape != std::vector<int64_t>(shape)) {
    std::string want;
    for (int64_t d : shape) want += (want.empty() ? "" : ", ") + std::to_string(d);
    fail(name, ": expected shape [", want, "], file has ", v->shape_str());
  }
  return *v;
}

WeightMatrix owned_matrix(Owned* owned, std::vector<uint8_t> bytes, DType t, int64_t rows,
                          int64_t cols) {
  owned->push_back(std::move(bytes));
  WeightMatrix w;
  w.dtype = t;
  w.data = owned->back().data();
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = *bytes_for(t, cols);
  return w;
}

// Rows j = 0..n-1 of expert e's matrix from a [E, in, out] tensor that multiplies x from the
// left: row j is column col0 + j * step of t[e] (a float type, copied element by element).
WeightMatrix transposed(const TensorView& t, const std::string& name, int64_t e, int64_t col0,
                        int64_t step, int64_t n, Owned* owned) {
  if (t.dtype != DType::F32 && t.dtype != DType::F16 && t.dtype != DType::BF16)
    fail(name, ": expected F32, F16 or BF16 experts, got ", jinx::name(t.dtype));
  const int64_t in = t.shape[1], out = t.shape[2];
  const size_t es = t.dtype == DType::F32 ? 4 : 2;
  JINX_CHECK(t.nbytes >= static_cast<size_t>(t.numel()) * es, name, ": tensor data too short");
  const auto* src = static_cast<const uint8_t*>(t.data) + static_cast<size_t>(e * in * out) * es;
  std::vector<uint8_t> dst(static_cast<size_t>(n * in) * es);
  for (int64_t j = 0; j < n; ++j)
    for (int64_t i = 0; i < in; ++i)
      std::memcpy(&dst[static_cast<size_t>(j * in + i) * es],
                  src + static_cast<size_t>(i * out + col0 + j * step) * es, es);
  return owned_matrix(owned, std::move(dst), t.dtype, n, in);
}

// Rows row0, row0 + step, ... (n of them) of expert e from OpenAI's MXFP4 blocks and scales
// ([E, rows, cols / 32, 16] and [E, rows, cols / 32], uint8), as GGML MXFP4 rows.
WeightMatrix repacked_mxfp4(const TensorView& blocks, const TensorView& scales,
                            const std::string& name, int64_t e, int64_t row0, int64_t step,
                            int64_t n, Owned* owned) {
  if (blocks.dtype != DType::U8 || scales.dtype != DType::U8)
    fail(name, ": MXFP4 blocks and scales must be uint8");
  const int64_t rows = blocks.shape[1], nb = blocks.shape[2];
  JINX_CHECK(blocks.nbytes >= static_cast<size_t>(blocks.numel()) &&
                 scales.nbytes >= static_cast<size_t>(scales.numel()),
             name, ": tensor data too short");
  const auto* b = static_cast<const uint8_t*>(blocks.data);
  const auto* sc = static_cast<const uint8_t*>(scales.data);
  std::vector<uint8_t> dst(static_cast<size_t>(n * nb) * sizeof(BlockMXFP4));
  auto* out = reinterpret_cast<BlockMXFP4*>(dst.data());
  for (int64_t j = 0; j < n; ++j) {
    const int64_t r = e * rows + row0 + j * step;
    for (int64_t k = 0; k < nb; ++k) {
      const uint8_t* in = b + static_cast<size_t>((r * nb + k) * 16);
      BlockMXFP4& o = out[j * nb + k];
      o.e = sc[r * nb + k];
      for (int q = 0; q < 16; ++q) {
        // Elements q and q + 16: bytes q / 2 and 8 + q / 2 of the source, nibble q % 2.
        const int shift = 4 * (q % 2);
        const uint8_t lo = (in[q / 2] >> shift) & 0xF, hi = (in[8 + q / 2] >> shift) & 0xF;
        o.qs[q] = static_cast<uint8_t>(lo | (hi << 4));
      }
    }
  }
  return owned_matrix(owned, std::move(dst), DType::MXFP4, n, nb * 32);
}

std::vector<float> slice(const std::vector<float>& v, int64_t start, int64_t step, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) out[j] = v[start + j * step];
  return out;
}

void load_hf_experts(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l,
                     Owned* owned) {
  const std::string p = "model.layers." + std::to_string(i) + ".mlp.experts.";
  const int64_t E = c.n_experts, H = c.hidden_size, ff = c.moe_intermediate_size;
  const std::vector<float> gu_bias = s.vector(p + "gate_up_proj_bias", E * 2 * ff);
  const std::vector<float> dn_bias = s.vector(p + "down_proj_bias", E * H);
  const bool mx = c.mxfp4_experts;
  if (mx && (H % 32 != 0 || ff % 32 != 0))
    fail(s.path(), ": MXFP4 experts need hidden and expert widths that are multiples of 32");
  const TensorView* gu = mx ? nullptr : &need(s, p + "gate_up_proj", {E, H, 2 * ff});
  const TensorView* dn = mx ? nullptr : &need(s, p + "down_proj", {E, ff, H});
  const TensorView* gu_b = mx ? &need(s, p + "gate_up_proj_blocks", {E, 2 * ff, H / 32, 16}) : nullptr;
  const TensorView* gu_s = mx ? &need(s, p + "gate_up_proj_scales", {E, 2 * ff, H / 32}) : nullptr;
  const TensorView* dn_b = mx ? &need(s, p + "down_proj_blocks", {E, H, ff / 32, 16}) : nullptr;
  const TensorView* dn_s = mx ? &need(s, p + "down_proj_scales", {E, H, ff / 32}) : nullptr;
  for (int64_t e = 0; e < E; ++e) {
    Mlp m;
    if (mx) {
      m.gate.w = repacked_mxfp4(*gu_b, *gu_s, p + "gate_up_proj", e, 0, 2, ff, owned);
      m.up.w = repacked_mxfp4(*gu_b, *gu_s, p + "gate_up_proj", e, 1, 2, ff, owned);
      m.down.w = repacked_mxfp4(*dn_b, *dn_s, p + "down_proj", e, 0, 1, H, owned);
    } else {
      m.gate.w = transposed(*gu, p + "gate_up_proj", e, 0, 2, ff, owned);
      m.up.w = transposed(*gu, p + "gate_up_proj", e, 1, 2, ff, owned);
      m.down.w = transposed(*dn, p + "down_proj", e, 0, 1, H, owned);
    }
    m.gate.bias = slice(gu_bias, e * 2 * ff, 2, ff);
    m.up.bias = slice(gu_bias, e * 2 * ff + 1, 2, ff);
    m.down.bias = slice(dn_bias, e * H, 1, H);
    l->experts.push_back(std::move(m));
  }
}

void load_gguf_experts(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l) {
  const std::string b = "blk." + std::to_string(i) + ".";
  const int64_t E = c.n_experts, H = c.hidden_size, ff = c.moe_intermediate_size;
  const std::vector<float> g_bias = s.vector(b + "ffn_gate_exps.bias", E * ff);
  const std::vector<float> u_bias = s.vector(b + "ffn_up_exps.bias", E * ff);
  const std::vector<float> d_bias = s.vector(b + "ffn_down_exps.bias", E * H);
  for (int64_t e = 0; e < E; ++e) {
    Mlp m;
    m.gate.w = s.stacked_matrix(b + "ffn_gate_exps.weight", e, E, ff, H);
    m.up.w = s.stacked_matrix(b + "ffn_up_exps.weight", e, E, ff, H);
    m.down.w = s.stacked_matrix(b + "ffn_down_exps.weight", e, E, H, ff);
    m.gate.bias = slice(g_bias, e * ff, 1, ff);
    m.up.bias = slice(u_bias, e * ff, 1, ff);
    m.down.bias = slice(d_bias, e * H, 1, H);
    l->experts.push_back(std::move(m));
  }
}

}  // namespace

void load_gpt_oss_layer(const WeightStore& s, const ModelConfig& c, int64_t i, LayerWeights* l,
                        Owned* owned) {
  const std::string p = "model.layers." + std::to_string(i) + ".";
  const int64_t h = c.hidden_size;
  if (!c.is_moe_layer(i)) fail(s.path(), ": gpt-oss layer ", i, " without experts");
  load_llama_attention(s, c, i, l);  // norms, q/k/v/o, q/k/v biases
  if (c.attention_bias) l->o.bias = s.vector(p + "self_attn.o_proj.bias", h);
  l->sinks = s.vector(s.is_gguf() ? "blk." + std::to_string(i) + ".attn_sinks.weight"
                                  : p + "self_attn.sinks",
                      c.n_heads);
  l->router.w = s.matrix(p + "mlp.router", c.n_experts, h);
  l->router.bias = s.vector(p + "mlp.router.bias", c.n_experts);
  l->experts.reserve(static_cast<size_t>(c.n_experts));
  if (s.is_gguf()) {
    load_gguf_experts(s, c, i, l);
  } else {
    load_hf_experts(s, c, i, l, owned);
  }
}

}  // namespace jinx
