#include "rag/vector_index.h"

#include <hnswlib/hnswlib.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <mutex>
#include <unordered_set>

#include "core/check.h"

namespace jinx::rag {

using Graph = hnswlib::HierarchicalNSW<float>;

struct VectorIndex::Impl {
  // Declared first so that it outlives the graph, which keeps a pointer to its dimension.
  std::unique_ptr<hnswlib::InnerProductSpace> space;
  std::unique_ptr<Graph> graph;
};

namespace {

constexpr int64_t kMaxDim = 1 << 16;

// hnswlib's InnerProductSpace constructor writes file-level function pointers (its SIMD choice),
// so two being built at once would race; they are built one at a time.
std::unique_ptr<hnswlib::InnerProductSpace> make_space(int64_t dim) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  return std::make_unique<hnswlib::InnerProductSpace>(static_cast<size_t>(dim));
}

// hnswlib 0.6.2 prefetches the link after the last one of a list (nmslib/hnswlib#107, #578):
// past an element's top level list that is 4 bytes beyond its allocation (level * size + 1
// bytes, or exactly level * size after loadIndex). Real allocators round up, so it has never
// faulted, but it is an out-of-bounds read and AddressSanitizer stops on it. Elements
// [first, end) get their upper level lists reallocated with one spare zero link.
void pad_link_lists(Graph& g, size_t first, size_t end) {
  for (size_t i = first; i < end; ++i) {
    if (g.element_levels_[i] <= 0) continue;
    const size_t bytes = g.size_links_per_element_ * g.element_levels_[i];
    void* p = std::realloc(g.linkLists_[i], bytes + sizeof(hnswlib::tableint));
    if (!p) throw std::bad_alloc();
    std::memset(static_cast<char*>(p) + bytes, 0, sizeof(hnswlib::tableint));
    g.linkLists_[i] = static_cast<char*>(p);
  }
}

// A unit-length copy, so that inner product = cosine similarity.
std::vector<float> normalized(std::span<const float> v, int64_t dim) {
  if (static_cast<int64_t>(v.size()) != dim)
    fail("vector of ", v.size(), " floats, index dim ", dim);
  double sum = 0;
  for (float x : v) {
    if (!std::isfinite(x)) fail("vector with a non-finite value ", x);
    sum += static_cast<double>(x) * x;
  }
  if (sum == 0) fail("a zero vector has no direction to compare by cosine similarity");
  const double scale = 1.0 / std::sqrt(sum);
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i] * scale);
  return out;
}

// --- Checking a saved graph before hnswlib reads it -------------------------------------------
//
// hnswlib 0.6.2's saveIndex writes (native sizes, x86-64):
//   header: offsetLevel0 u64, max_elements u64, count u64, size_data_per_element u64,
//           label_offset u64, offsetData u64, maxlevel i32, entry_point u32, maxM u64,
//           maxM0 u64, M u64, mult f64, ef_construction u64
//   level 0, per element [size_data_per_element]:
//           links u32 (count in the low 16 bits, flags above) + u32 [maxM0] | f32 [dim] | label u64
//   upper levels, per element: u32 n_bytes, then n_bytes = level * (u32 + u32 [maxM]) links.
// Its loadIndex uses all of these unchecked, and its search follows links without bounds checks.

struct Header {
  uint64_t offset_level0, max_elements, count, size_per_element, label_offset, offset_data;
  int32_t max_level;
  uint32_t entry_point;
  uint64_t max_m, max_m0, m;
  double mult;
  uint64_t ef_construction;
};
constexpr uint64_t kHeaderBytes = 6 * 8 + 4 + 4 + 3 * 8 + 8 + 8;

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
    if (!in_) fail(path, ": cannot open the vector index: ", std::strerror(errno));
    in_.seekg(0, std::ios::end);
    size_ = static_cast<uint64_t>(in_.tellg());
    in_.seekg(0);
  }
  void read(void* p, uint64_t n) {
    if (n > size_ - pos_) fail(path_, ": vector index truncated (", size_, " bytes)");
    in_.read(static_cast<char*>(p), static_cast<std::streamsize>(n));
    if (!in_) fail(path_, ": cannot read the vector index");
    pos_ += n;
  }
  template <typename T>
  T pod() {
    T v;
    read(&v, sizeof v);
    return v;
  }
  uint64_t left() const { return size_ - pos_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ifstream in_;
  uint64_t size_ = 0, pos_ = 0;
};

Header read_header(Reader& r) {
  Header h;
  h.offset_level0 = r.pod<uint64_t>();
  h.max_elements = r.pod<uint64_t>();
  h.count = r.pod<uint64_t>();
  h.size_per_element = r.pod<uint64_t>();
  h.label_offset = r.pod<uint64_t>();
  h.offset_data = r.pod<uint64_t>();
  h.max_level = r.pod<int32_t>();
  h.entry_point = r.pod<uint32_t>();
  h.max_m = r.pod<uint64_t>();
  h.max_m0 = r.pod<uint64_t>();
  h.m = r.pod<uint64_t>();
  h.mult = r.pod<double>();
  h.ef_construction = r.pod<uint64_t>();
  return h;
}

// The layout follows from M and dim alone; anything else is not a file save() wrote.
void check_header(const Header& h, int64_t dim, Reader& r) {
  const std::string& path = r.path();
  if (h.offset_level0 != 0 || h.m < 2 || h.m > 10000 || h.max_m != h.m || h.max_m0 != 2 * h.m)
    fail(path, ": not a vector index (bad graph header)");
  if (h.offset_data != 4 + 4 * h.max_m0 || h.label_offset <= h.offset_data ||
      (h.label_offset - h.offset_data) % 4 != 0 || h.size_per_element != h.label_offset + 8)
    fail(path, ": not a vector index (bad element layout)");
  const uint64_t file_dim = (h.label_offset - h.offset_data) / 4;
  if (file_dim != static_cast<uint64_t>(dim))
    fail(path, ": vector index of dimension ", file_dim, ", expected ", dim);
  if (h.count > r.left() / h.size_per_element || h.count >= std::numeric_limits<uint32_t>::max())
    fail(path, ": vector index truncated or corrupt (", h.count, " vectors do not fit its size)");
  if (!(std::isfinite(h.mult) && h.mult > 0) || h.ef_construction < 1 ||
      h.ef_construction > (1u << 24))
    fail(path, ": not a vector index (bad build parameters)");
  if (h.count > 0 && (h.entry_point >= h.count || h.max_level < 0 || h.max_level > 1000))
    fail(path, ": vector index corrupt (bad entry point)");
}

// One link list: count in the low 16 bits of the first word, no flags (no deleted marks: Jinx
// never deletes), then neighbours that exist and, above level 0, reach up to `level`.
void check_links(const char* p, uint64_t max_links, const Header& h,
                 const std::vector<int32_t>* levels, int32_t level, const std::string& path) {
  uint32_t head;
  std::memcpy(&head, p, 4);
  if ((head & 0xFFFF) > max_links || (head >> 16) != 0)
    fail(path, ": vector index corrupt (bad link list)");
  for (uint32_t i = 0; i < (head & 0xFFFF); ++i) {
    uint32_t to;
    std::memcpy(&to, p + 4 + 4 * i, 4);
    if (to >= h.count || (levels && (*levels)[to] < level))
      fail(path, ": vector index corrupt (link to a missing vector)");
  }
}

void check_level0(Reader& r, const Header& h, int64_t dim) {
  std::vector<char> element(h.size_per_element);
  std::unordered_set<uint64_t> labels;
  labels.reserve(h.count);
  for (uint64_t i = 0; i < h.count; ++i) {
    r.read(element.data(), element.size());
    check_links(element.data(), h.max_m0, h, nullptr, 0, r.path());
    for (int64_t d = 0; d < dim; ++d) {
      float x;
      std::memcpy(&x, element.data() + h.offset_data + 4 * d, 4);
      if (!std::isfinite(x)) fail(r.path(), ": vector index corrupt (non-finite vector)");
    }
    uint64_t label;
    std::memcpy(&label, element.data() + h.label_offset, 8);
    if (label > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
        !labels.insert(label).second)
      fail(r.path(), ": vector index corrupt (bad or repeated id)");
  }
}

// The upper levels: sizes first (every element's level must be known before any link to it is
// checked), then the links, and the file must end exactly after them.
void check_upper_levels(Reader& r, const Header& h) {
  std::vector<char> rest(r.left());
  r.read(rest.data(), rest.size());
  const uint64_t per_level = 4 + 4 * h.max_m;
  std::vector<int32_t> levels(h.count);
  std::vector<uint64_t> offsets(h.count);
  uint64_t pos = 0;
  for (uint64_t i = 0; i < h.count; ++i) {
    uint32_t n_bytes;
    if (rest.size() - pos < 4) fail(r.path(), ": vector index truncated");
    std::memcpy(&n_bytes, rest.data() + pos, 4);
    pos += 4;
    if (n_bytes % per_level != 0 || n_bytes / per_level > static_cast<uint64_t>(h.max_level) ||
        n_bytes > rest.size() - pos)
      fail(r.path(), ": vector index truncated or corrupt (bad level list)");
    levels[i] = static_cast<int32_t>(n_bytes / per_level);
    offsets[i] = pos;
    pos += n_bytes;
  }
  if (pos != rest.size())
    fail(r.path(), ": vector index corrupt (", rest.size() - pos, " extra bytes)");
  if (h.count > 0 && levels[h.entry_point] != h.max_level)
    fail(r.path(), ": vector index corrupt (entry point not on the top level)");
  for (uint64_t i = 0; i < h.count; ++i)
    for (int32_t l = 1; l <= levels[i]; ++l)
      check_links(rest.data() + offsets[i] + (l - 1) * per_level, h.max_m, h, &levels, l, r.path());
}

// Returns the number of vectors in a well-formed file; jinx::Error for anything else.
uint64_t check_file(const std::string& path, int64_t dim) {
  Reader r(path);
  if (r.left() < kHeaderBytes) fail(path, ": not a vector index (", r.left(), " bytes)");
  const Header h = read_header(r);
  check_header(h, dim, r);
  check_level0(r, h, dim);
  check_upper_levels(r, h);
  return h.count;
}

void check_dim(int64_t dim) {
  if (dim < 1 || dim > kMaxDim) fail("vector dimension ", dim, " outside [1, ", kMaxDim, "]");
}

}  // namespace

VectorIndex::VectorIndex(int64_t dim, int64_t capacity, int M, int ef_construction, uint64_t seed)
    : impl_(std::make_unique<Impl>()), dim_(dim) {
  check_dim(dim);
  if (capacity < 0) fail("vector index capacity ", capacity);
  // M = 1 would make hnswlib's level multiplier 1 / log(1).
  if (M < 2 || M > 10000) fail("vector index M ", M, " outside [2, 10000]");
  if (ef_construction < 1) fail("vector index ef_construction ", ef_construction);
  impl_->space = make_space(dim);
  impl_->graph = std::make_unique<Graph>(impl_->space.get(), std::max<int64_t>(capacity, 1), M,
                                         ef_construction, seed);
  impl_->graph->setEf(ef_search_);
}

VectorIndex::VectorIndex(std::unique_ptr<Impl> impl, int64_t dim)
    : impl_(std::move(impl)), dim_(dim) {
  impl_->graph->setEf(ef_search_);
}

VectorIndex::~VectorIndex() = default;

void VectorIndex::add(int64_t id, std::span<const float> v) {
  if (id < 0) fail("vector index ids must be >= 0, got ", id);
  const std::vector<float> unit = normalized(v, dim_);
  Graph& g = *impl_->graph;
  // Doubling keeps the copies resizeIndex makes amortized O(1) per vector.
  if (g.cur_element_count >= g.max_elements_)
    g.resizeIndex(std::max<size_t>(16, 2 * g.max_elements_));
  const size_t before = g.cur_element_count;
  try {
    g.addPoint(unit.data(), static_cast<hnswlib::labeltype>(id));
  } catch (const std::runtime_error& e) {
    fail("vector index: ", e.what());
  }
  pad_link_lists(g, before, g.cur_element_count);
}

std::vector<std::pair<int64_t, float>> VectorIndex::search(std::span<const float> q, int k) const {
  std::vector<std::pair<int64_t, float>> out;
  if (k <= 0) return out;
  const std::vector<float> unit = normalized(q, dim_);
  // A max-heap on distance (1 - similarity): it pops the worst first.
  auto heap = impl_->graph->searchKnn(unit.data(), static_cast<size_t>(k));
  out.resize(heap.size());
  for (size_t i = heap.size(); i-- > 0; heap.pop())
    out[i] = {static_cast<int64_t>(heap.top().second), 1.0f - heap.top().first};
  return out;
}

int64_t VectorIndex::size() const {
  return static_cast<int64_t>(impl_->graph->cur_element_count);
}
int64_t VectorIndex::capacity() const {
  return static_cast<int64_t>(impl_->graph->max_elements_);
}

void VectorIndex::set_ef_search(int ef) {
  if (ef < 1) fail("ef_search must be at least 1, got ", ef);
  ef_search_ = ef;
  impl_->graph->setEf(static_cast<size_t>(ef));  // searchKnn uses max(ef, k)
}

void VectorIndex::save(const std::string& path) const {
  const std::string tmp = str(path, ".tmp.", ::getpid());
  try {
    impl_->graph->saveIndex(tmp);  // reports no write errors itself: the check below does
    if (check_file(tmp, dim_) != static_cast<uint64_t>(size()))
      fail(tmp, ": vector index written incompletely");
  } catch (const std::exception& e) {
    std::remove(tmp.c_str());
    fail(path, ": cannot save the vector index: ", e.what());
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    fail(path, ": cannot save the vector index: ", std::strerror(err));
  }
}

std::unique_ptr<VectorIndex> VectorIndex::load(const std::string& path, int64_t dim) {
  check_dim(dim);
  const uint64_t count = check_file(path, dim);
  auto impl = std::make_unique<Impl>();
  impl->space = make_space(dim);
  try {
    // Capacity = count: the file's own max_elements is not trusted for an allocation.
    impl->graph =
        std::make_unique<Graph>(impl->space.get(), path, false, std::max<uint64_t>(count, 1));
  } catch (const std::exception& e) {
    fail(path, ": cannot load the vector index: ", e.what());
  }
  // The loading constructor leaves num_deleted_ uninitialized and only adds the deleted marks it
  // finds; check_file found none.
  impl->graph->num_deleted_ = 0;
  if (impl->graph->cur_element_count != count) fail(path, ": vector index changed while loading");
  pad_link_lists(*impl->graph, 0, count);
  return std::unique_ptr<VectorIndex>(new VectorIndex(std::move(impl), dim));
}

}  // namespace jinx::rag
