// The knowledge base: documents, their chunks, embeddings and a keyword index in one SQLite file.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

struct sqlite3;

namespace jinx::rag {

struct StoredChunk {
  int64_t id = 0;
  int64_t doc_id = 0;
  std::string source;          // the document's source name, e.g. its path
  int64_t start = 0, end = 0;  // byte range [start, end) in the document
  std::string text;
};

// One open knowledge base file. Not thread-safe: use one Store per thread (SQLite allows several
// connections to one file; its write-ahead log lets readers run beside one writer).
class Store {
 public:
  static constexpr int kSchemaVersion = 1;

  // Opens or creates the database (the schema is created if the file is new or empty). A file
  // that is not SQLite, a SQLite file of something else, or a knowledge base of a newer schema
  // gives a jinx::Error naming the path and what is wrong; such a file is left unchanged.
  static std::unique_ptr<Store> open(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::string& path() const { return path_; }

  // Key/value settings (e.g. the embedding model and its dimension).
  std::optional<std::string> meta(const std::string& key) const;
  void set_meta(const std::string& key, const std::string& value);

  // Adds a document by its source name with a content hash (any caller-chosen string) and
  // returns its id. If the source exists with the same hash it returns std::nullopt (already
  // indexed); with a different hash the old document and its chunks are removed first. Wrap a
  // document and its chunks in one Transaction, so that an interrupted run leaves no document
  // that looks indexed but lacks chunks.
  std::optional<int64_t> add_document(const std::string& source, const std::string& content_hash);
  // Returns the chunk's id. The embedding is stored as float32 (native little-endian) bytes.
  int64_t add_chunk(int64_t doc_id, int64_t start, int64_t end, const std::string& text,
                    std::span<const float> embedding);
  // The content hash a source was indexed with; nullopt if it is not in the knowledge base.
  std::optional<std::string> document_hash(const std::string& source) const;
  // Removes the document and its chunks; false if there was none of that source.
  bool remove_document(const std::string& source);

  // The chunks of these ids, in the order asked; ids that do not exist (say, removed since a
  // vector index was built) are skipped.
  std::vector<StoredChunk> get_chunks(std::span<const int64_t> ids) const;
  // Calls fn for every chunk's embedding in id order (to build a vector index); jinx::Error if
  // one is not `dim` floats. fn must not call back into this Store.
  void for_each_embedding(int64_t dim,
                          const std::function<void(int64_t id, std::span<const float>)>& fn) const;
  int64_t n_documents() const;
  int64_t n_chunks() const;

  // BM25 keyword search over the chunk texts, best first: (chunk id, score), higher is better.
  // The query is free text: each whitespace-separated word becomes a quoted phrase and the
  // phrases are joined by OR, so FTS5 syntax in it is plain text; a query without letters or
  // digits, or k <= 0, returns nothing.
  std::vector<std::pair<int64_t, double>> keyword_search(const std::string& query, int k) const;

  // Plain transactions (they do not nest); see Transaction for the scoped form.
  void begin();
  void commit();
  void rollback();

  // Commits on commit(); rolls back if destroyed without it (an exception on the way).
  class Transaction {
   public:
    explicit Transaction(Store& store) : store_(&store) { store.begin(); }
    ~Transaction();
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    void commit();

   private:
    Store* store_;  // null once committed or rolled back
  };

 private:
  class Query;
  Store(std::string path, sqlite3* db);
  Query query(const char* sql) const;    // prepared once per Store, cached; reset after each use
  Query prepare(const char* sql) const;  // prepared for one use
  void exec(const char* sql) const;
  int64_t scalar(const char* sql) const;  // the first column of the first row
  [[noreturn]] void fail_sqlite(const char* what) const;
  void check_identity();
  void create_schema();

  std::string path_;
  sqlite3* db_ = nullptr;
  struct Cache;
  std::unique_ptr<Cache> cache_;  // prepared statements by their SQL
};

}  // namespace jinx::rag
