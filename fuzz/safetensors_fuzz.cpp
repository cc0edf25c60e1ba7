// Fuzz target: the safetensors reader (jinx::SafetensorsFile) and the helpers that turn its
// tensors into weight matrices (dense_weight, mlx_weight).
// Properties: bad files throw jinx::Error; every tensor of a file that loads lies inside the
// data section, the tensors are sorted by offset and do not overlap, and find() agrees.
#include <string>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "loader/safetensors.h"

namespace {

using jinx::fuzz::expect_ok_or_error;

void check_file(const jinx::SafetensorsFile& f) {
  JINX_FUZZ_ASSERT(8 + f.header_bytes() + f.data_bytes() == f.file_bytes());
  const auto* data_begin = static_cast<const uint8_t*>(nullptr);
  size_t prev_end = 0;
  for (const jinx::SafetensorsTensor& t : f.tensors()) {
    JINX_FUZZ_ASSERT(f.find(t.name) == &t.view);
    JINX_FUZZ_ASSERT(t.offset <= f.data_bytes() && t.view.nbytes <= f.data_bytes() - t.offset);
    const auto* p = static_cast<const uint8_t*>(t.view.data);
    if (!data_begin) data_begin = p - t.offset;
    JINX_FUZZ_ASSERT(p == data_begin + t.offset);
    if (t.view.nbytes > 0) {
      JINX_FUZZ_ASSERT(t.offset >= prev_end);
      prev_end = t.offset + t.view.nbytes;
    }
    // Touch the first and last byte: inside the mapping or the assertion above failed.
    if (t.view.nbytes > 0) {
      volatile uint8_t sink = p[0] ^ p[t.view.nbytes - 1];
      (void)sink;
    }
  }
}

// mlx_weight for every "<prefix>.scales" the file holds, with a few (bits, group) choices.
void try_mlx(const std::string& path, const jinx::SafetensorsFile& f) {
  auto set = jinx::SafetensorsSet::open_file(path);
  static const std::string kSuffix = ".scales";
  for (const jinx::SafetensorsTensor& t : f.tensors()) {
    if (t.name.size() <= kSuffix.size() ||
        t.name.compare(t.name.size() - kSuffix.size(), kSuffix.size(), kSuffix) != 0)
      continue;
    std::string prefix = t.name.substr(0, t.name.size() - kSuffix.size());
    for (auto [bits, group] : {std::pair{4, 64}, {8, 32}, {3, 64}, {2, 128}, {6, 64}}) {
      expect_ok_or_error([&] {
        auto w = jinx::mlx_weight(set, prefix, bits, group);
        JINX_FUZZ_ASSERT(w.has_value());  // scales exist, so it is a weight or an error
        const jinx::TensorView* packed = set.find(prefix + ".weight");
        JINX_FUZZ_ASSERT(packed && w->rows > 0 && w->cols > 0);
        JINX_FUZZ_ASSERT(static_cast<size_t>(w->rows) * w->row_bytes == packed->nbytes);
        JINX_FUZZ_ASSERT(w->cols * bits == static_cast<int64_t>(w->row_bytes) * 8);
      });
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static jinx::fuzz::ScratchFile scratch;
  const std::string& path =
      scratch.write(std::string_view(reinterpret_cast<const char*>(data), size));
  expect_ok_or_error([&] {
    jinx::SafetensorsFile f(path);
    check_file(f);
    for (const jinx::SafetensorsTensor& t : f.tensors())
      if (auto w = jinx::dense_weight(t.view))
        JINX_FUZZ_ASSERT(static_cast<size_t>(w->rows) * w->row_bytes == t.view.nbytes);
    try_mlx(path, f);
  });
  return 0;
}
