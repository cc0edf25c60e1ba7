#include "rag/chunker.h"

#include <algorithm>
#include <array>
#include <tuple>
#include <utility>

#include "core/check.h"

namespace jinx::rag {
namespace {

// How strongly a boundary separates the text on its two sides.
enum Strength : int8_t { kInside = 0, kWord = 1, kSentence = 2, kParagraph = 3 };

// A piece of the document: [begin, end) starts with the whitespace before its content (so that
// a sum of piece counts covers a chunk's inner whitespace) and ends where its content ends.
struct Piece {
  int64_t begin = 0, end = 0;  // bytes
  Strength after = kWord;      // the boundary after the piece
};

// What chunks are packed from: a sentence, or a word of a sentence that is too long, or a
// fragment of a word that is too long.
struct Unit {
  int64_t begin = 0, end = 0;            // bytes, as Piece
  int64_t tokens = 0;                    // count_tokens of [begin, end)
  Strength after = kWord;                // the boundary after the unit
  int64_t word_first = 0, word_end = 0;  // words [word_first, word_end) the unit spans
};

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool is_continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// UTF-8 spellings; the CJK terminators end a sentence even with no space after them.
constexpr std::array<std::string_view, 3> kCjkTerminators = {"\u3002", "\uFF01", "\uFF1F"};
constexpr std::array<std::string_view, 10> kClosers = {
    "\"", "'", ")", "]", "\u201D", "\u2019", "\u300D", "\u300F", "\uFF09", "\u3011"};

template <size_t N>
int64_t match_at(std::string_view t, int64_t pos, const std::array<std::string_view, N>& list) {
  for (std::string_view s : list)
    if (t.substr(pos).starts_with(s)) return static_cast<int64_t>(s.size());
  return 0;
}

template <size_t N>
int64_t match_before(std::string_view t, int64_t end, const std::array<std::string_view, N>& list) {
  for (std::string_view s : list)
    if (t.substr(0, end).ends_with(s)) return static_cast<int64_t>(s.size());
  return 0;
}

// Whether the content that ends at `end` ends a sentence: a terminator, then closing quotes or
// brackets. Abbreviations ("e.g.") count too; that only moves a preferred cut.
bool ends_sentence(std::string_view t, int64_t end) {
  for (int64_t n; (n = match_before(t, end, kClosers)) > 0;) end -= n;
  if (end > 0 && (t[end - 1] == '.' || t[end - 1] == '!' || t[end - 1] == '?')) return true;
  return match_before(t, end, kCjkTerminators) > 0;
}

// Where a CJK terminator at `pos` and the closers after it end, or -1 if none is at pos.
int64_t cjk_sentence_end(std::string_view t, int64_t pos) {
  int64_t n = match_at(t, pos, kCjkTerminators);
  if (n == 0) return -1;
  pos += n;
  while ((n = match_at(t, pos, kClosers)) > 0) pos += n;
  return pos;
}

// Splits the document into words, each with the boundary after it. Whitespace before the first
// word belongs to it; whitespace after the last belongs to none.
std::vector<Piece> split_words(std::string_view t) {
  std::vector<Piece> words;
  const int64_t n = static_cast<int64_t>(t.size());
  int64_t begin = 0, i = 0;
  bool content = false;  // whether [begin, i) holds anything but whitespace
  while (i < n) {
    if (is_space(t[i])) {
      const int64_t ws = i;
      int newlines = 0;
      for (; i < n && is_space(t[i]); ++i) newlines += t[i] == '\n';
      if (!content) continue;
      Strength s = newlines >= 2                           ? kParagraph
                   : newlines == 1 || ends_sentence(t, ws) ? kSentence
                                                           : kWord;
      words.push_back({begin, ws, s});
      begin = ws;
      content = false;
      continue;
    }
    content = true;
    const int64_t end = cjk_sentence_end(t, i);
    if (end > 0 && end < n && !is_space(t[end])) {  // 。 inside unspaced text: cut after it
      words.push_back({begin, end, kSentence});
      begin = i = end;
      continue;
    }
    i = end > 0 ? end : i + 1;
  }
  if (content) words.push_back({begin, n, kParagraph});
  if (!words.empty()) words.back().after = kParagraph;  // the document's end
  return words;
}

// The code point that starts at byte `pos`, or -1 where no well-formed sequence starts.
int32_t code_point_at(std::string_view t, int64_t pos) {
  const auto byte = [&](int64_t i) {
    return i < static_cast<int64_t>(t.size()) ? static_cast<unsigned char>(t[i]) : 0u;
  };
  const unsigned c = byte(pos);
  const int n = c < 0x80 ? 1 : c >= 0xF0 && c < 0xF8 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 0;
  if (n == 0 || (n == 3 && c >= 0xF0)) return -1;
  uint32_t cp = n == 1 ? c : c & (0x7F >> n);
  for (int i = 1; i < n; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) return -1;
    cp = (cp << 6) | (byte(pos + i) & 0x3F);
  }
  return static_cast<int32_t>(cp);
}

// Whether a word may be cut before byte `pos` (0 < pos < size): at a code point boundary, and
// not where it would part a character from its combining mark, ZWJ, variation selector or skin
// tone (a last-resort cut should still leave each character readable).
bool cut_allowed(std::string_view t, int64_t pos) {
  if (is_continuation(t[pos])) return false;
  if (t.substr(0, pos).ends_with("\u200D")) return false;
  const int32_t cp = code_point_at(t, pos);
  return !((cp >= 0x300 && cp <= 0x36F) || cp == 0x200D || (cp >= 0xFE00 && cp <= 0xFE0F) ||
           (cp >= 0x1F3FB && cp <= 0x1F3FF));
}

class Chunker {
 public:
  Chunker(std::string_view text, const ChunkOptions& opt,
          const std::function<int64_t(std::string_view)>& count)
      : t_(text), opt_(opt), count_(count), words_(split_words(text)) {}

  std::vector<Chunk> run();

 private:
  int64_t count(int64_t begin, int64_t end) const {
    const int64_t n = count_(t_.substr(begin, end - begin));
    JINX_CHECK(n >= 0, "count_tokens returned ", n);
    return n;
  }
  void build_units();
  void add_word_units(int64_t w);
  void add_fragments(int64_t w);
  int64_t choose_cut(int64_t first, int64_t last, int64_t head) const;
  std::pair<int64_t, int64_t> overlap_head(int64_t chunk_begin, int64_t cut, int64_t budget) const;

  std::string_view t_;
  ChunkOptions opt_;
  const std::function<int64_t(std::string_view)>& count_;
  std::vector<Piece> words_;
  std::vector<Unit> units_;
};

// Sentences that fit are units; longer sentences fall apart into words, longer words into
// fragments. Each sentence is counted once, so the calls stay linear in the document.
void Chunker::build_units() {
  for (int64_t first = 0; first < static_cast<int64_t>(words_.size());) {
    int64_t end = first;
    while (words_[end].after < kSentence) ++end;
    ++end;  // words [first, end) form a sentence; the last word always ends one
    const int64_t b = words_[first].begin, e = words_[end - 1].end;
    const int64_t n = end - first > 1 ? count(b, e) : -1;
    if (n >= 0 && n <= opt_.max_tokens) {
      units_.push_back({b, e, n, words_[end - 1].after, first, end});
    } else {
      for (int64_t w = first; w < end; ++w) add_word_units(w);
    }
    first = end;
  }
}

void Chunker::add_word_units(int64_t w) {
  const Piece& p = words_[w];
  const int64_t n = count(p.begin, p.end);
  if (n <= opt_.max_tokens) {
    units_.push_back({p.begin, p.end, n, p.after, w, w + 1});
  } else {
    add_fragments(w);
  }
}

// Cuts a word longer than max_tokens into the longest prefixes that fit, each found by an
// exponential then binary search over the allowed cut positions: O(log length) count calls per
// fragment, each on at most twice the fragment. Assumes counts grow with the prefix, as a
// tokenizer's do; a fragment is only ever taken at a length that was counted to fit.
void Chunker::add_fragments(int64_t w) {
  const Piece& p = words_[w];
  int64_t content = p.begin;
  while (is_space(t_[content])) ++content;
  std::vector<int64_t> cuts;  // allowed fragment ends, ascending, the last is p.end
  for (int64_t pos = content + 1; pos < p.end; ++pos)
    if (cut_allowed(t_, pos)) cuts.push_back(pos);
  cuts.push_back(p.end);

  int64_t begin = p.begin;
  for (int64_t k = 0; k < static_cast<int64_t>(cuts.size());) {
    const int64_t m = static_cast<int64_t>(cuts.size());
    int64_t good = k, good_tokens = count(begin, cuts[k]);  // a lone cluster is always taken
    if (good_tokens <= opt_.max_tokens) {
      int64_t step = 1, bad = m;
      for (; good + step < m; step *= 2) {
        const int64_t n = count(begin, cuts[good + step]);
        if (n > opt_.max_tokens) {
          bad = good + step;
          break;
        }
        good += step;
        good_tokens = n;
      }
      while (bad - good > 1) {
        const int64_t mid = good + (bad - good) / 2;
        const int64_t n = count(begin, cuts[mid]);
        if (n <= opt_.max_tokens) {
          good = mid;
          good_tokens = n;
        } else {
          bad = mid;
        }
      }
    }
    const Strength after = good == m - 1 ? p.after : kInside;
    units_.push_back({begin, cuts[good], good_tokens, after, w, w + 1});
    begin = cuts[good];
    k = good + 1;
  }
}

// The end (exclusive unit index) of a chunk that holds `head` overlap tokens and then units
// [first, last), all of which fit: the strongest boundary that fills at least half of
// max_tokens, the latest of equals; with none that full, as much as fits.
int64_t Chunker::choose_cut(int64_t first, int64_t last, int64_t head) const {
  int64_t best = last, best_strength = -1, fill = head;
  for (int64_t c = first + 1; c <= last; ++c) {
    fill += units_[c - 1].tokens;
    if (2 * fill >= opt_.max_tokens && units_[c - 1].after >= best_strength) {
      best = c;
      best_strength = units_[c - 1].after;
    }
  }
  return best;
}

// Where the chunk after a cut before unit `cut` starts, and the tokens it holds before that
// unit: whole units back from the cut while they fit in `budget`, then words of the next unit
// back, never reaching the current chunk's start (which would repeat the whole chunk).
std::pair<int64_t, int64_t> Chunker::overlap_head(int64_t chunk_begin, int64_t cut,
                                                  int64_t budget) const {
  int64_t begin = units_[cut].begin, tokens = 0;
  for (int64_t u = cut - 1; u >= 0 && units_[u].begin > chunk_begin; --u) {
    const Unit& unit = units_[u];
    if (tokens + unit.tokens <= budget) {
      begin = unit.begin;
      tokens += unit.tokens;
      continue;
    }
    for (int64_t w = unit.word_end - 1; w > unit.word_first; --w) {  // word_first: whole unit
      const int64_t n = count(words_[w].begin, words_[w].end);
      if (tokens + n > budget) break;
      begin = words_[w].begin;
      tokens += n;
    }
    break;
  }
  return {begin, tokens};
}

std::vector<Chunk> Chunker::run() {
  build_units();
  std::vector<Chunk> chunks;
  const int64_t n = static_cast<int64_t>(units_.size());
  int64_t begin = n > 0 ? units_[0].begin : 0;  // byte where the current chunk starts
  int64_t head = 0;                             // overlap tokens before unit `first`
  for (int64_t first = 0; first < n;) {
    int64_t last = first, fill = head;
    while (last < n && fill + units_[last].tokens <= opt_.max_tokens) fill += units_[last++].tokens;
    if (last == first) last = first + 1;  // one indivisible cluster over max_tokens
    const int64_t cut = last == n ? n : choose_cut(first, last, head);

    int64_t start = begin;
    while (is_space(t_[start])) ++start;
    chunks.push_back({start, units_[cut - 1].end});
    if (cut == n) break;

    // The next chunk must hold unit `cut` after its overlap, or it would not move forward.
    const int64_t budget = std::min(opt_.overlap_tokens, opt_.max_tokens - units_[cut].tokens);
    std::tie(begin, head) = overlap_head(begin, cut, budget);
    first = cut;
  }
  return chunks;
}

}  // namespace

std::vector<Chunk> chunk_text(std::string_view text, const ChunkOptions& opt,
                              const std::function<int64_t(std::string_view)>& count_tokens) {
  if (opt.max_tokens < 1) fail("chunk max_tokens must be at least 1, got ", opt.max_tokens);
  if (opt.overlap_tokens < 0 || opt.overlap_tokens >= opt.max_tokens)
    fail("chunk overlap_tokens must be in [0, max_tokens = ", opt.max_tokens, "), got ",
         opt.overlap_tokens);
  JINX_CHECK(count_tokens, "chunk_text needs a token counter");
  return Chunker(text, opt, count_tokens).run();
}

}  // namespace jinx::rag
