#include "rag/chunker.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "core/check.h"

namespace jinx::rag {
namespace {

bool is_ws(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_cont(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

int64_t count_words(std::string_view s) {
  int64_t n = 0;
  for (size_t i = 0; i < s.size(); ++i) n += !is_ws(s[i]) && (i == 0 || is_ws(s[i - 1]));
  return n;
}
int64_t count_chars(std::string_view s) {  // code points
  int64_t n = 0;
  for (char c : s) n += !is_cont(c);
  return n;
}
int64_t count_bytes(std::string_view s) {
  return static_cast<int64_t>(s.size());
}

std::string_view piece(std::string_view t, const Chunk& c) {
  return t.substr(c.start, c.end - c.start);
}

// Every non-whitespace byte lies in a chunk, chunks move forward, are trimmed and non-empty, and
// what lies between two chunks (and before the first, after the last) is whitespace.
void expect_covering(std::string_view t, const std::vector<Chunk>& chunks) {
  int64_t covered = 0;  // every byte before this is in a chunk or whitespace
  for (size_t k = 0; k < chunks.size(); ++k) {
    const Chunk& c = chunks[k];
    ASSERT_LT(c.start, c.end) << k;
    ASSERT_LE(c.end, static_cast<int64_t>(t.size()));
    EXPECT_FALSE(is_ws(t[c.start])) << "chunk " << k << " not trimmed at its start";
    EXPECT_FALSE(is_ws(t[c.end - 1])) << "chunk " << k << " not trimmed at its end";
    if (k > 0) {
      ASSERT_GT(c.start, chunks[k - 1].start) << k;
      ASSERT_GT(c.end, chunks[k - 1].end) << k;
    }
    for (int64_t i = covered; i < c.start; ++i)
      ASSERT_TRUE(is_ws(t[i])) << "byte " << i << " in no chunk";
    covered = std::max(covered, c.end);
  }
  for (int64_t i = covered; i < static_cast<int64_t>(t.size()); ++i)
    ASSERT_TRUE(is_ws(t[i])) << "byte " << i << " in no chunk";
}

// Paragraphs of sentences of words of random lengths (seeded), with commas and line breaks.
std::string random_text(uint32_t seed, int n_paragraphs) {
  std::mt19937 rng(seed);
  auto uni = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::string t;
  for (int p = 0; p < n_paragraphs; ++p) {
    for (int s = uni(1, 6); s > 0; --s) {
      for (int w = uni(1, 14); w > 0; --w) {
        for (int c = uni(1, 9); c > 0; --c) t += static_cast<char>('a' + uni(0, 25));
        t += w > 1 ? (uni(0, 9) == 0 ? ", " : " ") : "";
      }
      t += "!?."[uni(0, 2)];
      t += uni(0, 5) == 0 ? "\n" : " ";
    }
    t += uni(0, 3) == 0 ? "\n \n\n" : "\n\n";
  }
  return t;
}

TEST(Chunker, CoversEveryByteAndStaysWithinMax) {
  const std::string t = random_text(7, 40);
  for (auto count : {count_words, count_chars}) {
    for (int64_t max : {1, 5, 16, 64, 300}) {
      for (int64_t overlap : {int64_t{0}, int64_t{3}, max / 2}) {
        if (overlap >= max) continue;
        SCOPED_TRACE(testing::Message() << "max " << max << " overlap " << overlap);
        const auto chunks = chunk_text(t, {max, overlap}, count);
        ASSERT_FALSE(chunks.empty());
        expect_covering(t, chunks);
        for (const Chunk& c : chunks) EXPECT_LE(count(piece(t, c)), max) << piece(t, c);
      }
    }
  }
}

TEST(Chunker, CutsAtParagraphBreaks) {
  // 6 paragraphs of 3 five-word sentences (15 words): with room for 40 words, each chunk should
  // be two whole paragraphs, although a third paragraph's first sentences would still fit.
  std::string t;
  for (int p = 0; p < 6; ++p) {
    for (int s = 0; s < 3; ++s) t += "word word word word end" + std::to_string(p) + ". ";
    t += "\n\n";
  }
  for (int64_t overlap : {0, 5}) {
    const auto chunks = chunk_text(t, {40, overlap}, count_words);
    expect_covering(t, chunks);
    ASSERT_EQ(chunks.size(), 3u) << overlap;
    for (const Chunk& c : chunks) {
      EXPECT_TRUE(t.substr(c.end).starts_with(" \n\n"))
          << "cut at " << c.end << ": " << piece(t, c);
      EXPECT_LE(count_words(piece(t, c)), 40);
    }
  }
}

TEST(Chunker, CutsAtSentenceEnds) {
  // One long paragraph of sentences of 4 to 9 words: every cut lands after a terminator.
  std::string t;
  const char* ends = ".!?";
  for (int s = 0; s < 60; ++s) {
    for (int w = 0; w < 4 + s % 6; ++w) t += w ? " w" : "W";
    t += ends[s % 3];
    t += ' ';
  }
  const auto chunks = chunk_text(t, {20, 0}, count_words);
  expect_covering(t, chunks);
  ASSERT_GT(chunks.size(), 5u);
  for (const Chunk& c : chunks) {
    EXPECT_NE(std::string_view(ends).find(t[c.end - 1]), std::string_view::npos) << piece(t, c);
    if (&c != &chunks.back()) {
      EXPECT_GE(count_words(piece(t, c)), 10) << "less than half full: " << piece(t, c);
    }
    EXPECT_LE(count_words(piece(t, c)), 20);
  }
}

TEST(Chunker, CutsAtWhitespaceWithoutSentences) {
  std::string t;
  for (int w = 0; w < 500; ++w) t += "word" + std::to_string(w % 10) + " ";
  const auto chunks = chunk_text(t, {30, 4}, count_chars);
  expect_covering(t, chunks);
  for (const Chunk& c : chunks) {
    EXPECT_LE(count_chars(piece(t, c)), 30);
    EXPECT_TRUE(c.end == static_cast<int64_t>(t.size()) - 1 || t[c.end] == ' ') << piece(t, c);
    EXPECT_TRUE(c.start == 0 || t[c.start - 1] == ' ') << piece(t, c);
  }
}

TEST(Chunker, OverlapIsPresentAndBounded) {
  std::string t;
  for (int s = 0; s < 80; ++s) t += "one two three four five six. ";
  const int64_t overlap = 8;
  const auto chunks = chunk_text(t, {30, overlap}, count_words);
  expect_covering(t, chunks);
  ASSERT_GT(chunks.size(), 10u);
  for (size_t k = 1; k < chunks.size(); ++k) {
    const Chunk &prev = chunks[k - 1], &next = chunks[k];
    ASSERT_LT(next.start, prev.end) << "no overlap before chunk " << k;
    EXPECT_TRUE(is_ws(t[next.start - 1])) << "overlap starts inside a word";
    const int64_t shared = count_words(t.substr(next.start, prev.end - next.start));
    EXPECT_LE(shared, overlap);
    EXPECT_GE(shared, overlap - 1) << "one whole sentence, then words, should fill it";
    EXPECT_LE(count_words(piece(t, next)), 30);
  }
}

TEST(Chunker, NeverSplitsUtf8SequencesOrClusters) {
  // é precomposed and e + combining acute, CJK, emoji, a ZWJ family and a flag-less skin tone.
  const std::string word =
      "caf\u00E9e\u0301\u4E2D\u6587\u5B57\U0001F600\U0001F468\u200D\U0001F469"
      "\u200D\U0001F467\U0001F44D\U0001F3FD\u2764\uFE0F";
  const std::string t = word + " " + word + word + "\n\n" + word;
  for (int64_t max : {1, 2, 3, 5, 8}) {
    for (int64_t overlap : {int64_t{0}, max - 1}) {
      SCOPED_TRACE(testing::Message() << "max " << max << " overlap " << overlap);
      const auto chunks = chunk_text(t, {max, overlap}, count_bytes);
      expect_covering(t, chunks);
      for (const Chunk& c : chunks) {
        for (int64_t pos : {c.start, c.end}) {
          if (pos == static_cast<int64_t>(t.size())) continue;
          const std::string_view at = std::string_view(t).substr(pos);
          EXPECT_FALSE(is_cont(t[pos])) << "cut inside a UTF-8 sequence at " << pos;
          EXPECT_FALSE(at.starts_with("\u0301") || at.starts_with("\u200D") ||
                       at.starts_with("\uFE0F") || at.starts_with("\U0001F3FD"))
              << "cut before a combining character at " << pos;
          EXPECT_FALSE(std::string_view(t).substr(0, pos).ends_with("\u200D")) << pos;
        }
        // Over max only where the chunk is one indivisible cluster (the family: 5 code points).
        if (count_bytes(piece(t, c)) > max) {
          EXPECT_LE(count_chars(piece(t, c)), 5) << piece(t, c);
        }
      }
    }
  }
}

TEST(Chunker, CutsUnspacedCjkAfterTerminators) {
  const std::string t =
      "\u8FD9\u662F\u7B2C\u4E00\u53E5\u3002\u8FD9\u662F\u7B2C\u4E8C\u53E5\uFF01"
      "\u8FD9\u662F\u7B2C\u4E09\u53E5\uFF1F";  // 3 sentences of 6 characters
  const auto chunks = chunk_text(t, {8, 0}, count_chars);
  expect_covering(t, chunks);
  ASSERT_EQ(chunks.size(), 3u);
  EXPECT_EQ(piece(t, chunks[0]), "\u8FD9\u662F\u7B2C\u4E00\u53E5\u3002");
  EXPECT_EQ(piece(t, chunks[1]), "\u8FD9\u662F\u7B2C\u4E8C\u53E5\uFF01");
}

TEST(Chunker, SplitsOneHugeWord) {
  std::string t(10000, 'a');
  for (size_t i = 0; i < t.size(); i += 7) t[i] = static_cast<char>('b' + i % 20);
  int64_t calls = 0;
  auto counted = [&](std::string_view s) {
    ++calls;
    return count_chars(s);
  };
  const auto chunks = chunk_text(t, {100, 10}, counted);
  expect_covering(t, chunks);
  ASSERT_GE(chunks.size(), 100u);
  for (const Chunk& c : chunks) EXPECT_LE(c.end - c.start, 100);
  EXPECT_EQ(chunks.front().end - chunks.front().start, 100) << "fragments should be as long as fit";
  EXPECT_LT(calls, 40 * static_cast<int64_t>(chunks.size())) << "a search, not a scan";

  const auto whole = chunk_text(t, {100, 10}, count_words);  // one token by words: one chunk
  ASSERT_EQ(whole.size(), 1u);
  EXPECT_EQ(whole[0].end - whole[0].start, 10000);
}

TEST(Chunker, CountCallsStayNearLinear) {
  const std::string t = random_text(11, 400);
  int64_t calls = 0;
  auto counted = [&](std::string_view s) {
    ++calls;
    return count_words(s);
  };
  const auto chunks = chunk_text(t, {64, 16}, counted);
  expect_covering(t, chunks);
  EXPECT_LT(calls, count_words(t)) << "about one call per sentence, plus overlap words";
}

TEST(Chunker, EmptyAndTrimmed) {
  EXPECT_TRUE(chunk_text("", {}, count_words).empty());
  EXPECT_TRUE(chunk_text(" \n\t \r\n\n  ", {}, count_words).empty());
  const std::string t = "  \n hello world \n\n ";
  const auto chunks = chunk_text(t, {}, count_words);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(piece(t, chunks[0]), "hello world");
}

TEST(Chunker, RejectsBadOptions) {
  EXPECT_THROW(chunk_text("a b", {0, 0}, count_words), Error);
  EXPECT_THROW(chunk_text("a b", {-5, 0}, count_words), Error);
  EXPECT_THROW(chunk_text("a b", {10, -1}, count_words), Error);
  EXPECT_THROW(chunk_text("a b", {10, 10}, count_words), Error);
  EXPECT_THROW(chunk_text("a b", {10, 11}, count_words), Error);
  EXPECT_NO_THROW(chunk_text("a b", {1, 0}, count_words));
}

}  // namespace
}  // namespace jinx::rag
