#include "loader/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>

#include "core/check.h"

namespace jinx {

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kVersion = 3;
constexpr size_t kMaxString = size_t{1} << 30;

size_t align_up(size_t n, size_t a) {
  return (n + a - 1) / a * a;
}

}  // namespace

uint32_t ggml_type_of(DType t) {
  switch (t) {
    case DType::F32:
      return 0;
    case DType::F16:
      return 1;
    case DType::Q4_0:
      return 2;
    case DType::Q4_1:
      return 3;
    case DType::Q5_0:
      return 6;
    case DType::Q5_1:
      return 7;
    case DType::Q8_0:
      return 8;
    case DType::Q2_K:
      return 10;
    case DType::Q3_K:
      return 11;
    case DType::Q4_K:
      return 12;
    case DType::Q5_K:
      return 13;
    case DType::Q6_K:
      return 14;
    case DType::I8:
      return 24;
    case DType::I16:
      return 25;
    case DType::I32:
      return 26;
    case DType::I64:
      return 27;
    case DType::F64:
      return 28;
    case DType::IQ4_NL:
      return 20;
    case DType::IQ4_XS:
      return 23;
    case DType::MXFP4:
      return 39;
    case DType::BF16:
      return 30;
    default:
      break;
  }
  fail("GGUF cannot hold tensors of type ", name(t));
}

template <typename T>
void GgufWriter::put(T v) {
  static_assert(std::is_trivially_copyable_v<T>);
  // x86-64 and aarch64 are little-endian, as GGUF is. (resize + memcpy: GCC 12 reports a
  // false -Wstringop-overflow for a vector insert of a small array.)
  const size_t at = kv_bytes_.size();
  kv_bytes_.resize(at + sizeof(T));
  std::memcpy(kv_bytes_.data() + at, &v, sizeof(T));
}

void GgufWriter::put_string(std::string_view s) {
  if (s.size() > kMaxString) fail("GGUF string of ", s.size(), " bytes is too long");
  put<uint64_t>(s.size());
  kv_bytes_.insert(kv_bytes_.end(), s.begin(), s.end());
}

void GgufWriter::begin_kv(std::string_view key, GgufType type) {
  if (key.empty()) fail("GGUF key is empty");
  if (!keys_.insert(std::string(key)).second) fail("GGUF key ", key, " written twice");
  put_string(key);
  put<uint32_t>(static_cast<uint32_t>(type));
  ++n_kv_;
}

void GgufWriter::add_u32(std::string_view key, uint32_t v) {
  begin_kv(key, GgufType::U32);
  put(v);
}
void GgufWriter::add_i32(std::string_view key, int32_t v) {
  begin_kv(key, GgufType::I32);
  put(v);
}
void GgufWriter::add_u64(std::string_view key, uint64_t v) {
  begin_kv(key, GgufType::U64);
  put(v);
}
void GgufWriter::add_f32(std::string_view key, float v) {
  begin_kv(key, GgufType::F32);
  put(v);
}
void GgufWriter::add_bool(std::string_view key, bool v) {
  begin_kv(key, GgufType::Bool);
  put<uint8_t>(v ? 1 : 0);
}
void GgufWriter::add_string(std::string_view key, std::string_view v) {
  begin_kv(key, GgufType::String);
  put_string(v);
}

void GgufWriter::add_string_array(std::string_view key, const std::vector<std::string>& v) {
  begin_kv(key, GgufType::Array);
  put<uint32_t>(static_cast<uint32_t>(GgufType::String));
  put<uint64_t>(v.size());
  for (const auto& s : v) put_string(s);
}

void GgufWriter::add_i32_array(std::string_view key, const std::vector<int32_t>& v) {
  begin_kv(key, GgufType::Array);
  put<uint32_t>(static_cast<uint32_t>(GgufType::I32));
  put<uint64_t>(v.size());
  for (int32_t x : v) put(x);
}

void GgufWriter::add_f32_array(std::string_view key, const std::vector<float>& v) {
  begin_kv(key, GgufType::Array);
  put<uint32_t>(static_cast<uint32_t>(GgufType::F32));
  put<uint64_t>(v.size());
  for (float x : v) put(x);
}

// The payload of v (after its type tag), as GGUF encodes it.
void GgufWriter::put_value_body(const GgufValue& v) {
  auto need = [](auto opt, const char* what) {
    if (!opt) fail("GGUF value does not read as ", what);
    return *opt;
  };
  switch (v.type()) {
    case GgufType::U8:
      put<uint8_t>(static_cast<uint8_t>(need(v.as_uint(), "u8")));
      return;
    case GgufType::I8:
      put<int8_t>(static_cast<int8_t>(need(v.as_int(), "i8")));
      return;
    case GgufType::U16:
      put<uint16_t>(static_cast<uint16_t>(need(v.as_uint(), "u16")));
      return;
    case GgufType::I16:
      put<int16_t>(static_cast<int16_t>(need(v.as_int(), "i16")));
      return;
    case GgufType::U32:
      put<uint32_t>(static_cast<uint32_t>(need(v.as_uint(), "u32")));
      return;
    case GgufType::I32:
      put<int32_t>(static_cast<int32_t>(need(v.as_int(), "i32")));
      return;
    case GgufType::U64:
      put<uint64_t>(need(v.as_uint(), "u64"));
      return;
    case GgufType::I64:
      put<int64_t>(need(v.as_int(), "i64"));
      return;
    case GgufType::F32:
      put<float>(static_cast<float>(need(v.as_float(), "f32")));
      return;
    case GgufType::F64:
      put<double>(need(v.as_float(), "f64"));
      return;
    case GgufType::Bool:
      put<uint8_t>(need(v.as_bool(), "bool") ? 1 : 0);
      return;
    case GgufType::String:
      put_string(need(v.as_string(), "string"));
      return;
    case GgufType::Array: {
      put<uint32_t>(static_cast<uint32_t>(v.elem_type()));
      put<uint64_t>(v.size());
      if (v.elem_type() == GgufType::String) {
        JINX_CHECK(v.strings().size() == v.size(), "GGUF string array size mismatch");
        for (std::string_view s : v.strings()) put_string(s);
      } else {
        for (size_t i = 0; i < v.size(); ++i) put_value_body(v.at(i));
      }
      return;
    }
  }
  fail("GGUF value of unknown type ", static_cast<uint32_t>(v.type()));
}

void GgufWriter::add_value(std::string_view key, const GgufValue& v) {
  begin_kv(key, v.type());
  put_value_body(v);
}

void GgufWriter::add_tensor(std::string name, DType dtype, std::vector<int64_t> shape, Fill fill) {
  if (name.empty() || name.size() >= 64) fail("GGUF tensor name \"", name, "\": 1 to 63 bytes");
  if (shape.empty() || shape.size() > 4) fail(name, ": GGUF tensors have 1 to 4 dimensions");
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d <= 0) fail(name, ": dimension ", d, " is not positive");
    if (numel > std::numeric_limits<int64_t>::max() / d) fail(name, ": too many elements");
    numel *= d;
  }
  (void)ggml_type_of(dtype);
  if (shape.back() % traits(dtype).block_elems != 0)
    fail(name, ": rows of ", shape.back(), " are not a whole number of ", jinx::name(dtype),
         " blocks");
  const auto nbytes = bytes_for(dtype, numel);
  if (!nbytes) fail(name, ": byte size overflows");
  if (!names_.insert(name).second) fail("GGUF tensor ", name, " added twice");
  const size_t offset = align_up(data_bytes_, kAlignment);
  if (offset < data_bytes_ || offset > SIZE_MAX - *nbytes) fail(name, ": file too large");
  data_bytes_ = offset + *nbytes;
  tensors_.push_back({std::move(name), dtype, std::move(shape), *nbytes, offset, std::move(fill)});
}

void GgufWriter::write(const std::string& path) const {
  // Header and tensor infos, then padding to the alignment, then the data section.
  GgufWriter head;  // reuses the encoder for the info block
  head.put<uint32_t>(kMagic);
  head.put<uint32_t>(kVersion);
  head.put<uint64_t>(tensors_.size());
  head.put<uint64_t>(n_kv_);
  head.kv_bytes_.insert(head.kv_bytes_.end(), kv_bytes_.begin(), kv_bytes_.end());
  for (const Tensor& t : tensors_) {
    head.put_string(t.name);
    head.put<uint32_t>(static_cast<uint32_t>(t.shape.size()));
    for (size_t i = t.shape.size(); i-- > 0;) head.put<uint64_t>(t.shape[i]);  // ne[0] first
    head.put<uint32_t>(ggml_type_of(t.dtype));
    head.put<uint64_t>(t.offset);
  }
  head.kv_bytes_.resize(align_up(head.kv_bytes_.size(), kAlignment), 0);

  const std::string tmp = path + ".tmp";
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) fail(tmp, ": cannot open for writing");
  out.write(reinterpret_cast<const char*>(head.kv_bytes_.data()),
            static_cast<std::streamsize>(head.kv_bytes_.size()));
  size_t at = 0;
  std::vector<uint8_t> buf;
  static const char kZeros[kAlignment] = {};
  for (const Tensor& t : tensors_) {
    JINX_CHECK(t.offset >= at && t.offset - at < kAlignment, "GGUF writer: bad tensor offset");
    out.write(kZeros, static_cast<std::streamsize>(t.offset - at));
    buf.assign(t.nbytes, 0);
    t.fill(buf.data(), buf.size());
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
    at = t.offset + t.nbytes;
    if (!out) fail(tmp, ": write failed (disk full?)");
  }
  out.write(kZeros, static_cast<std::streamsize>(align_up(at, kAlignment) - at));
  out.close();
  if (!out) fail(tmp, ": write failed");
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) fail(path, ": cannot rename from ", tmp, ": ", ec.message());
}

}  // namespace jinx
