// Hybrid retrieval: fusing the vector and keyword rankings of chunks.
#pragma once

#include <cstdint>
#include <span>
#include <utility>
#include <vector>

namespace jinx::rag {

struct Hit {
  int64_t chunk_id = 0;
  double score = 0;       // reciprocal rank fusion score, higher is better
  int vector_rank = -1;   // 1-based rank in the vector list, -1 if absent
  int keyword_rank = -1;  // 1-based rank in the keyword list, -1 if absent
  float similarity = 0;   // cosine similarity from the vector list (0 if absent)
  double bm25 = 0;        // keyword score from the keyword list, higher is better (0 if absent)
};

// Reciprocal rank fusion: score = sum over the lists a chunk is in of 1 / (rrf_k + rank), ranks
// from 1 in the order given (each list best first). Rank fusion needs no common scale between
// cosine similarities and BM25 scores, which have none. Returns the best k, best first, ties by
// chunk id. A chunk listed twice in one list counts at its best rank only. jinx::Error for
// k < 0 or rrf_k < 0.
std::vector<Hit> fuse(std::span<const std::pair<int64_t, float>> vector_hits,
                      std::span<const std::pair<int64_t, double>> keyword_hits, int k,
                      int rrf_k = 60);

}  // namespace jinx::rag
