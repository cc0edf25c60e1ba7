#include "rag/knowledge_base.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "core/log.h"
#include "tokenizer/utf8.h"

namespace jinx::rag {

namespace fs = std::filesystem;

namespace {

// FNV-1a over the bytes, with the length: tells a changed file from an unchanged one.
std::string content_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "fnv1a64:%016llx:%zu", static_cast<unsigned long long>(h),
                s.size());
  return buf;
}

// Reads a file that should be UTF-8 text; an empty string with *why set when it is not.
std::string read_text(const fs::path& p, int64_t max_bytes, std::string* why) {
  std::error_code ec;
  const auto size = fs::file_size(p, ec);
  if (ec) {
    *why = "cannot read its size";
    return {};
  }
  if (size > static_cast<uintmax_t>(max_bytes)) {
    *why = str(size, " bytes, more than the limit of ", max_bytes);
    return {};
  }
  std::ifstream in(p, std::ios::binary);
  std::string s(size, '\0');
  if (!in.read(s.data(), static_cast<std::streamsize>(size))) {
    *why = "cannot be read";
    return {};
  }
  if (s.find('\0') != std::string::npos || !utf8::is_valid(s)) {
    *why = "not UTF-8 text";
    return {};
  }
  return s;
}

std::string index_path(const std::string& db) { return db + ".hnsw"; }

// How many changes the chunks have seen (0 when unset or unreadable: the index is rebuilt).
int64_t generation(const Store& store) {
  const std::string v = store.meta("generation").value_or("0");
  int64_t g = 0;
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), g);
  return ec == std::errc() && end == v.data() + v.size() ? g : 0;
}

}  // namespace

SearchMode search_mode_from_name(const std::string& name) {
  if (name == "hybrid") return SearchMode::kHybrid;
  if (name == "vector") return SearchMode::kVector;
  if (name == "keyword") return SearchMode::kKeyword;
  fail("unknown search mode \"", name, "\" (hybrid, vector or keyword)");
}

KnowledgeBase::KnowledgeBase(const std::string& db_path, Embedder embedder,
                             const RagOptions& options)
    : db_path_(db_path), emb_(std::move(embedder)), opt_(options) {
  JINX_CHECK(emb_.tok != nullptr && emb_.embed && emb_.dim > 0, "incomplete embedder");
  if (opt_.candidates < 1) fail("candidates must be >= 1");
  store_ = Store::open(db_path);
  const auto model = store_->meta("embed_model");
  if (model && *model != emb_.model_id && store_->n_chunks() > 0)
    fail(db_path, ": built with the embedding model \"", *model, "\", not \"", emb_.model_id,
         "\" (vectors of two models cannot be compared: use that model or a new file)");
  // Every change to the chunks bumps "generation" in its own transaction, so an index saved at
  // another generation (say, a crash between a commit and the index's save) is stale.
  if (store_->meta("index_generation") == std::to_string(generation(*store_)) &&
      fs::exists(index_path(db_path_))) {
    try {
      index_ = VectorIndex::load(index_path(db_path_), emb_.dim);
      if (index_->size() == store_->n_chunks()) return;
    } catch (const Error& e) {
      log_warn("rag: rebuilding the vector index: ", e.what());
    }
  }
  rebuild_index();
}

KnowledgeBase::~KnowledgeBase() = default;

void KnowledgeBase::rebuild_index() {
  index_ = std::make_unique<VectorIndex>(emb_.dim, std::max<int64_t>(16, store_->n_chunks()));
  store_->for_each_embedding(emb_.dim, [&](int64_t id, std::span<const float> v) {
    index_->add(id, v);
  });
  stale_ = false;
  save_index();
}

void KnowledgeBase::save_index() {
  index_->save(index_path(db_path_));
  store_->set_meta("index_generation", std::to_string(generation(*store_)));
}

// New documents' chunks join the graph as they are; a replaced document's old chunks would stay
// in it (HNSW here has no deletion), so then the whole index is rebuilt once, at the end.
void KnowledgeBase::update_index() {
  if (stale_) {
    rebuild_index();
  } else {
    save_index();
  }
}

IndexReport KnowledgeBase::add_path(const std::string& path,
                                    const std::function<void(const std::string&)>& progress) {
  std::vector<fs::path> files;
  if (fs::is_directory(path)) {
    for (auto it = fs::recursive_directory_iterator(path); it != fs::recursive_directory_iterator();
         ++it) {
      if (it->path().filename().string().starts_with(".")) {
        if (it->is_directory()) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file()) files.push_back(it->path());
    }
    std::sort(files.begin(), files.end());
  } else if (fs::is_regular_file(path)) {
    files.push_back(path);
  } else {
    fail(path, ": no such file or directory");
  }
  IndexReport report;
  std::vector<Pending> pending;
  int64_t pending_tokens = 0;
  for (const fs::path& f : files) {
    Pending doc;
    if (prepare_file(f.string(), &doc, &report)) {
      for (const auto& ids : doc.ids) pending_tokens += static_cast<int64_t>(ids.size());
      pending.push_back(std::move(doc));
      // Small files are embedded together: one forward pass packs many chunks.
      if (pending_tokens >= opt_.embed_batch_tokens) {
        store_pending(pending, &report);
        pending_tokens = 0;
      }
    }
    if (progress) progress(f.string());
  }
  store_pending(pending, &report);
  if (report.files_added > 0) update_index();
  return report;
}

bool KnowledgeBase::prepare_file(const std::string& path, Pending* doc,
                                 IndexReport* report) const {
  std::string why;
  std::string text = read_text(path, opt_.max_file_bytes, &why);
  if (why.empty() && text.find_first_not_of(" \t\r\n\f\v") == std::string::npos)
    why = "no text";
  if (!why.empty()) {
    log_warn("rag: skipped ", path, ": ", why);
    ++report->files_skipped;
    return false;
  }
  return prepare_text(path, std::move(text), doc, report);
}

bool KnowledgeBase::prepare_text(std::string source, std::string text, Pending* doc,
                                 IndexReport* report) const {
  doc->hash = content_hash(text);
  if (store_->document_hash(source) == doc->hash) {
    ++report->files_unchanged;
    return false;
  }
  auto count = [&](std::string_view s) {
    return static_cast<int64_t>(emb_.tok->encode(s, false, false).size());
  };
  doc->chunks = chunk_text(text, opt_.chunk, count);
  JINX_CHECK(!doc->chunks.empty(), "a text with non-space bytes has a chunk");
  for (const Chunk& c : doc->chunks)
    doc->ids.push_back(emb_.tok->encode(std::string_view(text).substr(c.start, c.end - c.start)));
  doc->source = std::move(source);
  doc->text = std::move(text);
  return true;
}

void KnowledgeBase::store_pending(std::vector<Pending>& docs, IndexReport* report) {
  if (docs.empty()) return;
  std::vector<std::vector<int32_t>> ids;
  for (Pending& d : docs)
    for (auto& c : d.ids) {
      report->tokens += static_cast<int64_t>(c.size());
      ids.push_back(std::move(c));
    }
  std::vector<float> vectors(ids.size() * emb_.dim);
  emb_.embed(ids, vectors.data());
  size_t row = 0;
  for (const Pending& d : docs) {
    Store::Transaction tx(*store_);
    stale_ |= store_->document_hash(d.source).has_value();  // replaced, not new
    const std::optional<int64_t> doc = store_->add_document(d.source, d.hash);
    JINX_CHECK(doc.has_value(), "a changed document is added");
    for (const Chunk& c : d.chunks) {
      const auto v = std::span(vectors).subspan(row++ * emb_.dim, emb_.dim);
      const int64_t id =
          store_->add_chunk(*doc, c.start, c.end, d.text.substr(c.start, c.end - c.start), v);
      if (!stale_) index_->add(id, v);
    }
    store_->set_meta("embed_model", emb_.model_id);
    store_->set_meta("generation", std::to_string(generation(*store_) + 1));
    tx.commit();
    ++report->files_added;
    report->chunks += static_cast<int64_t>(d.chunks.size());
  }
  docs.clear();
}

bool KnowledgeBase::add_text(const std::string& source, const std::string& text,
                             IndexReport* report) {
  if (source.empty()) fail("a document needs a source name");
  if (text.find('\0') != std::string::npos || !utf8::is_valid(text))
    fail("document \"", source, "\" is not UTF-8 text");
  if (text.find_first_not_of(" \t\r\n\f\v") == std::string::npos)
    fail("document \"", source, "\" has no text");
  if (static_cast<int64_t>(text.size()) > opt_.max_file_bytes)
    fail("document \"", source, "\" is larger than ", opt_.max_file_bytes, " bytes");
  IndexReport local;
  if (!report) report = &local;
  std::vector<Pending> docs(1);
  if (!prepare_text(source, text, &docs[0], report)) return false;
  store_pending(docs, report);
  update_index();
  return true;
}

std::vector<float> KnowledgeBase::embed_query(const std::string& query) const {
  const std::vector<std::vector<int32_t>> ids = {emb_.tok->encode(opt_.query_prefix + query)};
  if (ids[0].empty()) fail("the query is empty");
  std::vector<float> v(emb_.dim);
  emb_.embed(ids, v.data());
  return v;
}

std::vector<Passage> KnowledgeBase::search(const std::string& query, int k,
                                           SearchMode mode) const {
  if (k < 1) fail("k must be >= 1");
  if (query.empty() || !utf8::is_valid(query)) fail("the query must be non-empty UTF-8 text");
  const int n = std::max(k, opt_.candidates);
  std::vector<std::pair<int64_t, float>> by_vector;
  std::vector<std::pair<int64_t, double>> by_keyword;
  if (mode != SearchMode::kKeyword && index_->size() > 0)
    by_vector = index_->search(embed_query(query), n);
  if (mode != SearchMode::kVector) by_keyword = store_->keyword_search(query, n);
  const std::vector<Hit> hits = fuse(by_vector, by_keyword, k);
  std::vector<int64_t> ids;
  for (const Hit& h : hits) ids.push_back(h.chunk_id);
  std::vector<StoredChunk> chunks = store_->get_chunks(ids);
  std::vector<Passage> out;
  for (StoredChunk& c : chunks) {
    auto h = std::find_if(hits.begin(), hits.end(), [&](const Hit& x) { return x.chunk_id == c.id; });
    out.push_back({std::move(c), *h});
  }
  return out;
}

std::string embedder_id(const std::string& model_path, Pooling pooling, int64_t dim) {
  fs::path p(model_path);
  std::string name = p.filename().string();
  if (name.empty()) name = p.parent_path().filename().string();  // "dir/"
  return str(name, " (", pooling_name(pooling), " pooling, ", dim, " dims)");
}

std::string rag_prompt(const std::string& question, std::span<const Passage> passages) {
  std::ostringstream p;
  p << "Answer the question using only the numbered passages below, and cite the passages you "
       "use by their number, like [1]. If the passages do not contain the answer, say so.\n\n";
  for (size_t i = 0; i < passages.size(); ++i)
    p << "[" << i + 1 << "] (" << fs::path(passages[i].chunk.source).filename().string() << ")\n"
      << passages[i].chunk.text << "\n\n";
  p << "Question: " << question;
  return p.str();
}

}  // namespace jinx::rag
