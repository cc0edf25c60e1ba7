#include "core/dtype.h"

#include <array>
#include <limits>

#include "core/quant_blocks.h"

namespace jinx {
namespace {

constexpr std::array<DTypeTraits, static_cast<size_t>(DType::kCount)> kTraits = {{
    {"F32", 1, 4, false},
    {"F16", 1, 2, false},
    {"BF16", 1, 2, false},
    {"F64", 1, 8, false},
    {"I8", 1, 1, false},
    {"U8", 1, 1, false},
    {"I16", 1, 2, false},
    {"I32", 1, 4, false},
    {"U32", 1, 4, false},
    {"I64", 1, 8, false},
    {"Q8_0", kQK8_0, sizeof(BlockQ8_0), true},
    {"Q4_0", kQK4_0, sizeof(BlockQ4_0), true},
    {"Q4_1", kQK4_1, sizeof(BlockQ4_1), true},
    {"Q4_K", kQK_K, sizeof(BlockQ4_K), true},
    {"Q5_K", kQK_K, sizeof(BlockQ5_K), true},
    {"Q6_K", kQK_K, sizeof(BlockQ6_K), true},
    {"F8_E4M3", 1, 1, false},
    {"Q5_0", kQK5_0, sizeof(BlockQ5_0), true},
    {"Q5_1", kQK5_1, sizeof(BlockQ5_1), true},
    {"Q2_K", kQK_K, sizeof(BlockQ2_K), true},
    {"Q3_K", kQK_K, sizeof(BlockQ3_K), true},
    {"IQ4_NL", kQK4_NL, sizeof(BlockIQ4_NL), true},
    {"IQ4_XS", kQK_K, sizeof(BlockIQ4_XS), true},
    {"MXFP4", kQK_MXFP4, sizeof(BlockMXFP4), true},
}};

}  // namespace

const DTypeTraits& traits(DType t) {
  auto i = static_cast<size_t>(t);
  return kTraits[i < kTraits.size() ? i : 0];
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (size_t i = 0; i < kTraits.size(); ++i)
    if (kTraits[i].name == name) return static_cast<DType>(i);
  return std::nullopt;
}

std::optional<size_t> bytes_for(DType t, int64_t n) {
  const auto& tr = traits(t);
  if (n < 0 || n % tr.block_elems != 0) return std::nullopt;
  uint64_t blocks = static_cast<uint64_t>(n / tr.block_elems);
  if (blocks > std::numeric_limits<uint64_t>::max() / tr.block_bytes) return std::nullopt;
  return static_cast<size_t>(blocks * tr.block_bytes);
}

}  // namespace jinx
