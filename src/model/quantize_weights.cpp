// --quantize q8_0|q4_0|q4_k|int4: the dense projection weights of a checkpoint become GGML
// blocks (or MLX affine 4-bit groups) in memory at load.
//
// What it costs: one pass over the quantized matrices (read from the mapping, dequantized to
// fp32 a row at a time, quantized, written), split over the cores; heap memory of
// 34/32 bytes (Q8_0), 18/32 bytes (Q4_0), 144/256 bytes (Q4_K) or 0.5 + 2 * 2/64 bytes (int4
// with bf16 scales and biases) per weight. Q4_K is the slowest to make (a 21-step scale search
// per 32 values).
//
// Fallbacks, as llama.cpp's quantizer does them: a Q4_K matrix whose rows are not a multiple of
// 256 becomes Q8_0 (llama.cpp picks Q5_0, a type Jinx does not run), and one whose rows are not
// a multiple of 32 either stays dense; int4 leaves matrices whose rows are not whole groups of
// 64 dense (as mlx_lm.convert does). The summary counts them. The mapped originals are no longer
// read afterwards, so the kernel may drop their pages; they stay mapped (other tensors of the same
// files are still in use).
#include <chrono>
#include <cstdio>
#include <string>

#include "backend/cpu/quantize.h"
#include "core/check.h"
#include "core/log.h"
#include "model/model.h"

namespace jinx {

namespace {

constexpr int kInt4Bits = 4, kInt4Group = 64;  // mlx_lm.convert -q defaults

DType dtype_of(WeightQuant q) {
  switch (q) {
    case WeightQuant::kQ8_0:
      return DType::Q8_0;
    case WeightQuant::kQ4_0:
      return DType::Q4_0;
    case WeightQuant::kQ4_K:
      return DType::Q4_K;
    case WeightQuant::kInt4:
      return DType::U32;  // MLX-packed words
    case WeightQuant::kNone:
      break;
  }
  fail("no quantized type for --quantize none");
}

bool is_dense(const WeightMatrix& w) {
  return !w.is_mlx() && (w.dtype == DType::F32 || w.dtype == DType::F16 || w.dtype == DType::BF16);
}

std::string fixed2(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string mib(size_t bytes) {
  return fixed2(static_cast<double>(bytes) / (1024.0 * 1024.0));
}

}  // namespace

std::optional<WeightQuant> weight_quant_from_name(std::string_view name) {
  if (name == "none") return WeightQuant::kNone;
  if (name == "q8_0") return WeightQuant::kQ8_0;
  if (name == "q4_0") return WeightQuant::kQ4_0;
  if (name == "q4_k") return WeightQuant::kQ4_K;
  if (name == "int4") return WeightQuant::kInt4;
  return std::nullopt;
}

const char* weight_quant_name(WeightQuant q) {
  switch (q) {
    case WeightQuant::kNone:
      return "none";
    case WeightQuant::kQ8_0:
      return "q8_0";
    case WeightQuant::kQ4_0:
      return "q4_0";
    case WeightQuant::kQ4_K:
      return "q4_k";
    case WeightQuant::kInt4:
      return "int4";
  }
  return "?";
}

void Model::quantize_weights(const LoadOptions& options) {
  const auto t0 = std::chrono::steady_clock::now();
  const DType to = dtype_of(options.quantize);
  ThreadPool pool(options.threads);
  int n_done = 0, n_fallback = 0, n_kept = 0;  // kept: dense, rows fit no block
  size_t bytes_before = 0, bytes_after = 0;
  auto install = [&](WeightMatrix* w, const WeightMatrix& q, std::vector<uint8_t> buf) {
    bytes_before += w->row_bytes * static_cast<size_t>(w->rows);
    bytes_after += buf.size();
    quant_storage_.push_back(std::move(buf));  // the buffer (and q.data) stays where it is
    *w = q;
    ++n_done;
  };
  auto quantize = [&](WeightMatrix* w, DType t) {
    if (w->rows == 0 || w->data == nullptr) return;  // absent (the dense MLP of a MoE layer)
    if (!is_dense(*w)) return;                       // MLX-packed or already block-quantized (GGUF)
    std::vector<uint8_t> buf;
    if (t == DType::U32) {
      if (!cpu::can_quantize_matrix_mlx(*w, kInt4Group)) {
        ++n_kept;
        return;
      }
      const WeightMatrix q = cpu::quantize_matrix_mlx(*w, kInt4Bits, kInt4Group, &buf, pool);
      install(w, q, std::move(buf));
      return;
    }
    if (!cpu::can_quantize_matrix(*w, t)) {
      if (t != DType::Q4_K || !cpu::can_quantize_matrix(*w, DType::Q8_0)) {
        ++n_kept;
        return;
      }
      t = DType::Q8_0;
      ++n_fallback;
    }
    const WeightMatrix q = cpu::quantize_matrix(*w, t, &buf, pool);
    install(w, q, std::move(buf));
  };
  // MoE layers: every expert (and the shared one); the router stays as it is (it is small, and
  // its scores pick the experts: vLLM and llama.cpp keep it unquantized too).
  for (LayerWeights& L : w_.layers) {
    for (Linear* l : {&L.q, &L.k, &L.v, &L.o, &L.gate, &L.up, &L.down, &L.shared.gate, &L.shared.up,
                      &L.shared.down})
      quantize(&l->w, to);
    for (Mlp& m : L.experts)
      for (Linear* l : {&m.gate, &m.up, &m.down}) quantize(&l->w, to);
  }
  // The embedding stays as it is (it is read a row at a time). A tied head, which is read whole
  // every token, gets a Q8_0 copy of it instead (as llama.cpp's files store a quantized
  // token_embd that serves as the head): 34/32 bytes per weight more memory, and per token
  // about half the bytes of a BF16 head.
  const bool tied = cfg_.tie_word_embeddings || w_.lm_head.data == w_.embed.data;
  const int n_layer_done = n_done;
  const int n_layer_fallback = n_fallback;
  size_t head_copy_bytes = 0;
  if (!tied) {
    quantize(&w_.lm_head, DType::Q8_0);
  } else if (is_dense(w_.embed) && cpu::can_quantize_matrix(w_.embed, DType::Q8_0)) {
    std::vector<uint8_t> buf;
    w_.lm_head = cpu::quantize_matrix(w_.embed, DType::Q8_0, &buf, pool);
    head_copy_bytes = buf.size();
    quant_storage_.push_back(std::move(buf));
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string target =
      to == DType::U32 ? str("MLX int4 (group ", kInt4Group, ")") : std::string(name(to));
  if (n_done == 0) {
    quantize_summary_ =
        str("--quantize ", weight_quant_name(options.quantize),
            ": nothing to quantize (weights are ", store_->dtype_summary(), "); left as they are");
  } else {
    quantize_summary_ = str(
        "--quantize ", weight_quant_name(options.quantize), ": ", n_layer_done,
        " layer matrices to ", target,
        n_layer_fallback ? str(" (", n_layer_fallback, " as Q8_0: rows not a multiple of 256)")
                         : std::string(),
        n_done > n_layer_done ? ", lm_head to Q8_0"
        : head_copy_bytes
            ? str(", tied lm_head: a Q8_0 copy of the embedding (", mib(head_copy_bytes), " MiB)")
        : tied ? ", lm_head tied (kept)"
               : "",
        n_kept ? str(", ", n_kept, " kept dense (rows not a whole number of blocks)")
               : std::string(),
        " | ", mib(bytes_before), " MiB -> ", mib(bytes_after), " MiB in memory, ", fixed2(s),
        " s on ", pool.size(), " threads");
  }
  log_info(quantize_summary_);
}

}  // namespace jinx
