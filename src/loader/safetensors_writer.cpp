#include "loader/safetensors_writer.h"

#include <cstdio>
#include <memory>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace jinx {

namespace {

const char* st_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::U32: return "U32";
    case DType::I8: return "I8";
    case DType::U8: return "U8";
    default: fail("safetensors cannot store ", name(t));
  }
}

}  // namespace

void write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& tensors) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  std::vector<size_t> sizes;
  size_t offset = 0;
  for (const auto& t : tensors) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    auto nb = bytes_for(t.dtype, n);
    JINX_CHECK(nb.has_value(), t.name, ": bad size");
    header[t.name] = {{"dtype", st_name(t.dtype)}, {"shape", t.shape},
                      {"data_offsets", {offset, offset + *nb}}};
    sizes.push_back(*nb);
    offset += *nb;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // keep the data 8-byte aligned
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), std::fclose);
  if (!f) fail(path, ": cannot write");
  uint64_t len = h.size();
  uint8_t le[8];
  for (int i = 0; i < 8; ++i) le[i] = static_cast<uint8_t>(len >> (8 * i));
  bool ok = std::fwrite(le, 1, 8, f.get()) == 8 && std::fwrite(h.data(), 1, h.size(), f.get()) == h.size();
  std::vector<uint8_t> buf;
  for (size_t i = 0; ok && i < tensors.size(); ++i) {
    buf.resize(sizes[i]);
    tensors[i].fill(buf.data(), buf.size());
    ok = std::fwrite(buf.data(), 1, buf.size(), f.get()) == buf.size();
  }
  if (!ok) fail(path, ": write failed (disk full?)");
}

}  // namespace jinx
