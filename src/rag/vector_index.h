// Approximate nearest neighbours by cosine similarity (hnswlib's HNSW graph).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace jinx::rag {

// An HNSW graph over L2-normalized float vectors in inner-product space, so that its inner
// product is the cosine similarity. Ids are the caller's (chunk ids): any value >= 0.
// search() may run from several threads at once; add(), set_ef_search() and save() may not run
// beside anything else.
class VectorIndex {
 public:
  // M: graph degree (memory ~ 2*M*4 bytes per vector beside the vector itself);
  // ef_construction: candidates kept while linking a new vector (build time vs quality).
  VectorIndex(int64_t dim, int64_t capacity, int M = 16, int ef_construction = 200,
              uint64_t seed = 100);
  ~VectorIndex();
  VectorIndex(const VectorIndex&) = delete;
  VectorIndex& operator=(const VectorIndex&) = delete;

  // Adds a vector of dim floats (normalized here; a zero or non-finite one is a jinx::Error).
  // Adding an id again replaces its vector. Grows past the capacity as needed.
  void add(int64_t id, std::span<const float> v);
  // The k nearest by cosine similarity, best first: (id, similarity in [-1, 1]); fewer when the
  // index holds fewer. Searches max(k, ef_search) candidates.
  std::vector<std::pair<int64_t, float>> search(std::span<const float> q, int k) const;

  int64_t size() const;
  int64_t dim() const { return dim_; }
  int64_t capacity() const;
  void set_ef_search(int ef);  // candidates searched (recall vs time); default 64
  int ef_search() const { return ef_search_; }

  // Writes hnswlib's own file format (to a temporary file renamed over `path`, so a failed save
  // never leaves a half-written index there). jinx::Error if it cannot be written.
  void save(const std::string& path) const;
  // Reads a file save() wrote. Every header field, count, offset, link and label is checked
  // before hnswlib reads the file (hnswlib trusts it), so a missing, truncated, corrupt or
  // other-dimension file gives a jinx::Error, never a crash.
  static std::unique_ptr<VectorIndex> load(const std::string& path, int64_t dim);

 private:
  struct Impl;
  explicit VectorIndex(std::unique_ptr<Impl> impl, int64_t dim);
  std::unique_ptr<Impl> impl_;
  int64_t dim_;
  int ef_search_ = 64;
};

}  // namespace jinx::rag
