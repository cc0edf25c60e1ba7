// Splitting documents into chunks for embedding and retrieval.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

namespace jinx::rag {

struct Chunk {
  int64_t start = 0, end = 0;  // byte range [start, end) of the document
};

struct ChunkOptions {
  int64_t max_tokens = 256;     // per chunk, as count_tokens counts them; 1 <= max_tokens
  int64_t overlap_tokens = 32;  // repeated from a chunk's end at the next one's start; < max_tokens
};

// Splits a UTF-8 document into chunks of at most max_tokens tokens as counted by count_tokens
// (the embedding model's tokenizer, counting without special tokens such as BOS or CLS: leave
// room for those in max_tokens). Chunks are cut at paragraph breaks (blank lines) first, then
// sentence ends (. ! ? followed by whitespace, 。！？, and newlines), then whitespace, and only
// as a last resort inside a word: at a code point boundary, never inside a UTF-8 sequence nor
// before a combining mark, ZWJ or variation selector. The cut is the strongest boundary that
// still fills at least half of max_tokens, so a paragraph break early in a chunk does not make
// a tiny chunk.
//
// Consecutive chunks overlap by at most overlap_tokens tokens (as many whole sentences, then
// words, as fit): the next chunk starts at that boundary. Chunk ranges are trimmed of leading
// and trailing ASCII whitespace, and every other byte of the document lies in some chunk; the
// bytes between two consecutive chunks, if any, are whitespace. Empty or whitespace-only
// documents give no chunks.
//
// Tokens are counted once per sentence (per word inside a sentence longer than max_tokens, and
// by a binary search inside a longer word), each piece with the whitespace before it, and
// summed: the count_tokens calls stay near-linear in the document's length. A sum over pieces
// may over-count a whole chunk's tokens slightly, which errs toward smaller chunks. The one
// exception to max_tokens: a single code point (with its combining marks) is never split, even
// when it alone counts more than max_tokens.
//
// Throws jinx::Error for invalid options.
std::vector<Chunk> chunk_text(std::string_view text, const ChunkOptions& opt,
                              const std::function<int64_t(std::string_view)>& count_tokens);

}  // namespace jinx::rag
