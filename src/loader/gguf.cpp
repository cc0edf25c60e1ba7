#include "loader/gguf.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "core/check.h"

// GGUF stores everything little-endian; numbers are read with memcpy in host order.
static_assert(std::endian::native == std::endian::little, "GGUF reader assumes little-endian");

namespace jinx {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr int kMaxDims = 4;
constexpr int kMaxArrayDepth = 8;  // nested arrays deeper than this are rejected (stack safety)
constexpr uint32_t kNumValueTypes = 13;
constexpr std::string_view kTruncatedOrCorrupt = " (truncated or corrupt file)";
// Smallest possible encodings, used to bound counts by the bytes left in the file.
constexpr size_t kMinKvBytes = 8 + 1 + 4 + 1;              // key len, 1-byte key, type, u8 value
constexpr size_t kMinTensorInfoBytes = 8 + 1 + 4 + 4 + 8;  // name len, name, n_dims, type, offset
constexpr size_t kMinArrayBytes = 4 + 8;                   // element type, count

constexpr std::array<std::string_view, kNumValueTypes> kValueTypeNames = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};

// GGML type ids (ggml.h); ids of removed types have empty names.
constexpr std::array<std::string_view, 42> kGgmlTypeNames = {
    "F32",     "F16",   "Q4_0",   "Q4_1",  "",      "",       "Q5_0", "Q5_1",    "Q8_0",
    "Q8_1",    "Q2_K",  "Q3_K",   "Q4_K",  "Q5_K",  "Q6_K",   "Q8_K", "IQ2_XXS", "IQ2_XS",
    "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8",   "I16",     "I32",
    "I64",     "F64",   "IQ1_M",  "BF16",  "",      "",       "",     "TQ1_0",   "TQ2_0",
    "",        "",      "",       "MXFP4", "NVFP4", "Q1_0"};

}  // namespace

std::string_view gguf_type_name(GgufType t) {
  auto i = static_cast<uint32_t>(t);
  return i < kNumValueTypes ? kValueTypeNames[i] : "?";
}

bool gguf_type_is_int(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::U16:
    case GgufType::I16:
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::U64:
    case GgufType::I64:
      return true;
    default:
      return false;
  }
}

bool gguf_type_is_float(GgufType t) {
  return t == GgufType::F32 || t == GgufType::F64;
}

size_t gguf_type_size(GgufType t) {
  switch (t) {
    case GgufType::U8:
    case GgufType::I8:
    case GgufType::Bool:
      return 1;
    case GgufType::U16:
    case GgufType::I16:
      return 2;
    case GgufType::U32:
    case GgufType::I32:
    case GgufType::F32:
      return 4;
    case GgufType::U64:
    case GgufType::I64:
    case GgufType::F64:
      return 8;
    default:
      return 0;
  }
}

std::string ggml_type_name(uint32_t ggml_type) {
  if (ggml_type < kGgmlTypeNames.size() && !kGgmlTypeNames[ggml_type].empty())
    return std::string(kGgmlTypeNames[ggml_type]);
  return str("type_", ggml_type);
}

std::optional<DType> dtype_from_ggml(uint32_t ggml_type) {
  switch (ggml_type) {
    case 0:
      return DType::F32;
    case 1:
      return DType::F16;
    case 2:
      return DType::Q4_0;
    case 3:
      return DType::Q4_1;
    case 6:
      return DType::Q5_0;
    case 7:
      return DType::Q5_1;
    case 10:
      return DType::Q2_K;
    case 11:
      return DType::Q3_K;
    case 20:
      return DType::IQ4_NL;
    case 23:
      return DType::IQ4_XS;
    case 39:
      return DType::MXFP4;
    case 8:
      return DType::Q8_0;
    case 12:
      return DType::Q4_K;
    case 13:
      return DType::Q5_K;
    case 14:
      return DType::Q6_K;
    case 30:
      return DType::BF16;
    default:
      return std::nullopt;
  }
}

// ---------------------------------------------------------------------------------------------
// Parser: a bounds-checked cursor over the mapping that fills a GgufFile.

class GgufParser {
 public:
  explicit GgufParser(GgufFile& f) : f_(f), p_(f.file_->data()), size_(f.file_->size()) {}

  void parse();
  static GgufValue decode_scalar(GgufType t, const uint8_t* p);

 private:
  template <typename... Args>
  [[noreturn]] void bad(Args&&... args) const {
    fail(f_.path(), ": ", std::forward<Args>(args)...);
  }
  size_t left() const { return size_ - pos_; }
  void need(uint64_t n, std::string_view what);
  template <typename T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view read_string(std::string_view what);
  GgufType read_type(std::string_view what);
  GgufValue read_value(GgufType t, int depth);
  GgufValue read_array(int depth);

  void read_header(uint64_t* n_tensors, uint64_t* n_kv);
  void read_kvs(uint64_t n_kv);
  void read_alignment();
  void read_tensor_info();
  void place_tensors();

  GgufFile& f_;
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
  std::string_view context_;  // key or tensor name being read, for error messages
};

void GgufParser::need(uint64_t n, std::string_view what) {
  if (n > left()) {
    bad("truncated file: ", what, context_.empty() ? "" : " of '", context_,
        context_.empty() ? "" : "'", " needs ", n, " bytes at offset ", pos_, " but only ", left(),
        " are left");
  }
}

std::string_view GgufParser::read_string(std::string_view what) {
  auto len = read<uint64_t>(what);
  need(len, what);
  std::string_view s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(len));
  pos_ += static_cast<size_t>(len);
  return s;
}

GgufType GgufParser::read_type(std::string_view what) {
  auto t = read<uint32_t>(what);
  if (t >= kNumValueTypes)
    bad("unknown metadata value type ", t, " for key '", context_, "' at offset ", pos_ - 4);
  return static_cast<GgufType>(t);
}

GgufValue GgufParser::decode_scalar(GgufType t, const uint8_t* p) {
  GgufValue v;
  v.type_ = t;
  auto load = [p](auto x) {
    std::memcpy(&x, p, sizeof(x));
    return x;
  };
  switch (t) {
    case GgufType::U8:
      v.u_ = load(uint8_t{});
      break;
    case GgufType::I8:
      v.i_ = load(int8_t{});
      break;
    case GgufType::U16:
      v.u_ = load(uint16_t{});
      break;
    case GgufType::I16:
      v.i_ = load(int16_t{});
      break;
    case GgufType::U32:
      v.u_ = load(uint32_t{});
      break;
    case GgufType::I32:
      v.i_ = load(int32_t{});
      break;
    case GgufType::U64:
      v.u_ = load(uint64_t{});
      break;
    case GgufType::I64:
      v.i_ = load(int64_t{});
      break;
    case GgufType::F32:
      v.f_ = load(float{});
      break;
    case GgufType::F64:
      v.f_ = load(double{});
      break;
    case GgufType::Bool:
      v.i_ = load(uint8_t{});
      break;
    default:
      fail("GgufValue: not a scalar type");
  }
  return v;
}

GgufValue GgufParser::read_value(GgufType t, int depth) {
  if (t == GgufType::Array) return read_array(depth + 1);
  if (t == GgufType::String) {
    GgufValue v;
    v.type_ = t;
    v.str_ = read_string("string value");
    return v;
  }
  size_t n = gguf_type_size(t);
  need(n, "value");
  if (t == GgufType::Bool && p_[pos_] > 1)
    bad("invalid bool value ", int(p_[pos_]), " for key '", context_, "' at offset ", pos_);
  GgufValue v = decode_scalar(t, p_ + pos_);
  pos_ += n;
  return v;
}

GgufValue GgufParser::read_array(int depth) {
  if (depth > kMaxArrayDepth)
    bad("arrays nested deeper than ", kMaxArrayDepth, " levels for key '", context_, "'");
  GgufValue v;
  v.type_ = GgufType::Array;
  v.elem_type_ = read_type("array element type");
  uint64_t count = read<uint64_t>("array length");
  size_t elem = gguf_type_size(v.elem_type_);
  size_t min_elem = elem ? elem : v.elem_type_ == GgufType::String ? 8 : kMinArrayBytes;
  if (count > left() / min_elem)
    bad("array of ", count, " ", gguf_type_name(v.elem_type_), " for key '", context_,
        "' does not fit in the ", left(), " bytes left at offset ", pos_, kTruncatedOrCorrupt);
  v.count_ = static_cast<size_t>(count);
  if (elem) {  // numbers: keep a view of the raw bytes
    if (v.elem_type_ == GgufType::Bool) {
      for (size_t i = 0; i < v.count_; ++i)
        if (p_[pos_ + i] > 1) bad("invalid bool in array for key '", context_, "'");
    }
    v.raw_ = p_ + pos_;
    pos_ += v.count_ * elem;
  } else if (v.elem_type_ == GgufType::String) {
    v.strings_.reserve(v.count_);  // bounded: count <= bytes left / 8
    for (size_t i = 0; i < v.count_; ++i) v.strings_.push_back(read_string("string in array"));
  } else {  // arrays of arrays: grown as parsed, no reservation from the count
    for (size_t i = 0; i < v.count_; ++i) v.items_.push_back(read_value(GgufType::Array, depth));
  }
  return v;
}

void GgufParser::read_header(uint64_t* n_tensors, uint64_t* n_kv) {
  auto magic = read<uint32_t>("magic");
  if (magic != kGgufMagic) bad("not a GGUF file (bad magic 0x", std::hex, magic, ")");
  auto version = read<uint32_t>("version");
  if (version == 1) bad("unsupported GGUF version 1 (obsolete; only versions 2 and 3 are read)");
  if (version != 2 && version != 3) {
    bool swapped = version == 0x02000000u || version == 0x03000000u;
    bad("unsupported GGUF version ", version, swapped ? " (a big-endian file?)" : "",
        " (only versions 2 and 3 are read)");
  }
  f_.version_ = static_cast<int>(version);
  *n_tensors = read<uint64_t>("tensor count");
  *n_kv = read<uint64_t>("metadata count");
  // Bound the counts by what the rest of the file could hold before using them.
  if (*n_kv > left() / kMinKvBytes)
    bad("metadata count ", *n_kv, " is impossible for the ", left(), " bytes left in the file",
        kTruncatedOrCorrupt);
  if (*n_tensors > left() / kMinTensorInfoBytes)
    bad("tensor count ", *n_tensors, " is impossible for the ", left(), " bytes left in the file",
        kTruncatedOrCorrupt);
  if (*n_kv * kMinKvBytes + *n_tensors * kMinTensorInfoBytes > left())
    bad("tensor count ", *n_tensors, " and metadata count ", *n_kv, " are impossible for the ",
        left(), " bytes left in the file", kTruncatedOrCorrupt);
}

void GgufParser::read_kvs(uint64_t n_kv) {
  f_.kvs_.reserve(static_cast<size_t>(n_kv));  // bounded by the file size above
  for (uint64_t i = 0; i < n_kv; ++i) {
    context_ = {};
    std::string_view key = read_string("metadata key");
    if (key.empty()) bad("empty metadata key at offset ", pos_ - 8);
    context_ = key;
    GgufType t = read_type("value type");
    GgufValue v = read_value(t, 0);
    if (!f_.kv_index_.emplace(key, f_.kvs_.size()).second)
      bad("duplicate metadata key '", key, "'");
    f_.kvs_.push_back({key, std::move(v)});
  }
  context_ = {};
}

void GgufParser::read_alignment() {
  const GgufValue* v = f_.find("general.alignment");
  if (!v) return;
  auto a = v->as_uint();
  if (!a || v->is_array())
    bad("general.alignment must be an integer, not ", gguf_type_name(v->type()));
  if (*a == 0 || !std::has_single_bit(*a))
    bad("general.alignment ", *a, " is not a nonzero power of two");
  // The spec requires a multiple of 8; smaller ones would leave f16 scales and f32 rows of the
  // tensor data misaligned for the kernels that read them in place.
  if (*a < 8) bad("general.alignment ", *a, " is not a multiple of 8");
  if (*a > std::numeric_limits<size_t>::max() / 2) bad("general.alignment ", *a, " is too large");
  f_.alignment_ = static_cast<size_t>(*a);
}

void GgufParser::read_tensor_info() {
  context_ = {};
  std::string_view name = read_string("tensor name");
  if (name.empty()) bad("empty tensor name at offset ", pos_ - 8);
  context_ = name;
  auto n_dims = read<uint32_t>("n_dims");
  if (n_dims > kMaxDims)
    bad("tensor '", name, "' has ", n_dims, " dimensions (at most ", kMaxDims, " supported)");
  GgufTensor t;
  t.name = std::string(name);
  int64_t numel = 1;
  for (uint32_t d = 0; d < n_dims; ++d) {
    auto ne = read<uint64_t>("dimension");
    if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        (ne != 0 && numel > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(ne)))
      bad("tensor '", name, "': element count overflows (dimension ", d, " is ", ne, ")");
    t.ne.push_back(static_cast<int64_t>(ne));
    numel *= static_cast<int64_t>(ne);
  }
  t.ggml_type = read<uint32_t>("tensor type");
  auto dtype = dtype_from_ggml(t.ggml_type);
  if (!dtype)
    bad("tensor '", name, "': unsupported tensor type ", ggml_type_name(t.ggml_type), " (",
        t.ggml_type, ")");
  t.offset = read<uint64_t>("tensor offset");
  int64_t block = traits(*dtype).block_elems;
  int64_t ne0 = t.ne.empty() ? 1 : t.ne[0];
  if (ne0 % block != 0)
    bad("tensor '", name, "': row length ne[0]=", ne0, " is not a multiple of the ",
        traits(*dtype).name, " block size ", block);
  auto nbytes = bytes_for(*dtype, numel);
  if (!nbytes) bad("tensor '", name, "': byte size of ", numel, " elements overflows");
  t.view.dtype = *dtype;
  t.view.shape.assign(t.ne.rbegin(), t.ne.rend());
  t.view.nbytes = *nbytes;
  if (!f_.tensor_index_.emplace(name, f_.tensors_.size()).second)
    bad("duplicate tensor name '", name, "'");
  f_.tensors_.push_back(std::move(t));
}

void GgufParser::place_tensors() {
  context_ = {};
  size_t a = f_.alignment_;
  size_t pad = (a - pos_ % a) % a;
  bool past_end = pad > left();
  if (past_end && !f_.tensors_.empty())
    bad("data section (aligned to ", a, ") would start past the end of the file",
        kTruncatedOrCorrupt);
  f_.data_offset_ = past_end ? size_ : pos_ + pad;
  size_t data_size = size_ - f_.data_offset_;
  for (GgufTensor& t : f_.tensors_) {
    if (t.offset % a != 0)
      bad("tensor '", t.name, "': offset ", t.offset, " is not a multiple of the alignment ", a);
    if (t.offset > data_size || t.view.nbytes > data_size - t.offset)
      bad("tensor '", t.name, "': data at offset ", t.offset, " of ", t.view.nbytes,
          " bytes extends past the end of the file (data section has ", data_size, " bytes;",
          kTruncatedOrCorrupt.substr(1));
    t.view.data = p_ + f_.data_offset_ + t.offset;
  }
  // Sorted by offset, each tensor with data must start at or after the furthest end so far.
  std::vector<size_t> order(f_.tensors_.size());
  std::iota(order.begin(), order.end(), 0);
  const auto& ts = f_.tensors_;
  std::sort(order.begin(), order.end(),
            [&](size_t x, size_t y) { return ts[x].offset < ts[y].offset; });
  const GgufTensor* furthest = nullptr;
  for (size_t i : order) {
    const GgufTensor& cur = ts[i];
    if (cur.view.nbytes == 0) continue;
    if (furthest && cur.offset < furthest->offset + furthest->view.nbytes)
      bad("tensors '", furthest->name, "' and '", cur.name, "' overlap in the data section");
    if (!furthest || cur.offset + cur.view.nbytes > furthest->offset + furthest->view.nbytes)
      furthest = &cur;
  }
}

void GgufParser::parse() {
  uint64_t n_tensors = 0, n_kv = 0;
  read_header(&n_tensors, &n_kv);
  read_kvs(n_kv);
  read_alignment();
  f_.tensors_.reserve(static_cast<size_t>(n_tensors));  // bounded by the file size
  for (uint64_t i = 0; i < n_tensors; ++i) read_tensor_info();
  place_tensors();
}

// ---------------------------------------------------------------------------------------------
// GgufValue

std::optional<int64_t> GgufValue::as_int() const {
  switch (type_) {
    case GgufType::U8:
    case GgufType::U16:
    case GgufType::U32:
    case GgufType::U64:
      if (u_ > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(u_);
    case GgufType::I8:
    case GgufType::I16:
    case GgufType::I32:
    case GgufType::I64:
    case GgufType::Bool:
      return i_;
    default:
      return std::nullopt;
  }
}

std::optional<uint64_t> GgufValue::as_uint() const {
  switch (type_) {
    case GgufType::U8:
    case GgufType::U16:
    case GgufType::U32:
    case GgufType::U64:
      return u_;
    case GgufType::I8:
    case GgufType::I16:
    case GgufType::I32:
    case GgufType::I64:
    case GgufType::Bool:
      if (i_ < 0) return std::nullopt;
      return static_cast<uint64_t>(i_);
    default:
      return std::nullopt;
  }
}

std::optional<double> GgufValue::as_float() const {
  if (gguf_type_is_float(type_)) return f_;
  if (!gguf_type_is_int(type_)) return std::nullopt;
  if (auto i = as_int()) return static_cast<double>(*i);
  return static_cast<double>(u_);
}

std::optional<std::string_view> GgufValue::as_string() const {
  if (type_ != GgufType::String) return std::nullopt;
  return str_;
}

std::optional<bool> GgufValue::as_bool() const {
  if (type_ != GgufType::Bool) return std::nullopt;
  return i_ != 0;
}

GgufValue GgufValue::at(size_t i) const {
  JINX_CHECK(is_array(), "GgufValue::at on a ", gguf_type_name(type_));
  JINX_CHECK(i < count_, "GgufValue::at(", i, ") on an array of ", count_);
  if (elem_type_ == GgufType::Array) return items_[i];
  if (elem_type_ == GgufType::String) {
    GgufValue v;
    v.type_ = GgufType::String;
    v.str_ = strings_[i];
    return v;
  }
  return GgufParser::decode_scalar(elem_type_, raw_ + i * gguf_type_size(elem_type_));
}

namespace {

std::string quoted(std::string_view s, size_t max_len = 60) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < max_len; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') out += '\\';
    if (c < 0x20) {
      out += str("\\x", std::hex, int(c) >> 4, int(c) & 15);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + (s.size() > max_len ? "\"..." : "\"");
}

}  // namespace

std::string GgufValue::describe(size_t max_items) const {
  if (is_array()) {
    std::string s = str("arr[", gguf_type_name(elem_type_), ",", count_, "] [");
    for (size_t i = 0; i < count_ && i < max_items; ++i) {
      if (i) s += ", ";
      GgufValue e = at(i);
      std::string d = e.describe(max_items);
      // Elements are shown without their type prefix ("u32 7" -> "7").
      s += e.is_array() ? d : d.substr(d.find(' ') + 1);
    }
    return s + (count_ > max_items ? ", ...]" : "]");
  }
  std::string t(gguf_type_name(type_));
  switch (type_) {
    case GgufType::String:
      return t + " " + quoted(str_);
    case GgufType::Bool:
      return t + (i_ ? " true" : " false");
    case GgufType::F32:
    case GgufType::F64:
      return str(t, " ", f_);
    default:
      if (auto i = as_int()) return str(t, " ", *i);
      return str(t, " ", u_);
  }
}

// ---------------------------------------------------------------------------------------------
// GgufFile

GgufFile::GgufFile(const std::string& path) : file_(std::make_unique<MappedFile>(path)) {
  GgufParser(*this).parse();
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

namespace {

[[noreturn]] void wrong_type(const std::string& path, std::string_view key, const GgufValue& v,
                             std::string_view wanted) {
  std::string got(gguf_type_name(v.type()));
  if (v.is_array()) got = str("array of ", gguf_type_name(v.elem_type()));
  fail(path, ": metadata key '", key, "' is ", got, ", expected ", wanted);
}

}  // namespace

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (auto i = v->as_int()) return i;
  if (v->type() == GgufType::U64) fail(path(), ": metadata key '", key, "' is out of int64 range");
  wrong_type(path(), key, *v, "an integer");
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (auto f = v->as_float()) return f;
  wrong_type(path(), key, *v, "a number");
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (auto s = v->as_string()) return std::string(*s);
  wrong_type(path(), key, *v, "a string");
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (auto b = v->as_bool()) return b;
  wrong_type(path(), key, *v, "a bool");
}

std::vector<std::string> GgufFile::get_string_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return {};
  if (!v->is_array() || v->elem_type() != GgufType::String)
    wrong_type(path(), key, *v, "an array of strings");
  return {v->strings().begin(), v->strings().end()};
}

std::vector<float> GgufFile::get_float_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return {};
  GgufType e = v->elem_type();
  if (!v->is_array() || !(gguf_type_is_float(e) || gguf_type_is_int(e)))
    wrong_type(path(), key, *v, "an array of numbers");
  std::vector<float> out(v->size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<float>(*v->at(i).as_float());
  return out;
}

std::vector<int64_t> GgufFile::get_int_array(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return {};
  GgufType e = v->elem_type();
  if (!v->is_array() || !(gguf_type_is_int(e) || e == GgufType::Bool))
    wrong_type(path(), key, *v, "an array of integers");
  std::vector<int64_t> out(v->size());
  for (size_t i = 0; i < out.size(); ++i) {
    auto x = v->at(i).as_int();
    if (!x) fail(path(), ": metadata key '", key, "' element ", i, " is out of int64 range");
    out[i] = *x;
  }
  return out;
}

std::string GgufFile::architecture() const {
  auto a = get_string("general.architecture");
  if (!a) fail(path(), ": missing metadata key 'general.architecture'");
  return *a;
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const TensorView* GgufFile::tensor(std::string_view name) const {
  const GgufTensor* t = find_tensor(name);
  return t ? &t->view : nullptr;
}

}  // namespace jinx
