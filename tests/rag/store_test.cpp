#include "rag/store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "core/check.h"
#include "file_util.h"

namespace jinx::rag {
namespace {

namespace fs = std::filesystem;

// A directory of its own per test (and process), removed afterwards.
class StoreTest : public testing::Test {
 protected:
  void SetUp() override {
    const auto* info = testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::path(testing::TempDir()) /
           str("jinx_rag_", info->test_suite_name(), "_", info->name(), "_", ::getpid());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name) const { return (dir_ / name).string(); }

  fs::path dir_;
};

using test::read_all;

void sqlite_exec(const std::string& path, const char* sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(db);
}

std::vector<int64_t> ids_of(const std::vector<std::pair<int64_t, double>>& hits) {
  std::vector<int64_t> ids;
  for (const auto& h : hits) ids.push_back(h.first);
  return ids;
}

TEST_F(StoreTest, CreateAndReopenRoundTrip) {
  const std::string path = file("kb.sqlite");
  // Values whose bits a lossy path would change: a denormal, -0, the largest float.
  const std::vector<std::vector<float>> embs = {
      {1.0f, -0.0f, 3.14159274f, 1e-42f},
      {std::numeric_limits<float>::max(), -2.5f, 0.1f, 7.0f},
      {0.5f, 0.25f, -0.125f, 1e-7f}};
  std::vector<int64_t> ids;
  int64_t doc = 0;
  {
    auto store = Store::open(path);
    EXPECT_EQ(store->meta("embedding_model"), std::nullopt);
    store->set_meta("embedding_model", "bge-small");
    store->set_meta("embedding_model", "bge-base");  // replaces
    store->set_meta("dim", "4");
    Store::Transaction tx(*store);
    doc = store->add_document("docs/a.md", "hash1").value();
    for (int i = 0; i < 3; ++i)
      ids.push_back(store->add_chunk(doc, 10 * i, 10 * i + 9, str("chunk text ", i), embs[i]));
    tx.commit();
  }
  auto store = Store::open(path);
  EXPECT_EQ(store->meta("embedding_model"), "bge-base");
  EXPECT_EQ(store->meta("dim"), "4");
  EXPECT_EQ(store->n_documents(), 1);
  EXPECT_EQ(store->n_chunks(), 3);

  const std::vector<int64_t> asked = {ids[2], ids[0], 999999, ids[1], ids[2]};
  const auto chunks = store->get_chunks(asked);
  ASSERT_EQ(chunks.size(), 4u) << "the missing id is skipped, the repeated one is not";
  const int order[] = {2, 0, 1, 2};
  for (size_t k = 0; k < chunks.size(); ++k) {
    const int i = order[k];
    EXPECT_EQ(chunks[k].id, ids[i]);
    EXPECT_EQ(chunks[k].doc_id, doc);
    EXPECT_EQ(chunks[k].source, "docs/a.md");
    EXPECT_EQ(chunks[k].start, 10 * i);
    EXPECT_EQ(chunks[k].end, 10 * i + 9);
    EXPECT_EQ(chunks[k].text, str("chunk text ", i));
  }

  size_t seen = 0;
  store->for_each_embedding(4, [&](int64_t id, std::span<const float> e) {
    ASSERT_LT(seen, ids.size());
    EXPECT_EQ(id, ids[seen]);
    ASSERT_EQ(e.size(), 4u);
    EXPECT_EQ(std::memcmp(e.data(), embs[seen].data(), 16), 0) << "embedding " << seen;
    ++seen;
  });
  EXPECT_EQ(seen, 3u);
  EXPECT_THROW(store->for_each_embedding(3, [](int64_t, std::span<const float>) {}), Error);
  EXPECT_THROW(store->for_each_embedding(5, [](int64_t, std::span<const float>) {}), Error);
}

TEST_F(StoreTest, SameHashIsSkippedAndNewHashReplaces) {
  auto store = Store::open(file("kb.sqlite"));
  const float e[] = {1, 0};
  const int64_t doc = store->add_document("a.txt", "h1").value();
  const int64_t old_chunk = store->add_chunk(doc, 0, 20, "the zebra crossed the road", e);
  store->add_document("b.txt", "h1");

  EXPECT_EQ(store->add_document("a.txt", "h1"), std::nullopt);
  EXPECT_EQ(store->n_chunks(), 1);
  EXPECT_EQ(ids_of(store->keyword_search("zebra", 5)), std::vector<int64_t>{old_chunk});

  const auto doc2 = store->add_document("a.txt", "h2");
  ASSERT_TRUE(doc2.has_value());
  EXPECT_NE(*doc2, doc);
  EXPECT_EQ(store->n_documents(), 2);
  EXPECT_EQ(store->n_chunks(), 0) << "the old chunks go with the old document";
  EXPECT_TRUE(store->keyword_search("zebra", 5).empty()) << "and so does their keyword index";
  EXPECT_TRUE(store->get_chunks(std::vector<int64_t>{old_chunk}).empty());

  const int64_t new_chunk = store->add_chunk(*doc2, 0, 20, "the giraffe crossed the road", e);
  EXPECT_GT(new_chunk, old_chunk) << "chunk ids are never reused";
  EXPECT_EQ(ids_of(store->keyword_search("giraffe", 5)), std::vector<int64_t>{new_chunk});
  EXPECT_EQ(ids_of(store->keyword_search("road", 5)), std::vector<int64_t>{new_chunk});
}

TEST_F(StoreTest, RemoveDocument) {
  auto store = Store::open(file("kb.sqlite"));
  const float e[] = {1, 2, 3};
  const int64_t doc = store->add_document("a.txt", "h").value();
  store->add_chunk(doc, 0, 5, "alpha beta", e);
  store->add_chunk(doc, 5, 9, "gamma", e);
  EXPECT_TRUE(store->remove_document("a.txt"));
  EXPECT_FALSE(store->remove_document("a.txt"));
  EXPECT_EQ(store->n_documents(), 0);
  EXPECT_EQ(store->n_chunks(), 0);
  EXPECT_TRUE(store->keyword_search("alpha gamma", 5).empty());
  EXPECT_THROW(store->add_chunk(doc, 0, 1, "orphan", e), Error) << "no such document";
}

TEST_F(StoreTest, TransactionRollsBackUnlessCommitted) {
  auto store = Store::open(file("kb.sqlite"));
  const float e[] = {1};
  {
    Store::Transaction tx(*store);
    const int64_t doc = store->add_document("a.txt", "h").value();
    store->add_chunk(doc, 0, 1, "text", e);
  }
  EXPECT_EQ(store->n_documents(), 0);
  EXPECT_EQ(store->n_chunks(), 0);
  EXPECT_TRUE(store->keyword_search("text", 5).empty());
  store->begin();
  store->add_document("a.txt", "h");
  store->rollback();
  EXPECT_EQ(store->n_documents(), 0);
}

TEST_F(StoreTest, KeywordSearchRanksTheRareTermFirst) {
  auto store = Store::open(file("kb.sqlite"));
  const float e[] = {1};
  const int64_t doc = store->add_document("a.txt", "h").value();
  std::vector<int64_t> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(store->add_chunk(doc, i, i + 1, str("the cat sat on the mat number ", i), e));
  const int64_t rare = store->add_chunk(doc, 20, 21, "the cat played the xylophone", e);
  const int64_t accented = store->add_chunk(doc, 21, 22, "un café crème à la Française", e);

  const auto hits = store->keyword_search("the XYLOPHONE cat", 10);
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].first, rare);
  EXPECT_EQ(hits.size(), 10u);
  for (size_t i = 1; i < hits.size(); ++i) EXPECT_GE(hits[i - 1].second, hits[i].second);
  EXPECT_GT(hits[0].second, hits[1].second);

  EXPECT_EQ(ids_of(store->keyword_search("creme cafe", 5)), std::vector<int64_t>{accented})
      << "diacritics are folded";
  EXPECT_EQ(store->keyword_search("cat", 3).size(), 3u);
  EXPECT_TRUE(store->keyword_search("cat", 0).empty());
  EXPECT_TRUE(store->keyword_search("unicorn", 5).empty());
}

TEST_F(StoreTest, HostileQueriesAreText) {
  auto store = Store::open(file("kb.sqlite"));
  const float e[] = {1};
  const int64_t doc = store->add_document("a.txt", "h").value();
  const int64_t near = store->add_chunk(doc, 0, 1, "near the col x of a zebra", e);
  for (const char* q :
       {"\"",    "a AND", "AND",  "NEAR(",   "NEAR(a b, 2)", "*",          "a*", "col:x",
        "text:", "-",     "- -",  "",        "   ",          "\U0001F600", "(",  ")",
        "^a",    "a OR",  "NOT",  "\"\"\"",  "{a b}",        "a + b",      ":",  "'",
        "\\",    "%_",    "a\"b", "\x01\x02"}) {
    EXPECT_NO_THROW(store->keyword_search(q, 5)) << q;
  }
  EXPECT_EQ(ids_of(store->keyword_search("zebra AND \"", 5)), std::vector<int64_t>{near});
  EXPECT_EQ(ids_of(store->keyword_search("NEAR( zebra", 5)), std::vector<int64_t>{near});
  EXPECT_EQ(ids_of(store->keyword_search("col:x", 5)), std::vector<int64_t>{near});
  EXPECT_TRUE(store->keyword_search("-", 5).empty());
  EXPECT_TRUE(store->keyword_search("", 5).empty());
  const std::string with_nul("zebra\0NEAR(", 11);
  EXPECT_EQ(ids_of(store->keyword_search(with_nul, 5)), std::vector<int64_t>{near});
}

TEST_F(StoreTest, RejectsFilesThatAreNotKnowledgeBases) {
  const std::string text = file("notes.txt");
  {
    std::ofstream out(text, std::ios::binary);
    for (int i = 0; i < 200; ++i) out << "this is a plain text file, not a database\n";
  }
  const std::string before = read_all(text);
  try {
    Store::open(text);
    FAIL() << "opened a text file";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a SQLite database"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_all(text), before) << "the file must be left as it was";

  const std::string other = file("other.sqlite");
  sqlite_exec(other, "CREATE TABLE photos(id INTEGER PRIMARY KEY, name TEXT);");
  const std::string other_before = read_all(other);
  try {
    Store::open(other);
    FAIL() << "opened another application's database";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(other), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("not a Jinx knowledge base"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(read_all(other), other_before);
  EXPECT_THROW(Store::open(file("no/such/dir/kb.sqlite")), Error);
}

TEST_F(StoreTest, RejectsNewerSchema) {
  const std::string path = file("kb.sqlite");
  Store::open(path);
  sqlite_exec(path, "PRAGMA user_version = 99;");
  try {
    Store::open(path);
    FAIL() << "opened a newer schema";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST_F(StoreTest, EmptyFileBecomesAKnowledgeBase) {
  const std::string path = file("empty.sqlite");
  std::ofstream(path).close();
  auto store = Store::open(path);
  EXPECT_EQ(store->n_documents(), 0);
  store->set_meta("k", "v");
  store.reset();
  EXPECT_EQ(Store::open(path)->meta("k"), "v");
}

TEST_F(StoreTest, RejectsBadChunks) {
  auto store = Store::open(file("kb.sqlite"));
  const int64_t doc = store->add_document("a.txt", "h").value();
  const float ok[] = {1, 2};
  const float nan[] = {1, std::numeric_limits<float>::quiet_NaN()};
  EXPECT_THROW(store->add_chunk(doc, 5, 4, "x", ok), Error);
  EXPECT_THROW(store->add_chunk(doc, 0, 1, "x", std::span<const float>()), Error);
  EXPECT_THROW(store->add_chunk(doc, 0, 1, "x", nan), Error);
  EXPECT_EQ(store->n_chunks(), 0);
}

}  // namespace
}  // namespace jinx::rag
