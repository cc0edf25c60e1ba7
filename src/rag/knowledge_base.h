// The RAG pipeline over a knowledge base file: documents are read, cut into chunks, embedded
// and stored (Store: SQLite with an FTS5 keyword index), and an HNSW vector index over the
// chunk embeddings is kept beside the database; a question is answered from the chunks that
// both retrievers rank high (reciprocal rank fusion), put into the prompt with their sources.
//
//   KnowledgeBase kb("kb.sqlite", embedder, {});
//   kb.add_path("docs/");                        // new and changed files only
//   auto passages = kb.search("why do tides happen?", 4);
//   std::string prompt = rag_prompt("why do tides happen?", passages);
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "model/config.h"
#include "rag/chunker.h"
#include "rag/retriever.h"
#include "rag/store.h"
#include "rag/vector_index.h"
#include "tokenizer/tokenizer.h"

namespace jinx::rag {

// What turns text into vectors: a model's tokenizer and its embedding function.
struct Embedder {
  // Names the model and pooling; recorded in the knowledge base at its first document, and a
  // knowledge base is only opened with the same embedder afterwards (vectors of two models
  // cannot be compared).
  std::string model_id;
  int64_t dim = 0;
  const Tokenizer* tok = nullptr;
  // Unit-length embeddings of token sequences: out [seqs.size(), dim].
  std::function<void(std::span<const std::vector<int32_t>>, float*)> embed;
};

enum class SearchMode { kHybrid, kVector, kKeyword };
// "hybrid", "vector", "keyword"; jinx::Error otherwise.
SearchMode search_mode_from_name(const std::string& name);

struct RagOptions {
  ChunkOptions chunk;
  // Prepended to queries (not documents) before they are embedded: instruction-tuned embedding
  // models want one (Qwen3-Embedding: "Instruct: <task>\nQuery:").
  std::string query_prefix;
  int candidates = 20;             // taken from each retriever before fusion
  int64_t embed_batch_tokens = 2048;  // files are embedded together up to this many tokens
  int64_t max_file_bytes = 64 << 20;  // larger files are skipped with a warning
};

struct Passage {
  StoredChunk chunk;
  Hit hit;  // its ranks and scores
};

struct IndexReport {
  int64_t files_added = 0;      // new or changed, now indexed
  int64_t files_unchanged = 0;  // already indexed with the same content
  int64_t files_skipped = 0;    // not UTF-8 text, empty, too large or unreadable (warned)
  int64_t chunks = 0;
  int64_t tokens = 0;           // embedded
};

class KnowledgeBase {
 public:
  // Opens or creates the database at db_path; the vector index lives in db_path + ".hnsw"
  // (rebuilt from the stored embeddings when missing or stale). jinx::Error when the database
  // was built with another embedder.
  KnowledgeBase(const std::string& db_path, Embedder embedder, const RagOptions& options);
  ~KnowledgeBase();

  // Indexes a file, or every regular file under a directory (recursively, in path order,
  // hidden entries skipped). A file already indexed with the same content is left; a changed
  // one replaces its old chunks. Each file is one transaction. `progress` (optional) is called
  // after each file with its path.
  IndexReport add_path(const std::string& path,
                       const std::function<void(const std::string&)>& progress = nullptr);
  // Indexes one text under a source name (as add_path does a file; the vector index is
  // updated): false when that source is already indexed with the same text. jinx::Error for
  // text that is not UTF-8, or has nothing to index.
  bool add_text(const std::string& source, const std::string& text, IndexReport* report);
  // The k best passages for a query, best first.
  std::vector<Passage> search(const std::string& query, int k,
                              SearchMode mode = SearchMode::kHybrid) const;
  int64_t n_documents() const { return store_->n_documents(); }
  int64_t n_chunks() const { return store_->n_chunks(); }

 private:
  // A document read, cut and tokenized, waiting for its embeddings.
  struct Pending {
    std::string source, text, hash;
    std::vector<Chunk> chunks;
    std::vector<std::vector<int32_t>> ids;  // per chunk
  };
  // Reads and prepares a file; false (counted in the report) when it is skipped or unchanged.
  bool prepare_file(const std::string& path, Pending* doc, IndexReport* report) const;
  bool prepare_text(std::string source, std::string text, Pending* doc, IndexReport* report) const;
  // Embeds the documents' chunks together (one embed call: packed forward passes) and stores
  // each document in a transaction of its own.
  void store_pending(std::vector<Pending>& docs, IndexReport* report);
  void rebuild_index();
  void save_index();
  void update_index();  // after documents were stored: save, or rebuild if one was replaced
  std::vector<float> embed_query(const std::string& query) const;

  std::string db_path_;
  Embedder emb_;
  RagOptions opt_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<VectorIndex> index_;
  bool stale_ = false;  // a replaced document's old chunks are still in index_
};

// The model_id of a model's embeddings: its file or folder name, pooling and width (what `jinx
// rag` and `jinx serve --rag-db` record and check).
std::string embedder_id(const std::string& model_path, Pooling pooling, int64_t dim);

// The user message that asks `question` over the passages: numbered, with their sources, and
// the instruction to answer from them only and cite them as [n].
std::string rag_prompt(const std::string& question, std::span<const Passage> passages);

}  // namespace jinx::rag
