#include "rag/store.h"

#include <sqlite3.h>

#include <bit>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <set>
#include <string_view>
#include <unordered_map>

#include "core/check.h"

namespace jinx::rag {

// Embeddings are stored as the host's float32 bytes; a big-endian host would need a swap here.
static_assert(std::endian::native == std::endian::little);

namespace {

// 'JNXR' in the SQLite header's application_id field: marks the file as a Jinx knowledge base
// for tools like `file` and for open(), which never touches a SQLite file without it.
constexpr int64_t kApplicationId = 0x4A4E5852;

// A query's words are capped so that a pasted page cannot make one search arbitrarily slow.
constexpr size_t kMaxQueryTerms = 64;

constexpr const char* kSchema = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
-- AUTOINCREMENT: ids are never reused, so a stale vector index can never name a new chunk.
CREATE TABLE documents(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  source TEXT NOT NULL UNIQUE,
  hash TEXT NOT NULL,
  added_at INTEGER NOT NULL);  -- Unix seconds
CREATE TABLE chunks(
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  doc_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,
  "start" INTEGER NOT NULL,  -- byte range in the document
  "end" INTEGER NOT NULL,
  text TEXT NOT NULL,
  embedding BLOB NOT NULL);  -- float32 [dim]
CREATE INDEX chunks_by_doc ON chunks(doc_id);
-- The keyword index reads its text from chunks (external content); the triggers keep it in step,
-- including the deletes that cascade from documents.
CREATE VIRTUAL TABLE chunks_fts USING fts5(
  text, content='chunks', content_rowid='id', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER chunks_fts_insert AFTER INSERT ON chunks BEGIN
  INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;
CREATE TRIGGER chunks_fts_delete AFTER DELETE ON chunks BEGIN
  INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
END;
CREATE TRIGGER chunks_fts_update AFTER UPDATE OF text ON chunks BEGIN
  INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);
  INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);
END;
)sql";

bool is_query_space(unsigned char c) {
  return c <= ' ';
}  // controls too: NUL ends FTS text

// Free text -> `"w1" OR "w2" ...`: inside double quotes FTS5 reads everything as text to
// tokenize (a quote doubled stands for itself), so operators, columns, prefixes and brackets in
// the user's words are inert. Words with no ASCII letter or digit and no non-ASCII byte would
// tokenize to nothing and are dropped.
std::string fts_query(const std::string& text) {
  std::set<std::string> seen;
  std::string out;
  for (size_t i = 0; i < text.size() && seen.size() < kMaxQueryTerms;) {
    while (i < text.size() && is_query_space(text[i])) ++i;
    size_t end = i;
    bool wordy = false;
    for (; end < text.size() && !is_query_space(text[end]); ++end) {
      const unsigned char c = text[end];
      wordy |= c >= 0x80 || std::isalnum(c);
    }
    std::string word = text.substr(i, end - i);
    i = end;
    if (!wordy || !seen.insert(word).second) continue;
    if (!out.empty()) out += " OR ";
    out += '"';
    for (char c : word) out += c == '"' ? std::string("\"\"") : std::string(1, c);
    out += '"';
  }
  return out;
}

}  // namespace

// A prepared statement in use. A cached one is reset when the Query goes out of scope, so that
// no statement keeps a read transaction open (it would hold back checkpoints and writers).
class Store::Query {
 public:
  Query(const Store& store, sqlite3_stmt* stmt, bool owned)
      : store_(store), stmt_(stmt), owned_(owned) {}
  ~Query() {
    if (owned_) {
      sqlite3_finalize(stmt_);
    } else {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;

  Query& bind(int i, int64_t v) { return check(sqlite3_bind_int64(stmt_, i, v)); }
  Query& bind(int i, const std::string& v) {
    return check(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC));
  }
  Query& bind_blob(int i, const void* p, size_t n) {
    return check(sqlite3_bind_blob64(stmt_, i, p, n, SQLITE_STATIC));
  }
  // True with a row to read, false when done.
  bool step() {
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    store_.fail_sqlite(sqlite3_sql(stmt_));
  }
  int64_t integer(int col) const { return sqlite3_column_int64(stmt_, col); }
  double real(int col) const { return sqlite3_column_double(stmt_, col); }
  std::string text(int col) const {
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return p ? std::string(p, sqlite3_column_bytes(stmt_, col)) : std::string();
  }
  std::string_view blob(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);  // before bytes(), as SQLite asks
    const int n = sqlite3_column_bytes(stmt_, col);
    return p ? std::string_view(static_cast<const char*>(p), n) : std::string_view();
  }

 private:
  Query& check(int rc) {
    if (rc != SQLITE_OK) store_.fail_sqlite("bind");
    return *this;
  }
  const Store& store_;
  sqlite3_stmt* stmt_;
  bool owned_;  // finalized at the end, not kept in the cache
};

struct Store::Cache {
  std::unordered_map<std::string, sqlite3_stmt*> by_sql;
};

Store::Store(std::string path, sqlite3* db)
    : path_(std::move(path)), db_(db), cache_(std::make_unique<Cache>()) {}

Store::~Store() {
  for (auto& [sql, stmt] : cache_->by_sql) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

void Store::fail_sqlite(const char* what) const {
  fail(path_, ": ", sqlite3_errmsg(db_), " (in ", what, ")");
}

void Store::exec(const char* sql) const {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errmsg(db_);
    sqlite3_free(err);
    fail(path_, ": ", msg, " (in ", sql, ")");
  }
}

Store::Query Store::query(const char* sql) const {
  sqlite3_stmt*& stmt = cache_->by_sql[sql];
  if (!stmt &&
      sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
    cache_->by_sql.erase(sql);
    fail_sqlite(sql);
  }
  return Query(*this, stmt, false);
}

int64_t Store::scalar(const char* sql) const {
  Query q = prepare(sql);
  JINX_CHECK(q.step(), "no row from ", sql);
  return q.integer(0);
}

Store::Query Store::prepare(const char* sql) const {
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr) != SQLITE_OK) fail_sqlite(sql);
  return Query(*this, stmt, true);
}

std::unique_ptr<Store> Store::open(const std::string& path) {
  sqlite3* db = nullptr;
  const int rc =
      sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    fail(path, ": cannot open the knowledge base: ", msg);
  }
  std::unique_ptr<Store> store(new Store(path, db));
  sqlite3_busy_timeout(db, 5000);  // wait for another process's write instead of failing
  store->check_identity();
  // Only now that the file is known to be ours may settings that write to it be changed.
  store->exec("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;");
  return store;
}

// Tells a new (empty) file, a Jinx knowledge base and anything else apart without writing to
// anything but a new file.
void Store::check_identity() {
  int64_t app_id = 0, version = 0, n_objects = 0;
  try {
    app_id = scalar("PRAGMA application_id");
    version = scalar("PRAGMA user_version");
    n_objects = scalar("SELECT count(*) FROM sqlite_master");
  } catch (const Error&) {
    if (sqlite3_errcode(db_) == SQLITE_NOTADB)
      fail(path_, ": not a Jinx knowledge base: not a SQLite database (", sqlite3_errmsg(db_), ")");
    fail(path_, ": cannot read the knowledge base: ", sqlite3_errmsg(db_));
  }
  if (app_id == 0 && version == 0 && n_objects == 0) return create_schema();
  if (app_id != kApplicationId)
    fail(path_, ": a SQLite database, but not a Jinx knowledge base (application_id ", app_id, ", ",
         n_objects, " schema objects)");
  if (version > kSchemaVersion)
    fail(path_, ": a knowledge base of schema version ", version, ", newer than this Jinx reads (",
         kSchemaVersion, ")");
  if (version < 1) fail(path_, ": a damaged knowledge base (schema version ", version, ")");
  if (scalar("SELECT count(*) FROM sqlite_master WHERE name IN "
             "('meta', 'documents', 'chunks', 'chunks_fts')") != 4)
    fail(path_, ": a damaged knowledge base (tables missing)");
}

void Store::create_schema() {
  // IMMEDIATE takes the write lock first, so two processes creating one file cannot both do it.
  exec("BEGIN IMMEDIATE");
  try {
    if (scalar("SELECT count(*) FROM sqlite_master") == 0) {
      exec(kSchema);
      exec(str("PRAGMA application_id = ", kApplicationId,
               "; PRAGMA user_version = ", kSchemaVersion)
               .c_str());
    }
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    throw;
  }
  exec("COMMIT");
}

std::optional<std::string> Store::meta(const std::string& key) const {
  Query q = query("SELECT value FROM meta WHERE key = ?1");
  q.bind(1, key);
  if (!q.step()) return std::nullopt;
  return q.text(0);
}

std::optional<std::string> Store::document_hash(const std::string& source) const {
  Query q = query("SELECT hash FROM documents WHERE source = ?1");
  q.bind(1, source);
  if (!q.step()) return std::nullopt;
  return q.text(0);
}

void Store::set_meta(const std::string& key, const std::string& value) {
  Query q = query(
      "INSERT INTO meta(key, value) VALUES (?1, ?2) "
      "ON CONFLICT(key) DO UPDATE SET value = excluded.value");
  q.bind(1, key).bind(2, value).step();
}

std::optional<int64_t> Store::add_document(const std::string& source,
                                           const std::string& content_hash) {
  // A savepoint makes the replace atomic inside or outside the caller's transaction.
  exec("SAVEPOINT add_document");
  try {
    std::optional<int64_t> old_id;
    std::string old_hash;
    {
      Query q = query("SELECT id, hash FROM documents WHERE source = ?1");
      q.bind(1, source);
      if (q.step()) old_id = q.integer(0), old_hash = q.text(1);
    }
    if (old_id && old_hash == content_hash) {
      exec("RELEASE add_document");
      return std::nullopt;
    }
    if (old_id) query("DELETE FROM documents WHERE id = ?1").bind(1, *old_id).step();
    const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    Query q =
        query("INSERT INTO documents(source, hash, added_at) VALUES (?1, ?2, ?3) RETURNING id");
    q.bind(1, source).bind(2, content_hash).bind(3, now);
    JINX_CHECK(q.step());
    const int64_t id = q.integer(0);
    q.step();  // finishes the insert
    exec("RELEASE add_document");
    return id;
  } catch (...) {
    sqlite3_exec(db_, "ROLLBACK TO add_document; RELEASE add_document", nullptr, nullptr, nullptr);
    throw;
  }
}

int64_t Store::add_chunk(int64_t doc_id, int64_t start, int64_t end, const std::string& text,
                         std::span<const float> embedding) {
  JINX_CHECK(0 <= start && start <= end, "chunk range [", start, ", ", end, ")");
  JINX_CHECK(!embedding.empty(), "a chunk needs an embedding");
  for (float x : embedding) JINX_CHECK(std::isfinite(x), "non-finite embedding value ", x);
  Query q = query(
      "INSERT INTO chunks(doc_id, \"start\", \"end\", text, embedding) "
      "VALUES (?1, ?2, ?3, ?4, ?5) RETURNING id");
  q.bind(1, doc_id).bind(2, start).bind(3, end).bind(4, text);
  q.bind_blob(5, embedding.data(), embedding.size_bytes());
  JINX_CHECK(q.step());
  const int64_t id = q.integer(0);
  q.step();
  return id;
}

bool Store::remove_document(const std::string& source) {
  query("DELETE FROM documents WHERE source = ?1").bind(1, source).step();
  return sqlite3_changes(db_) > 0;
}

std::vector<StoredChunk> Store::get_chunks(std::span<const int64_t> ids) const {
  std::vector<StoredChunk> out;
  out.reserve(ids.size());
  for (int64_t id : ids) {
    Query q = query(
        "SELECT c.doc_id, d.source, c.\"start\", c.\"end\", c.text "
        "FROM chunks c JOIN documents d ON d.id = c.doc_id WHERE c.id = ?1");
    q.bind(1, id);
    if (!q.step()) continue;
    out.push_back({id, q.integer(0), q.text(1), q.integer(2), q.integer(3), q.text(4)});
  }
  return out;
}

void Store::for_each_embedding(
    int64_t dim, const std::function<void(int64_t id, std::span<const float>)>& fn) const {
  JINX_CHECK(dim > 0, "embedding dimension ", dim);
  std::vector<float> v(dim);  // a copy: a BLOB's bytes need not be aligned for float
  Query q = prepare("SELECT id, embedding FROM chunks ORDER BY id");
  while (q.step()) {
    const std::string_view b = q.blob(1);
    if (b.size() != v.size() * sizeof(float))
      fail(path_, ": chunk ", q.integer(0), " has an embedding of ", b.size(), " bytes, expected ",
           dim, " float32 (", v.size() * sizeof(float), " bytes)");
    std::memcpy(v.data(), b.data(), b.size());
    fn(q.integer(0), v);
  }
}

int64_t Store::n_documents() const {
  return scalar("SELECT count(*) FROM documents");
}
int64_t Store::n_chunks() const {
  return scalar("SELECT count(*) FROM chunks");
}

std::vector<std::pair<int64_t, double>> Store::keyword_search(const std::string& query_text,
                                                              int k) const {
  std::vector<std::pair<int64_t, double>> out;
  const std::string match = fts_query(query_text);
  if (match.empty() || k <= 0) return out;
  // FTS5's bm25() is lower-is-better; negated so that every score here is higher-is-better.
  Query q = query(
      "SELECT rowid, -bm25(chunks_fts) FROM chunks_fts WHERE chunks_fts MATCH ?1 "
      "ORDER BY bm25(chunks_fts), rowid LIMIT ?2");
  q.bind(1, match).bind(2, static_cast<int64_t>(k));
  while (q.step()) out.emplace_back(q.integer(0), q.real(1));
  return out;
}

// IMMEDIATE: the write lock is taken at the start, not on the first write, where waiting for
// another writer could deadlock instead of just waiting for busy_timeout.
void Store::begin() {
  exec("BEGIN IMMEDIATE");
}
void Store::commit() {
  exec("COMMIT");
}
void Store::rollback() {
  exec("ROLLBACK");
}

Store::Transaction::~Transaction() {
  if (!store_) return;
  try {
    store_->rollback();
  } catch (const Error&) {
    // Nothing to do from a destructor: SQLite rolls an open transaction back on close anyway.
  }
}

void Store::Transaction::commit() {
  JINX_CHECK(store_, "transaction already finished");
  store_->commit();  // on failure the destructor still rolls back
  store_ = nullptr;
}

}  // namespace jinx::rag
