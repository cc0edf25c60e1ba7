// IncrementalDetokenizer (streamed deltas == full decode, every delta valid UTF-8) and
// StopStringMatcher (stop strings never emitted, even in part, across token boundaries).
#include <gtest/gtest.h>

#include <random>

#include "tok_test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace jinx {
namespace {

class Detok : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string why;
    tok_ = test::load_named(GetParam(), &why);
    if (!tok_) GTEST_SKIP() << "tokenizer " << GetParam() << " unavailable: " << why;
  }
  // Streams ids; checks each delta and the total against decode().
  void check_stream(const std::vector<int32_t>& ids, bool skip) {
    IncrementalDetokenizer d(*tok_, skip);
    std::string all;
    for (int32_t id : ids) {
      const std::string delta = d.push(id);
      ASSERT_TRUE(utf8::is_valid(delta)) << "invalid UTF-8 delta";
      all += delta;
    }
    const std::string tail = d.flush();
    ASSERT_TRUE(utf8::is_valid(tail));
    all += tail;
    ASSERT_EQ(all, tok_->decode(ids, skip));
  }
  std::unique_ptr<Tokenizer> tok_;
};

TEST_P(Detok, StreamEqualsDecodeOnCorpus) {
  for (const std::string& text : test::corpus()) {
    const auto ids = tok_->encode(text);
    check_stream(ids, false);
    check_stream(ids, true);
  }
}

TEST_P(Detok, StreamEqualsDecodeOnRandomIds) {
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> any(-2, tok_->vocab_size() + 2);
  std::uniform_int_distribution<int32_t> low(0, 400);  // single bytes and byte tokens
  for (int n = 0; n < 2000; ++n) {
    std::vector<int32_t> ids(1 + rng() % 16);
    for (auto& id : ids) id = rng() % 2 ? low(rng) : any(rng);
    check_stream(ids, false);
    check_stream(ids, true);
  }
}

TEST_P(Detok, SplitCharacterIsHeldBack) {
  // "😀" is 4 bytes; a byte-level or byte-fallback tokenizer may spend several ids on it.
  const auto ids = tok_->encode("x😀", false);
  IncrementalDetokenizer d(*tok_, false);
  std::string all;
  for (int32_t id : ids) {
    const std::string delta = d.push(id);
    EXPECT_EQ(delta.find("\xEF\xBF\xBD"), std::string::npos);
    all += delta;
  }
  all += d.flush();
  EXPECT_EQ(all, "x😀");
}

INSTANTIATE_TEST_SUITE_P(All, Detok, ::testing::Values("qwen2", "llama3", "smollm2", "llama_spm"));

// ------------------------------------------------------------------------ stop strings

std::string run_stops(const std::vector<std::string>& stops, const std::vector<std::string>& chunks,
                      bool* stopped) {
  StopStringMatcher m(stops);
  std::string out;
  *stopped = false;
  for (const auto& c : chunks) {
    auto r = m.push(c);
    out += r.text;
    if (r.stopped) {
      *stopped = true;
      return out;
    }
  }
  out += m.flush();
  return out;
}

TEST(StopStrings, Basics) {
  bool stopped = false;
  EXPECT_EQ(run_stops({"STOP"}, {"hello ST", "O", "P world"}, &stopped), "hello ");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(run_stops({"STOP"}, {"hello ST", "OX"}, &stopped), "hello STOX");
  EXPECT_FALSE(stopped);
  EXPECT_EQ(run_stops({"\n\n", "User:"}, {"a\n", "b\nUse", "r: hi"}, &stopped), "a\nb\n");
  EXPECT_TRUE(stopped);
  EXPECT_EQ(run_stops({"abc", "b"}, {"xab", "c"}, &stopped), "xa");  // earliest stop wins
  EXPECT_EQ(run_stops({}, {"a", "b"}, &stopped), "ab");
  EXPECT_EQ(run_stops({""}, {"a", "b"}, &stopped), "ab");
}

TEST(StopStrings, HoldsBackOnlyPossiblePrefixes) {
  StopStringMatcher m({"<|end|>"});
  auto r = m.push("text <|e");
  EXPECT_EQ(r.text, "text ");
  r = m.push("x");
  EXPECT_EQ(r.text, "<|ex");
  EXPECT_FALSE(r.stopped);
  r = m.push("<|end|>tail");
  EXPECT_TRUE(r.stopped);
  EXPECT_EQ(r.text, "");
  EXPECT_TRUE(m.push("more").stopped);
  EXPECT_EQ(m.flush(), "");
}

TEST(StopStrings, RandomChunkingNeverLeaksAStop) {
  std::mt19937 rng(99);
  const std::vector<std::string> stops = {"END", "\n\nQ:", "é!", "😀😀", "aaab"};
  const std::string alphabet[] = {"E", "N", "D", "\n", "Q", ":", "é", "!", "😀", "a", "b", " "};
  for (int iter = 0; iter < 5000; ++iter) {
    std::string text;
    const int n = 1 + rng() % 30;
    for (int i = 0; i < n; ++i) text += alphabet[rng() % 12];
    size_t first = std::string::npos;
    for (const auto& s : stops) first = std::min(first, text.find(s));
    const std::string want = text.substr(0, first);
    std::vector<std::string> chunks;
    for (size_t p = 0; p < text.size();) {
      const size_t len = std::min<size_t>(1 + rng() % 6, text.size() - p);
      chunks.push_back(text.substr(p, len));
      p += len;
    }
    StopStringMatcher m(stops);
    std::string out;
    bool stopped = false;
    for (const auto& c : chunks) {
      auto r = m.push(c);
      out += r.text;
      // Whatever has been emitted so far is a prefix of the answer: no part of a stop leaks.
      ASSERT_EQ(want.compare(0, out.size(), out), 0) << text;
      ASSERT_LE(out.size(), want.size());
      if (r.stopped) {
        stopped = true;
        break;
      }
    }
    if (!stopped) out += m.flush();
    ASSERT_EQ(out, want) << text;
    ASSERT_EQ(stopped, first != std::string::npos);
  }
}

TEST(StopStrings, WithDetokenizedTokens) {
  std::string why;
  auto tok = test::load_named("smollm2", &why);
  ASSERT_TRUE(tok) << why;
  const std::string text = "The answer is 42.\n\nQuestion: what next? 😀 more";
  const auto ids = tok->encode(text, false);
  IncrementalDetokenizer d(*tok, true);
  StopStringMatcher m({"\n\nQuestion:", "😀"});
  std::string out;
  bool stopped = false;
  for (int32_t id : ids) {
    auto r = m.push(d.push(id));
    out += r.text;
    if ((stopped = r.stopped)) break;
  }
  EXPECT_TRUE(stopped);
  EXPECT_EQ(out, "The answer is 42.");
}

}  // namespace
}  // namespace jinx
