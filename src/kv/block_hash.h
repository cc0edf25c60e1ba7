// Chained hashes of full KV blocks, the keys of the prefix cache.
//
// The KV of block i depends on every token before it, so its key chains the key of block i-1
// with block i's own tokens (as vLLM does):
//   key[0] = hash_block(kRootHash, seed, tokens[0, B))
//   key[i] = hash_block(key[i-1], seed, tokens[i*B, (i+1)*B))
// Two prompts that share block i's tokens but differ earlier get different keys.
//
// A key is 128 bits (two 64-bit lanes with different constants), so an accidental collision
// between two cached prefixes is ~n^2 / 2^128: negligible. The hash is keyed by a per-cache
// seed (random by default) so that requests cannot craft colliding prompts without knowing it;
// it is not a cryptographic hash. Cost: ~2 multiply-xor rounds per token, once per full block
// (sequences hash their blocks incrementally as tokens arrive).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace jinx::kv {

struct BlockHash {
  uint64_t lo = 0;
  uint64_t hi = 0;
  friend bool operator==(const BlockHash&, const BlockHash&) = default;
};

// The "parent" of a sequence's first block.
inline constexpr BlockHash kRootHash{};

// Key of one full block given its parent's key. `tokens` is the block's tokens (any length; the
// cache only ever hashes whole blocks).
BlockHash hash_block(const BlockHash& parent, uint64_t seed, std::span<const int32_t> tokens);

// Appends to `hashes` the keys of every full block of `tokens` not yet hashed: with
// hashes->size() == k on entry, hashes blocks k, k+1, ... while (block+1)*block_size <=
// tokens.size(). Call it after each append to keep a sequence's keys current in O(new tokens).
void extend_block_hashes(std::span<const int32_t> tokens, int32_t block_size, uint64_t seed,
                         std::vector<BlockHash>* hashes);

struct BlockHashHasher {
  size_t operator()(const BlockHash& h) const noexcept { return static_cast<size_t>(h.lo); }
};

}  // namespace jinx::kv
