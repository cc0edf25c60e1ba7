#include "rag/retriever.h"

#include <algorithm>
#include <unordered_map>

#include "core/check.h"

namespace jinx::rag {

std::vector<Hit> fuse(std::span<const std::pair<int64_t, float>> vector_hits,
                      std::span<const std::pair<int64_t, double>> keyword_hits, int k, int rrf_k) {
  if (k < 0) fail("number of hits k must be >= 0, got ", k);
  if (rrf_k < 0) fail("rrf_k must be >= 0, got ", rrf_k);
  std::vector<Hit> hits;
  std::unordered_map<int64_t, size_t> index;  // chunk id -> position in hits
  auto hit_for = [&](int64_t id) -> Hit& {
    auto [it, added] = index.try_emplace(id, hits.size());
    if (added) hits.push_back(Hit{.chunk_id = id});
    return hits[it->second];
  };
  for (size_t i = 0; i < vector_hits.size(); ++i) {
    Hit& h = hit_for(vector_hits[i].first);
    if (h.vector_rank >= 0) continue;
    h.vector_rank = static_cast<int>(i) + 1;
    h.similarity = vector_hits[i].second;
    h.score += 1.0 / (rrf_k + h.vector_rank);
  }
  for (size_t i = 0; i < keyword_hits.size(); ++i) {
    Hit& h = hit_for(keyword_hits[i].first);
    if (h.keyword_rank >= 0) continue;
    h.keyword_rank = static_cast<int>(i) + 1;
    h.bm25 = keyword_hits[i].second;
    h.score += 1.0 / (rrf_k + h.keyword_rank);
  }
  auto better = [](const Hit& a, const Hit& b) {
    return a.score != b.score ? a.score > b.score : a.chunk_id < b.chunk_id;
  };
  const size_t n = std::min(hits.size(), static_cast<size_t>(k));
  std::partial_sort(hits.begin(), hits.begin() + n, hits.end(), better);
  hits.resize(n);
  return hits;
}

}  // namespace jinx::rag
