// Tensor parallelism (Megatron-style, as vLLM shards a decoder): rank r of N keeps
//   - q/k/v rows of its n_heads/N query heads and n_kv_heads/N KV heads (and their biases; with
//     fewer KV heads than ranks, the one KV head its query heads read),
//     gate/up rows of its intermediate/N slice: column-parallel, each rank computes its part;
//   - the matching columns of o and down: row-parallel, each rank's product is a partial sum
//     of the full output, added over the ranks by one all-reduce (Model::run);
//   - the embedding, norms and output head whole.
// Its KV cache then holds only its KV heads, so the cache and the attention are split too.
// Rows are views into the mapped file (zero copy); a column slice is copied, block for block
// when it falls on the format's block (MLX: group) boundaries, else as F32 values.
#include <algorithm>
#include <cstring>

#include "backend/cpu/kernels.h"
#include "core/check.h"
#include "model/model.h"

namespace jinx {

namespace {

size_t scale_bytes(const MlxQuant& q) { return q.scale_dtype == DType::F32 ? 4 : 2; }

WeightMatrix slice_rows(const WeightMatrix& w, int64_t r0, int64_t r1) {
  JINX_CHECK(r0 >= 0 && r0 < r1 && r1 <= w.rows, "row slice out of range");
  WeightMatrix s = w;
  s.rows = r1 - r0;
  s.data = static_cast<const uint8_t*>(w.data) + r0 * w.row_bytes;
  if (w.is_mlx()) {
    const size_t per_row = static_cast<size_t>(w.cols / w.mlx.group_size) * scale_bytes(w.mlx);
    s.mlx.scales = static_cast<const uint8_t*>(w.mlx.scales) + r0 * per_row;
    s.mlx.biases = static_cast<const uint8_t*>(w.mlx.biases) + r0 * per_row;
  }
  return s;
}

std::vector<float> slice_vector(const std::vector<float>& v, int64_t i0, int64_t i1) {
  if (v.empty()) return v;
  return std::vector<float>(v.begin() + i0, v.begin() + i1);
}

// Copies bytes [off, off + n) of each of `rows` rows of `stride` bytes into a new buffer.
std::vector<uint8_t> copy_columns(const void* src, int64_t rows, size_t stride, size_t off,
                                  size_t n) {
  std::vector<uint8_t> out(static_cast<size_t>(rows) * n);
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(&out[r * n], static_cast<const uint8_t*>(src) + r * stride + off, n);
  return out;
}

}  // namespace

// Columns [c0, c1) of w; the new buffers go to quant_storage_.
WeightMatrix Model::slice_columns(const WeightMatrix& w, int64_t c0, int64_t c1) {
  JINX_CHECK(c0 >= 0 && c0 < c1 && c1 <= w.cols, "column slice out of range");
  WeightMatrix s = w;
  s.cols = c1 - c0;
  if (w.is_mlx() && c0 % w.mlx.group_size == 0 && c1 % w.mlx.group_size == 0) {
    const int64_t g = w.mlx.group_size;
    const size_t sb = scale_bytes(w.mlx), per_row = static_cast<size_t>(w.cols / g) * sb;
    const size_t w0 = static_cast<size_t>(c0 * w.mlx.bits / 32) * 4;
    const size_t wn = static_cast<size_t>((c1 - c0) * w.mlx.bits / 32) * 4;
    quant_storage_.push_back(copy_columns(w.data, w.rows, w.row_bytes, w0, wn));
    s.data = quant_storage_.back().data();
    s.row_bytes = wn;
    for (const void** p : {&s.mlx.scales, &s.mlx.biases}) {
      quant_storage_.push_back(copy_columns(*p, w.rows, per_row, (c0 / g) * sb, ((c1 - c0) / g) * sb));
      *p = quant_storage_.back().data();
    }
    return s;
  }
  const DTypeTraits& t = traits(w.dtype);
  if (!w.is_mlx() && c0 % t.block_elems == 0 && c1 % t.block_elems == 0) {
    const size_t off = static_cast<size_t>(c0 / t.block_elems) * t.block_bytes;
    const size_t n = static_cast<size_t>((c1 - c0) / t.block_elems) * t.block_bytes;
    quant_storage_.push_back(copy_columns(w.data, w.rows, w.row_bytes, off, n));
    s.data = quant_storage_.back().data();
    s.row_bytes = n;
    return s;
  }
  // The slice starts or ends inside a block: keep its values exactly, as F32.
  std::vector<float> row(static_cast<size_t>(w.cols));
  std::vector<uint8_t> out(static_cast<size_t>(w.rows * s.cols) * sizeof(float));
  for (int64_t r = 0; r < w.rows; ++r) {
    cpu::weight_row(w, r, row.data());
    std::memcpy(&out[r * s.cols * sizeof(float)], row.data() + c0, s.cols * sizeof(float));
  }
  quant_storage_.push_back(std::move(out));
  s = WeightMatrix{};
  s.dtype = DType::F32;
  s.data = quant_storage_.back().data();
  s.rows = w.rows;
  s.cols = c1 - c0;
  s.row_bytes = static_cast<size_t>(s.cols) * sizeof(float);
  return s;
}

void Model::shard(std::shared_ptr<Communicator> comm) {
  const int n = comm->size(), r = comm->rank();
  ModelConfig& c = cfg_;
  // KV heads split over the ranks, or, when there are fewer than ranks, each replicated on
  // n / n_kv_heads ranks (as vLLM does): a rank's query heads then all read the one it keeps.
  const bool kv_split = c.n_kv_heads % n == 0;
  const bool kv_replicated = !kv_split && n % c.n_kv_heads == 0;
  if (c.n_heads % n != 0 || !(kv_split || kv_replicated) || c.intermediate_size % n != 0 ||
      c.moe_intermediate_size % n != 0 || c.shared_expert_intermediate_size % n != 0)
    fail("tensor parallelism over ", n, " processes needs the attention heads (", c.n_heads,
         "), the KV heads (", c.n_kv_heads, ") and the MLP widths (", c.intermediate_size,
         c.n_experts > 0 ? str(", experts ", c.moe_intermediate_size) : std::string(),
         c.shared_expert_intermediate_size > 0
             ? str(", shared expert ", c.shared_expert_intermediate_size)
             : std::string(),
         ") to divide by ", n);
  const int64_t hd = c.head_dim, heads = c.n_heads / n;
  const int64_t kv_heads = kv_split ? c.n_kv_heads / n : 1;
  const int64_t kv_first = kv_split ? r * kv_heads : r / (n / c.n_kv_heads);
  const int64_t ff = c.intermediate_size / n;
  const int64_t q0 = r * heads * hd, q1 = q0 + heads * hd;
  const int64_t k0 = kv_first * hd, k1 = k0 + kv_heads * hd;
  const int64_t f0 = r * ff, f1 = f0 + ff;
  // An MLP's share: its gate/up rows and down columns [w0, w1) of its width.
  auto shard_mlp = [&](Linear& gate, Linear& up, Linear& down, int64_t width) {
    const int64_t w0 = r * (width / n), w1 = w0 + width / n;
    gate = {slice_rows(gate.w, w0, w1), slice_vector(gate.bias, w0, w1), {}};
    up = {slice_rows(up.w, w0, w1), slice_vector(up.bias, w0, w1), {}};
    down.w = slice_columns(down.w, w0, w1);
    if (r != 0) down.bias.clear();
  };
  for (LayerWeights& L : w_.layers) {
    L.q = {slice_rows(L.q.w, q0, q1), slice_vector(L.q.bias, q0, q1), {}};
    L.k = {slice_rows(L.k.w, k0, k1), slice_vector(L.k.bias, k0, k1), {}};
    L.v = {slice_rows(L.v.w, k0, k1), slice_vector(L.v.bias, k0, k1), {}};
    L.o.w = slice_columns(L.o.w, q0, q1);
    L.sinks = slice_vector(L.sinks, r * heads, (r + 1) * heads);  // per query head (gpt-oss)
    if (r != 0) L.o.bias.clear();  // a row-parallel bias is added once, by rank 0, pre-sum
    if (L.experts.empty()) {
      shard_mlp(L.gate, L.up, L.down, c.intermediate_size);
      continue;
    }
    // A MoE layer: every expert (and the shared one) split like a dense MLP, the router whole
    // (each rank routes the same tokens the same way); moe_mlp's output is then a partial sum.
    for (Mlp& e : L.experts) shard_mlp(e.gate, e.up, e.down, c.moe_intermediate_size);
    if (L.shared.gate.w.rows > 0)
      shard_mlp(L.shared.gate, L.shared.up, L.shared.down, c.shared_expert_intermediate_size);
  }
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.intermediate_size = ff;
  c.moe_intermediate_size /= n;
  c.shared_expert_intermediate_size /= n;
  comm_ = std::move(comm);
}

}  // namespace jinx
