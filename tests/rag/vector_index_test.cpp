#include "rag/vector_index.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "core/check.h"
#include "file_util.h"

namespace jinx::rag {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kDim = 64;

std::vector<std::vector<float>> random_vectors(int64_t n, int64_t dim, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<std::vector<float>> vs(n, std::vector<float>(dim));
  for (auto& v : vs)
    for (float& x : v) x = normal(rng);
  return vs;
}

double cosine(const std::vector<float>& a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < a.size(); ++i) ab += a[i] * b[i], aa += a[i] * a[i], bb += b[i] * b[i];
  return ab / std::sqrt(aa * bb);
}

// Ids [0, n) by cosine similarity to q, best first.
std::vector<int64_t> brute_force(const std::vector<std::vector<float>>& vs,
                                 const std::vector<float>& q, int k) {
  std::vector<std::pair<double, int64_t>> all;
  for (size_t i = 0; i < vs.size(); ++i) all.emplace_back(-cosine(vs[i], q), i);
  std::partial_sort(all.begin(), all.begin() + k, all.end());
  std::vector<int64_t> ids;
  for (int i = 0; i < k; ++i) ids.push_back(all[i].second);
  return ids;
}

class VectorIndexTest : public testing::Test {
 protected:
  void SetUp() override {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(testing::TempDir()) / str("jinx_rag_", info->name(), "_", ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  // 2000 vectors, ids 0..1999 (vector i has id i).
  static std::unique_ptr<VectorIndex> build(const std::vector<std::vector<float>>& vs) {
    auto index = std::make_unique<VectorIndex>(kDim, static_cast<int64_t>(vs.size()));
    for (size_t i = 0; i < vs.size(); ++i) index->add(static_cast<int64_t>(i), vs[i]);
    return index;
  }

  fs::path dir_;
};

using test::read_all;
using test::write_all;

TEST_F(VectorIndexTest, RecallAgainstBruteForce) {
  const auto vs = random_vectors(2000, kDim, 1);
  const auto index = build(vs);
  EXPECT_EQ(index->size(), 2000);
  EXPECT_EQ(index->dim(), kDim);
  const auto queries = random_vectors(50, kDim, 2);
  int found = 0;
  for (const auto& q : queries) {
    const auto hits = index->search(q, 10);
    ASSERT_EQ(hits.size(), 10u);
    for (size_t i = 1; i < hits.size(); ++i) EXPECT_GE(hits[i - 1].second, hits[i].second);
    EXPECT_NEAR(hits[0].second, cosine(vs[hits[0].first], q), 1e-5);
    const auto truth = brute_force(vs, q, 10);
    for (const auto& h : hits) found += std::count(truth.begin(), truth.end(), h.first) > 0;
  }
  const double recall = found / 500.0;
  EXPECT_GE(recall, 0.95);
  RecordProperty("recall_at_10", std::to_string(recall));
}

TEST_F(VectorIndexTest, SelfQueryFindsItself) {
  const auto vs = random_vectors(500, kDim, 3);
  const auto index = build(vs);
  for (int64_t i = 0; i < 500; i += 7) {
    std::vector<float> scaled = vs[i];
    for (float& x : scaled) x *= 42.0f;  // not normalized: the index normalizes
    const auto hits = index->search(scaled, 3);
    ASSERT_FALSE(hits.empty());
    EXPECT_EQ(hits[0].first, i);
    EXPECT_NEAR(hits[0].second, 1.0f, 1e-5);
  }
}

TEST_F(VectorIndexTest, SaveAndLoadGiveIdenticalResults) {
  const auto vs = random_vectors(2000, kDim, 4);
  const auto index = build(vs);
  index->set_ef_search(80);
  const std::string path = file("index.hnsw");
  index->save(path);
  const auto loaded = VectorIndex::load(path, kDim);
  EXPECT_EQ(loaded->size(), 2000);
  loaded->set_ef_search(80);
  for (const auto& q : random_vectors(50, kDim, 5))
    EXPECT_EQ(index->search(q, 10), loaded->search(q, 10));
  // A loaded index grows like a new one.
  const auto more = random_vectors(10, kDim, 6);
  for (int i = 0; i < 10; ++i) loaded->add(5000 + i, more[i]);
  EXPECT_EQ(loaded->search(more[3], 1)[0].first, 5003);
}

TEST_F(VectorIndexTest, LoadRejectsBadFiles) {
  const auto vs = random_vectors(300, kDim, 7);
  const std::string path = file("index.hnsw");
  build(vs)->save(path);
  const std::string good = read_all(path);
  ASSERT_GT(good.size(), 1000u);

  EXPECT_THROW(VectorIndex::load(file("missing.hnsw"), kDim), Error);
  EXPECT_THROW(VectorIndex::load(path, 32), Error) << "wrong dimension";
  EXPECT_THROW(VectorIndex::load(path, 65), Error) << "wrong dimension";

  const std::string bad = file("bad.hnsw");
  for (size_t len : {size_t{0}, size_t{8}, size_t{95}, size_t{96}, size_t{500}, good.size() / 2,
                     good.size() - 4, good.size() - 1}) {
    write_all(bad, good.substr(0, len));
    EXPECT_THROW(VectorIndex::load(bad, kDim), Error) << "truncated to " << len;
  }
  write_all(bad, good + "x");
  EXPECT_THROW(VectorIndex::load(bad, kDim), Error) << "trailing bytes";

  std::mt19937 rng(8);
  for (size_t len : {size_t{100}, size_t{4096}, good.size()}) {
    std::string garbage(len, '\0');
    for (char& c : garbage) c = static_cast<char>(rng());
    write_all(bad, garbage);
    EXPECT_THROW(VectorIndex::load(bad, kDim), Error) << "garbage of " << len;
  }

  // Single fields changed in an otherwise good file (offsets from hnswlib's layout).
  auto patched = [&](size_t offset, uint32_t value) {
    std::string b = good;
    std::memcpy(b.data() + offset, &value, 4);
    write_all(bad, b);
    return bad;
  };
  EXPECT_THROW(VectorIndex::load(patched(16, 1000000), kDim), Error) << "count";
  EXPECT_THROW(VectorIndex::load(patched(52, 300), kDim), Error) << "entry point";
  EXPECT_THROW(VectorIndex::load(patched(96 + 4, 123456), kDim), Error) << "a link out of range";
  EXPECT_THROW(VectorIndex::load(patched(96, 0x10000 | 1), kDim), Error) << "a deleted mark";
  const size_t element = 4 + 4 * 32 + 4 * kDim + 8;  // M = 16: 32 links at level 0
  EXPECT_THROW(VectorIndex::load(patched(96 + 4 * 33 + 4 * kDim + element, 0), kDim), Error)
      << "a repeated id";
  EXPECT_THROW(VectorIndex::load(patched(96 + 4 * 33, 0x7FC00000), kDim), Error) << "a NaN";
  EXPECT_NO_THROW(VectorIndex::load(path, kDim));
}

TEST_F(VectorIndexTest, EmptyIndexSavesAndLoads) {
  const std::string path = file("empty.hnsw");
  VectorIndex(kDim, 0).save(path);
  const auto loaded = VectorIndex::load(path, kDim);
  EXPECT_EQ(loaded->size(), 0);
  const auto vs = random_vectors(3, kDim, 13);
  EXPECT_TRUE(loaded->search(vs[0], 5).empty());
  for (int i = 0; i < 3; ++i) loaded->add(i, vs[i]);
  EXPECT_EQ(loaded->search(vs[2], 1)[0].first, 2);
  EXPECT_THROW(VectorIndex(kDim, 1).save(file("no/such/dir/x.hnsw")), Error);
}

TEST_F(VectorIndexTest, GrowsPastCapacity) {
  const auto vs = random_vectors(1000, kDim, 9);
  VectorIndex index(kDim, 10);
  for (int64_t i = 0; i < 1000; ++i) index.add(i * 3, vs[i]);
  EXPECT_EQ(index.size(), 1000);
  EXPECT_GE(index.capacity(), 1000);
  for (int64_t i = 0; i < 1000; i += 37) EXPECT_EQ(index.search(vs[i], 1)[0].first, i * 3);
  VectorIndex empty(kDim, 0);
  EXPECT_TRUE(empty.search(vs[0], 5).empty());
  empty.add(1, vs[0]);
  EXPECT_EQ(empty.search(vs[0], 5).size(), 1u);
}

TEST_F(VectorIndexTest, AddingAnIdAgainReplacesIt) {
  const auto vs = random_vectors(100, kDim, 10);
  const auto index = build(vs);
  index->add(5, vs[77]);
  EXPECT_EQ(index->size(), 100);
  const auto hits = index->search(vs[77], 2);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_NEAR(hits[0].second, 1.0f, 1e-5);
  EXPECT_NEAR(hits[1].second, 1.0f, 1e-5);
  EXPECT_NE(hits[0].first, hits[1].first);
}

TEST_F(VectorIndexTest, RejectsBadInput) {
  VectorIndex index(4, 8);
  const float zero[] = {0, 0, 0, 0};
  const float ok[] = {1, 2, 3, 4};
  const float short_v[] = {1, 2, 3};
  const float inf[] = {1, INFINITY, 0, 0};
  EXPECT_THROW(index.add(1, zero), Error);
  EXPECT_THROW(index.add(1, short_v), Error);
  EXPECT_THROW(index.add(1, inf), Error);
  EXPECT_THROW(index.add(-1, ok), Error);
  EXPECT_THROW(index.search(zero, 3), Error);
  EXPECT_THROW(index.search(short_v, 3), Error);
  EXPECT_THROW(index.set_ef_search(0), Error);
  EXPECT_THROW(VectorIndex(0, 8), Error);
  EXPECT_THROW(VectorIndex(4, -1), Error);
  EXPECT_THROW(VectorIndex(4, 8, 1), Error);
  EXPECT_EQ(index.size(), 0);
  EXPECT_TRUE(index.search(ok, 0).empty());
}

TEST_F(VectorIndexTest, ConcurrentSearchesAgreeWithSerial) {
  const auto vs = random_vectors(1000, kDim, 11);
  const auto index = build(vs);
  const auto queries = random_vectors(40, kDim, 12);
  std::vector<std::vector<std::pair<int64_t, float>>> serial, parallel(queries.size());
  for (const auto& q : queries) serial.push_back(index->search(q, 10));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < queries.size(); i += 4) parallel[i] = index->search(queries[i], 10);
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(serial, parallel);
}

}  // namespace
}  // namespace jinx::rag
