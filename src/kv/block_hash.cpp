#include "kv/block_hash.h"

#include "core/check.h"

namespace jinx::kv {
namespace {

// splitmix64's finalizer: a full-avalanche 64-bit bijection.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

}  // namespace

BlockHash hash_block(const BlockHash& parent, uint64_t seed, std::span<const int32_t> tokens) {
  // Two lanes seeded differently; each token enters both through different odd multipliers.
  uint64_t a = mix64(parent.lo ^ seed ^ 0x9e3779b97f4a7c15ULL);
  uint64_t b = mix64(parent.hi ^ (seed * 0xd6e8feb86659fd93ULL) ^ 0xc2b2ae3d27d4eb4fULL);
  for (int32_t t : tokens) {
    const uint64_t x = static_cast<uint32_t>(t);
    a = mix64(a + x * 0xff51afd7ed558ccdULL + 0x165667b19e3779f9ULL);
    b = mix64((b ^ (x * 0xc4ceb9fe1a85ec53ULL)) + 0x27d4eb2f165667c5ULL);
  }
  // The length enters too, so a block can never alias a different-sized one.
  const uint64_t n = tokens.size();
  return BlockHash{mix64(a ^ n ^ b), mix64(b + n * 0x9e3779b97f4a7c15ULL + a)};
}

void extend_block_hashes(std::span<const int32_t> tokens, int32_t block_size, uint64_t seed,
                         std::vector<BlockHash>* hashes) {
  JINX_CHECK(block_size > 0, "block size must be positive, got ", block_size);
  const size_t bs = static_cast<size_t>(block_size);
  const size_t n_full = tokens.size() / bs;
  JINX_CHECK(hashes->size() <= n_full, "sequence has ", hashes->size(), " block hashes but only ",
             n_full, " full blocks");
  for (size_t i = hashes->size(); i < n_full; ++i) {
    const BlockHash& parent = i == 0 ? kRootHash : (*hashes)[i - 1];
    hashes->push_back(hash_block(parent, seed, tokens.subspan(i * bs, bs)));
  }
}

}  // namespace jinx::kv
