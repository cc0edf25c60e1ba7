#include "loader/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace jinx {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// A safetensors header nests three levels deep (root, tensor entry, shape array); the index
// file four. Anything deeper is corrupt, and the bound keeps hostile nesting cheap.
constexpr int kMaxJsonDepth = 8;

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = v << 8 | p[i];
  return v;
}

// Parses `text` as JSON, rejecting duplicate object keys (nlohmann would silently keep the
// last one) and nesting deeper than kMaxJsonDepth. `what` names the source in errors.
json parse_json_strict(std::string_view text, const std::string& what) {
  std::vector<std::set<std::string>> keys;  // one key set per open object
  json::parser_callback_t cb = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        if (depth >= kMaxJsonDepth) fail(what, ": JSON nested deeper than ", kMaxJsonDepth);
        keys.emplace_back();
        break;
      case json::parse_event_t::array_start:
        if (depth >= kMaxJsonDepth) fail(what, ": JSON nested deeper than ", kMaxJsonDepth);
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key: {
        const auto& k = parsed.get_ref<const std::string&>();
        if (keys.empty() || !keys.back().insert(k).second)
          fail(what, ": duplicate JSON key '", k, "'");
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    fail(what, ": invalid JSON: ", e.what());
  }
}

std::string tensor_ctx(const std::string& path, const std::string& name) {
  return str(path, ": tensor '", name, "'");
}

DType parse_dtype(const json& entry, const std::string& ctx) {
  auto it = entry.find("dtype");
  if (it == entry.end()) fail(ctx, ": missing \"dtype\"");
  if (!it->is_string()) fail(ctx, ": \"dtype\" is not a string");
  const auto& s = it->get_ref<const std::string&>();
  static const std::pair<std::string_view, DType> kNames[] = {
      {"F64", DType::F64}, {"F32", DType::F32}, {"F16", DType::F16}, {"BF16", DType::BF16},
      {"I64", DType::I64}, {"I32", DType::I32}, {"U32", DType::U32}, {"I16", DType::I16},
      {"I8", DType::I8},   {"U8", DType::U8},   {"BOOL", DType::U8},
  };
  for (const auto& [n, t] : kNames)
    if (n == s) return t;
  fail(ctx, ": unsupported dtype '", s, "'");
}

std::vector<int64_t> parse_shape(const json& entry, const std::string& ctx) {
  auto it = entry.find("shape");
  if (it == entry.end()) fail(ctx, ": missing \"shape\"");
  if (!it->is_array()) fail(ctx, ": \"shape\" is not an array");
  if (it->size() > kSafetensorsMaxDims)
    fail(ctx, ": shape has ", it->size(), " dims, at most ", kSafetensorsMaxDims, " allowed");
  std::vector<int64_t> shape;
  for (const auto& d : *it) {
    if (!d.is_number_integer()) fail(ctx, ": shape entry ", d.dump(), " is not an integer");
    if (d.is_number_unsigned()) {
      auto u = d.get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail(ctx, ": shape entry ", u, " too large");
      shape.push_back(static_cast<int64_t>(u));
    } else {
      auto v = d.get<int64_t>();
      if (v < 0) fail(ctx, ": negative shape entry ", v);
      shape.push_back(v);
    }
  }
  return shape;
}

std::pair<uint64_t, uint64_t> parse_offsets(const json& entry, const std::string& ctx) {
  auto it = entry.find("data_offsets");
  if (it == entry.end()) fail(ctx, ": missing \"data_offsets\"");
  if (!it->is_array() || it->size() != 2)
    fail(ctx, ": \"data_offsets\" is not an array of two integers");
  for (const auto& v : *it)
    if (!v.is_number_unsigned())
      fail(ctx, ": data offset ", v.dump(), " is not a non-negative integer");
  return {(*it)[0].get<uint64_t>(), (*it)[1].get<uint64_t>()};
}

// MLX writes "__metadata__": null when there is none.
std::map<std::string, std::string> parse_metadata(const json& meta, const std::string& path) {
  if (meta.is_null()) return {};
  if (!meta.is_object()) fail(path, ": \"__metadata__\" is not an object");
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : meta.items()) {
    if (!v.is_string()) fail(path, ": \"__metadata__\" value for '", k, "' is not a string");
    out.emplace(k, v.get<std::string>());
  }
  return out;
}

// Validates one tensor entry against a data section of `data_bytes` bytes.
SafetensorsTensor parse_tensor(const std::string& path, const std::string& name, const json& entry,
                               const uint8_t* data, size_t data_bytes) {
  std::string ctx = tensor_ctx(path, name);
  if (!entry.is_object()) fail(ctx, ": entry is not an object");
  SafetensorsTensor t;
  t.name = name;
  t.view.dtype = parse_dtype(entry, ctx);
  t.view.shape = parse_shape(entry, ctx);
  auto [begin, end] = parse_offsets(entry, ctx);
  if (begin > end) fail(ctx, ": data_offsets end ", end, " < begin ", begin);
  if (end > data_bytes)
    fail(ctx, ": data_offsets [", begin, ", ", end, "] beyond the data section (", data_bytes,
         " bytes)");
  int64_t numel = 1;
  for (int64_t d : t.view.shape)
    if (__builtin_mul_overflow(numel, d, &numel))
      fail(ctx, ": element count of shape ", t.view.shape_str(), " overflows");
  auto nbytes = bytes_for(t.view.dtype, numel);
  if (!nbytes) fail(ctx, ": byte size of shape ", t.view.shape_str(), " overflows");
  if (*nbytes != end - begin)
    fail(ctx, ": shape ", t.view.shape_str(), " x ", jinx::name(t.view.dtype), " needs ", *nbytes,
         " bytes but data_offsets span ", end - begin);
  t.offset = static_cast<size_t>(begin);
  t.view.nbytes = *nbytes;
  t.view.data = data + begin;
  return t;
}

// Rejects byte ranges shared by two tensors. Empty tensors own no bytes and never overlap.
void check_no_overlap(const std::string& path, const std::vector<SafetensorsTensor>& sorted) {
  const SafetensorsTensor* prev = nullptr;
  for (const auto& t : sorted) {
    if (t.view.nbytes == 0) continue;
    if (prev && t.offset < prev->offset + prev->view.nbytes)
      fail(path, ": tensors '", prev->name, "' and '", t.name, "' overlap in the data section");
    prev = &t;
  }
}

std::string read_small_file(const std::string& path) {
  MappedFile f(path);
  if (f.size() > kSafetensorsMaxHeaderBytes) fail(path, ": file too large (", f.size(), " bytes)");
  return std::string(reinterpret_cast<const char*>(f.data()), f.size());
}

// std::filesystem queries without exceptions: an unreadable path counts as absent.
bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

bool valid_shard_name(const std::string& s) {
  return !s.empty() && s.find('/') == std::string::npos && s.find('\\') == std::string::npos &&
         s.find("..") == std::string::npos && s.find('\0') == std::string::npos;
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_unique<MappedFile>(path)) {
  parse();
}

void SafetensorsFile::parse() {
  const std::string& p = file_->path();
  const size_t size = file_->size();
  if (size < 8) fail(p, ": file too small for a safetensors header (", size, " bytes)");
  uint64_t n = read_u64_le(file_->data());
  if (n > size - 8) fail(p, ": header length ", n, " exceeds the file size (", size, " bytes)");
  if (n >= kSafetensorsMaxHeaderBytes)
    fail(p, ": header length ", n, " exceeds the limit of ", kSafetensorsMaxHeaderBytes);
  header_bytes_ = static_cast<size_t>(n);
  data_bytes_ = size - 8 - header_bytes_;
  const uint8_t* data = file_->data() + 8 + header_bytes_;

  std::string_view text(reinterpret_cast<const char*>(file_->data() + 8), header_bytes_);
  json header = parse_json_strict(text, p + ": header");
  if (!header.is_object()) fail(p, ": header is not a JSON object");

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      metadata_ = parse_metadata(entry, p);
      continue;
    }
    tensors_.push_back(parse_tensor(p, name, entry, data, data_bytes_));
  }
  std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
    return a.offset != b.offset ? a.offset < b.offset : a.view.nbytes < b.view.nbytes;
  });
  check_no_overlap(p, tensors_);
  // Duplicate names were rejected by the strict parser; the index cannot collide.
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

const TensorView* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second].view;
}

SafetensorsSet SafetensorsSet::open_file(const std::string& path) {
  SafetensorsSet set;
  set.add_shard(SafetensorsFile(path));
  return set;
}

SafetensorsSet SafetensorsSet::open_dir(const std::string& dir) {
  const fs::path root(dir);
  const fs::path single = root / "model.safetensors";
  const fs::path index_path = root / "model.safetensors.index.json";
  std::error_code ec;
  if (!fs::is_directory(root, ec)) fail(dir, ": not a directory");
  if (is_file(single)) return open_file(single.string());
  if (!is_file(index_path))
    fail(dir, ": neither model.safetensors nor model.safetensors.index.json found");

  const std::string ip = index_path.string();
  json index = parse_json_strict(read_small_file(ip), ip);
  if (!index.is_object()) fail(ip, ": not a JSON object");
  auto wm = index.find("weight_map");
  if (wm == index.end() || !wm->is_object()) fail(ip, ": missing \"weight_map\" object");

  std::set<std::string> shard_names;  // sorted: model-00001-of-000NN first
  for (const auto& [tensor, shard] : wm->items()) {
    if (!shard.is_string()) fail(ip, ": weight_map entry for '", tensor, "' is not a string");
    const auto& s = shard.get_ref<const std::string&>();
    if (!valid_shard_name(s)) fail(ip, ": invalid shard file name '", s, "' for '", tensor, "'");
    shard_names.insert(s);
  }
  if (shard_names.empty()) fail(ip, ": empty weight_map");

  SafetensorsSet set;
  set.shards_.reserve(shard_names.size());
  std::map<std::string, const SafetensorsFile*> by_name;
  for (const auto& s : shard_names) {
    const fs::path sp = root / s;
    if (!is_file(sp)) fail(ip, ": shard '", s, "' not found in ", dir);
    set.add_shard(SafetensorsFile(sp.string()));
  }
  for (size_t i = 0; i < set.shards_.size(); ++i)
    by_name.emplace(fs::path(set.shards_[i].path()).filename().string(), &set.shards_[i]);

  for (const auto& [tensor, shard] : wm->items()) {
    const SafetensorsFile* f = by_name.at(shard.get<std::string>());
    if (!f->find(tensor))
      fail(ip, ": tensor '", tensor, "' is listed in shard '", shard.get<std::string>(), "' but ",
           f->path(), " does not contain it");
  }
  return set;
}

void SafetensorsSet::add_shard(SafetensorsFile file) {
  shards_.push_back(std::move(file));
  const SafetensorsFile& f = shards_.back();
  for (const auto& t : f.tensors()) {
    auto [it, inserted] = tensors_.emplace(t.name, &t.view);
    if (!inserted) {
      std::string other;
      for (const auto& s : shards_)
        if (s.find(t.name) == it->second) other = s.path();
      fail("tensor '", t.name, "' appears in both ", other, " and ", f.path());
    }
    total_bytes_ += t.view.nbytes;
  }
}

const TensorView* SafetensorsSet::find(std::string_view name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

std::vector<std::string> SafetensorsSet::files() const {
  std::vector<std::string> out;
  out.reserve(shards_.size());
  for (const auto& s : shards_) out.push_back(s.path());
  return out;
}

namespace {

bool is_float_dtype(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16;
}

// Checks that `t` is a 2-D [rows, cols] float tensor (stacked: [n, rows, cols]); `what` names it
// in errors.
void check_group_tensor(const TensorView* t, const std::string& what, int64_t rows, int64_t cols,
                        int64_t n_stacked = -1) {
  if (!t) fail(what, ": missing (MLX-quantized weight needs scales and biases)");
  if (!is_float_dtype(t->dtype))
    fail(what, ": dtype ", jinx::name(t->dtype), " is not F32, F16 or BF16");
  const bool ok = n_stacked < 0
                      ? t->shape.size() == 2 && t->shape[0] == rows && t->shape[1] == cols
                      : t->shape.size() == 3 && t->shape[0] == n_stacked && t->shape[1] == rows &&
                            t->shape[2] == cols;
  if (!ok) fail(what, ": shape ", t->shape_str(), ", expected [", n_stacked < 0 ? "" : str(n_stacked, ", "), rows, ", ", cols, "]");
}

// Start of matrix `index` of a stacked tensor holding `count` of `bytes` each.
const void* slice(const TensorView* t, int64_t index, int64_t count, size_t bytes) {
  JINX_CHECK(bytes * static_cast<size_t>(count) <= t->nbytes, "stacked tensor data too short");
  return static_cast<const uint8_t*>(t->data) + bytes * static_cast<size_t>(index);
}

}  // namespace

std::optional<WeightMatrix> mlx_weight(const SafetensorsSet& set, std::string_view prefix, int bits,
                                       int group_size, int64_t expert, int64_t n_experts) {
  const std::string p(prefix);
  const TensorView* scales = set.find(p + ".scales");
  if (!scales) return std::nullopt;
  if (bits != 2 && bits != 3 && bits != 4 && bits != 6 && bits != 8)
    fail(p, ": unsupported MLX quantization bits ", bits);
  if (group_size != 32 && group_size != 64 && group_size != 128)
    fail(p, ": unsupported MLX quantization group_size ", group_size);

  const TensorView* weight = set.find(p + ".weight");
  if (!weight) fail(p, ".weight: missing (", p, ".scales exists)");
  if (weight->dtype != DType::U32)
    fail(p, ".weight: MLX-quantized weight has dtype ", jinx::name(weight->dtype),
         ", expected U32");
  const bool stacked = expert >= 0;
  if (stacked && (expert >= n_experts || weight->shape.size() != 3 || weight->shape[0] != n_experts))
    fail(p, ".weight: expected ", n_experts, " stacked experts, shape is ", weight->shape_str());
  if (!stacked && weight->shape.size() != 2)
    fail(p, ".weight: MLX-quantized weight has shape ", weight->shape_str(), ", expected 2-D");
  const int64_t rows = weight->shape[stacked ? 1 : 0];
  const int64_t packed = weight->shape[stacked ? 2 : 1];
  // packed * 4 bytes fit in the file, so packed * 32 cannot overflow.
  if (rows == 0 || packed == 0) fail(p, ".weight: empty shape ", weight->shape_str());
  if (packed * 32 % bits != 0)
    fail(p, ".weight: ", packed, " packed words do not hold a whole number of ", bits,
         "-bit values");
  const int64_t cols = packed * 32 / bits;
  if (cols % group_size != 0)
    fail(p, ".weight: ", cols, " columns are not a multiple of group_size ", group_size);
  const int64_t n_stack = stacked ? n_experts : -1;
  check_group_tensor(scales, p + ".scales", rows, cols / group_size, n_stack);
  const TensorView* biases = set.find(p + ".biases");
  check_group_tensor(biases, p + ".biases", rows, cols / group_size, n_stack);
  if (biases->dtype != scales->dtype)
    fail(p, ": scales dtype ", jinx::name(scales->dtype), " differs from biases dtype ",
         jinx::name(biases->dtype));

  WeightMatrix w;
  w.dtype = DType::U32;
  w.data = weight->data;
  w.rows = rows;
  w.cols = cols;
  w.row_bytes = static_cast<size_t>(packed) * 4;
  w.mlx = MlxQuant{bits, group_size, scales->dtype, scales->data, biases->data};
  if (stacked) {
    const size_t group_bytes =
        static_cast<size_t>(rows * (cols / group_size)) * traits(scales->dtype).block_bytes;
    w.data = slice(weight, expert, n_experts, w.row_bytes * static_cast<size_t>(rows));
    w.mlx.scales = slice(scales, expert, n_experts, group_bytes);
    w.mlx.biases = slice(biases, expert, n_experts, group_bytes);
  }
  return w;
}

std::optional<WeightMatrix> dense_weight(const TensorView& view) {
  if (view.shape.size() != 2 || !is_float_dtype(view.dtype)) return std::nullopt;
  WeightMatrix w;
  w.dtype = view.dtype;
  w.data = view.data;
  w.rows = view.shape[0];
  w.cols = view.shape[1];
  w.row_bytes = static_cast<size_t>(view.shape[1]) * traits(view.dtype).block_bytes;
  return w;
}

}  // namespace jinx
