// Tokenizer parity with Hugging Face tokenizers/transformers on the committed corpus
// (tests/fixtures/tokenizer, written by tools/make_tokenizer_fixtures.py), plus error handling.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <map>
#include <unistd.h>
#include <fstream>
#include <filesystem>

#include "core/check.h"
#include "tok_test_util.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/utf8.h"

namespace jinx {
namespace {

using nlohmann::json;
using test::corpus;
using test::ids_of;

struct Loaded {
  std::unique_ptr<Tokenizer> tok;
  json expected;
  std::string why;
};

const Loaded& loaded(const std::string& name) {
  static std::map<std::string, Loaded> cache;
  auto it = cache.find(name);
  if (it != cache.end()) return it->second;
  Loaded l;
  l.tok = test::load_named(name, &l.why);
  if (l.tok)
    l.expected = json::parse(
        test::read_file(test::fixture("expected_" + test::expected_name(name) + ".json")));
  return cache.emplace(name, std::move(l)).first->second;
}

std::string show(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 60)) {
    if (c >= 0x20 && c < 0x7F)
      out += static_cast<char>(c);
    else
      out += str("\\x", std::hex, static_cast<int>(c));
  }
  return out;
}

class TokenizerParity : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const Loaded& l = loaded(GetParam());
    if (!l.tok) GTEST_SKIP() << "tokenizer " << GetParam() << " unavailable: " << l.why;
    tok_ = l.tok.get();
    exp_ = &l.expected;
    ASSERT_EQ(exp_->at("cases").size(), corpus().size());
  }
  const Tokenizer* tok_ = nullptr;
  const json* exp_ = nullptr;
};

TEST_P(TokenizerParity, EncodeMatchesReference) {
  int bad = 0;
  for (size_t i = 0; i < corpus().size(); ++i) {
    const json& c = exp_->at("cases")[i];
    const auto ids = tok_->encode(corpus()[i], true, true);
    const auto plain = tok_->encode(corpus()[i], false, false);
    const bool ok = ids == ids_of(c.at("ids")) && plain == ids_of(c.at("plain"));
    if (!ok && ++bad <= 5)
      ADD_FAILURE() << "case " << i << " \"" << show(corpus()[i]) << "\": ids differ";
  }
  EXPECT_EQ(bad, 0) << "of " << corpus().size() << " strings";
}

TEST_P(TokenizerParity, DecodeMatchesReference) {
  int bad = 0;
  auto check = [&](const json& c, const char* ids_key, const char* text_key, bool skip) {
    const auto ids = ids_of(c.at(ids_key));
    const std::string got = tok_->decode(ids, skip);
    if (got != c.at(text_key).get<std::string>() && ++bad <= 5)
      ADD_FAILURE() << text_key << ": got \"" << show(got) << "\" want \""
                    << show(c.at(text_key).get<std::string>()) << "\"";
  };
  for (const json& c : exp_->at("cases")) {
    check(c, "ids", "text", false);
    check(c, "ids", "text_skip", true);
    check(c, "plain", "plain_text", false);
  }
  for (const json& c : exp_->at("decodes")) {
    check(c, "ids", "text", false);
    check(c, "ids", "text_skip", true);
  }
  EXPECT_EQ(bad, 0);
}

TEST_P(TokenizerParity, RoundTripWhereLossless) {
  int n_lossless = 0;
  for (size_t i = 0; i < corpus().size(); ++i) {
    const std::string& text = corpus()[i];
    if (exp_->at("cases")[i].at("plain_text").get<std::string>() != text) continue;
    ++n_lossless;
    EXPECT_EQ(tok_->decode(tok_->encode(text, false, false)), text) << "case " << i;
  }
  // Byte-level BPE is lossless on all valid UTF-8 text (NFC aside).
  EXPECT_GT(n_lossless, static_cast<int>(corpus().size()) / 2);
}

TEST_P(TokenizerParity, SpecialIdsMatchReference) {
  EXPECT_EQ(tok_->vocab_size(), exp_->at("vocab_size").get<int>());
  EXPECT_EQ(tok_->bos_id(), exp_->at("bos_id").get<int>());
  EXPECT_EQ(tok_->eos_id(), exp_->at("eos_id").get<int>());
  for (const json& id : exp_->at("special_ids")) EXPECT_TRUE(tok_->is_special(id.get<int>())) << id;
  for (int32_t id : tok_->eos_ids()) EXPECT_TRUE(tok_->is_special(id)) << id;
  const auto eos = tok_->eos_ids();
  if (tok_->eos_id() >= 0) {
    EXPECT_EQ(eos.front(), tok_->eos_id());
  }
  for (int32_t id = 0; id < tok_->vocab_size(); id += 997) {
    const std::string piece = tok_->token_piece(id);
    if (piece.empty()) continue;
    const auto back = tok_->token_id(piece);
    ASSERT_TRUE(back.has_value()) << id;
    EXPECT_EQ(tok_->token_piece(*back), piece);
  }
}

INSTANTIATE_TEST_SUITE_P(All, TokenizerParity,
                         ::testing::Values("qwen2", "llama3", "smollm2", "smollm2_gguf",
                                           "llama_spm"));

TEST(Tokenizer, KnownTokensAndTemplates) {
  const Loaded& q = loaded("qwen2");
  if (q.tok) {
    EXPECT_EQ(q.tok->vocab_size(), 151643 + 26);
    EXPECT_EQ(q.tok->token_id("<|im_end|>"), 151645);
    EXPECT_EQ(q.tok->eos_token(), "<|im_end|>");
    EXPECT_EQ(q.tok->bos_id(), -1);
    EXPECT_FALSE(q.tok->chat_template().empty());
    const auto eos = q.tok->eos_ids();
    EXPECT_NE(std::find(eos.begin(), eos.end(), 151643), eos.end());  // <|endoftext|>
  }
  const Loaded& l = loaded("llama3");
  if (l.tok) {
    EXPECT_EQ(l.tok->bos_id(), 128000);
    EXPECT_TRUE(l.tok->add_bos());
    const auto eos = l.tok->eos_ids();
    EXPECT_NE(std::find(eos.begin(), eos.end(), 128009), eos.end());  // <|eot_id|>
  }
  const Loaded& s = loaded("smollm2");
  ASSERT_TRUE(s.tok);
  EXPECT_EQ(s.tok->bos_token(), "<|im_start|>");
  EXPECT_EQ(s.tok->eos_token(), "<|im_end|>");
  EXPECT_FALSE(s.tok->add_bos());
  EXPECT_NE(s.tok->chat_template().find("<|im_start|>"), std::string::npos);
  const auto ids = s.tok->encode("<|im_start|>user\nHi<|im_end|>");
  EXPECT_EQ(ids.front(), 1);
  EXPECT_EQ(ids.back(), 2);
  const auto plain = s.tok->encode("<|im_start|>", true, false);  // as plain text
  EXPECT_GT(plain.size(), 1u);
  EXPECT_EQ(std::find(plain.begin(), plain.end(), 1), plain.end());
}

TEST(Tokenizer, LongWordIsNotQuadratic) {
  const Loaded& s = loaded("smollm2");
  ASSERT_TRUE(s.tok);
  std::string word;
  for (int i = 0; i < 200000; ++i) word += static_cast<char>('a' + (i * 7919) % 26);
  const auto ids = s.tok->encode(word, false);
  EXPECT_GT(ids.size(), 10000u);
  EXPECT_EQ(s.tok->decode(ids), word);
}

// ------------------------------------------------------------------ malformed tokenizer.json

const char* kMiniJson = R"({
  "added_tokens": [{"id": 5, "content": "<|end|>", "special": true}],
  "normalizer": null,
  "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "post_processor": null,
  "decoder": {"type": "ByteLevel"},
  "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "Ġab": 4},
            "merges": ["a b", ["Ġ", "ab"]]}
})";

TEST(TokenizerJson, MiniTokenizerWorks) {
  auto t = Tokenizer::from_hf_json(kMiniJson);
  EXPECT_EQ(t->encode("ab ab<|end|>"), (std::vector<int32_t>{2, 4, 5}));
  const std::vector<int32_t> ids = {2, 4, 5};
  EXPECT_EQ(t->decode(ids), "ab ab<|end|>");
  EXPECT_EQ(t->decode(ids, true), "ab ab");
  EXPECT_EQ(t->encode("ab<|end|>", true, false), (std::vector<int32_t>{2}));  // unknown bytes drop
}

// <|end|> ends generation (Phi-3's end of turn) unless the vocabulary is o200k_harmony's
// (gpt-oss), where <|end|> closes one message and <|return|> / <|call|> end the reply.
TEST(TokenizerJson, HarmonyStopTokens) {
  EXPECT_EQ(Tokenizer::from_hf_json(kMiniJson)->eos_ids(), std::vector<int32_t>{5});
  std::string harmony = kMiniJson;
  harmony.replace(harmony.find(R"({"id": 5, "content": "<|end|>", "special": true})"),
                  std::string(R"({"id": 5, "content": "<|end|>", "special": true})").size(),
                  R"({"id": 5, "content": "<|end|>", "special": true},
                     {"id": 6, "content": "<|return|>", "special": true},
                     {"id": 7, "content": "<|call|>", "special": true})");
  EXPECT_EQ(Tokenizer::from_hf_json(harmony)->eos_ids(), (std::vector<int32_t>{6, 7}));
}

// chat_template.jinja (transformers >= 4.44 writes the template there) wins over
// tokenizer_config.json's chat_template, as transformers' from_pretrained decides.
TEST(TokenizerJson, ChatTemplateFileWins) {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / ("jinx-tpl-" + std::to_string(getpid()));
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << kMiniJson;
  std::ofstream(dir / "tokenizer_config.json") << R"({"chat_template": "from config"})";
  EXPECT_EQ(Tokenizer::from_hf_dir(dir.string())->chat_template(), "from config");
  std::ofstream(dir / "chat_template.jinja") << "{{ 'from the file' }}";
  EXPECT_EQ(Tokenizer::from_hf_dir(dir.string())->chat_template(), "{{ 'from the file' }}");
  fs::remove(dir / "tokenizer_config.json");
  EXPECT_EQ(Tokenizer::from_hf_dir(dir.string())->chat_template(), "{{ 'from the file' }}");
  fs::remove_all(dir);
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const size_t p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  if (p != std::string::npos) s.replace(p, from.size(), to);
  return s;
}

TEST(TokenizerJson, BadFilesThrowError) {
  const std::string ok = kMiniJson;
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"malformed JSON", ok.substr(0, ok.size() / 2)},
      {"not an object", "[1, 2, 3]"},
      {"missing merges", replace(ok, R"("merges": ["a b", ["Ġ", "ab"]])", R"("x": 1)")},
      {"merge of unknown token", replace(ok, R"("a b")", R"("a z")")},
      {"merge without space", replace(ok, R"("a b")", R"("ab")")},
      {"negative vocab id", replace(ok, R"("b": 1)", R"("b": -1)")},
      {"huge vocab id", replace(ok, R"("b": 1)", R"("b": 4000000000)")},
      {"string id", replace(ok, R"("b": 1)", R"("b": "1")")},
      {"huge added id", replace(ok, R"("id": 5)", R"("id": 99999999999)")},
      {"missing model", replace(ok, R"("model")", R"("mode1")")},
      {"unigram model", replace(ok, R"("type": "BPE")", R"("type": "Unigram")")},
      {"unknown normalizer",
       replace(ok, R"("normalizer": null)", R"("normalizer": {"type": "NFKD"})")},
      {"unknown pre-tokenizer",
       replace(ok, R"({"type": "ByteLevel", "add_prefix_space")", R"({"type": "Whitespace", "x")")},
      {"bad regex",
       replace(
           ok, R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})",
           R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(("}, "behavior": "Isolated"}, {"type": "ByteLevel", "use_regex": false}]})")},
      {"unknown decoder",
       replace(ok, R"("decoder": {"type": "ByteLevel"})", R"("decoder": {"type": "WordPiece"})")},
      {"unknown post-processor",
       replace(ok, R"("post_processor": null)", R"("post_processor": {"type": "BertProcessing"})")},
      {"template with unknown token",
       replace(
           ok, R"("post_processor": null)",
           R"("post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<x>"}}, {"Sequence": {"id": "A"}}], "special_tokens": {}})")},
  };
  for (const auto& [what, text] : bad) {
    EXPECT_THROW(Tokenizer::from_hf_json(text), Error) << what;
  }
  EXPECT_THROW(Tokenizer::from_hf_json(ok, "{not json"), Error) << "bad tokenizer_config";
  EXPECT_THROW(Tokenizer::from_hf_dir("/nonexistent/dir"), Error);
}

TEST(TokenizerJson, TemplateAddsBosAndEos) {
  const std::string t = replace(
      kMiniJson, R"("post_processor": null)",
      R"("post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|end|>"}}, {"Sequence": {"id": "A"}}, {"SpecialToken": {"id": "<|end|>"}}], "special_tokens": {"<|end|>": {"id": "<|end|>", "ids": [5]}}})");
  auto tok = Tokenizer::from_hf_json(
      t, R"({"bos_token": "<|end|>", "eos_token": {"content": "<|end|>"}})");
  EXPECT_EQ(tok->encode("ab"), (std::vector<int32_t>{5, 2, 5}));
  EXPECT_EQ(tok->encode("ab", false), (std::vector<int32_t>{2}));
  EXPECT_EQ(tok->bos_id(), 5);
  EXPECT_EQ(tok->eos_id(), 5);
}

TEST(Utf8, LossyMatchesMaximalSubparts) {
  // Python: b"a\xf0\x9f\x98b\xed\xa0\x80c\xc0\xafd".decode("utf-8", "replace")
  EXPECT_EQ(utf8::to_valid_lossy("a\xf0\x9f\x98"
                                 "b\xed\xa0\x80"
                                 "c\xc0\xaf"
                                 "d"),
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
            "c\xEF\xBF\xBD\xEF\xBF\xBD"
            "d");
  EXPECT_EQ(utf8::stable_prefix_len("ab\xe2\x82"), 2u);
  EXPECT_EQ(utf8::stable_prefix_len("ab\xe2\x82\xac"), 5u);
  EXPECT_EQ(utf8::stable_prefix_len("ab\x80"), 3u);
}

}  // namespace
}  // namespace jinx

namespace jinx {
namespace {

TEST(TokenizerGguf, BadMetadataThrowsError) {
  const auto good = GgufFile(test::fixture("bad_gguf/good_gpt2.gguf"));
  auto tok = Tokenizer::from_gguf(good);
  EXPECT_EQ(tok->encode("ab<|end|>"), (std::vector<int32_t>{2, 4}));
  EXPECT_TRUE(tok->is_special(4));
  for (const char* name : {"bos_out_of_range", "no_merges", "merge_unknown_token",
                           "merge_not_byte_level", "unknown_pre", "unknown_model",
                           "token_type_count", "spm_without_scores", "spm_scores_count"}) {
    const GgufFile f(test::fixture(std::string("bad_gguf/") + name + ".gguf"));
    EXPECT_THROW(Tokenizer::from_gguf(f), Error) << name;
  }
}

}  // namespace
}  // namespace jinx

namespace jinx {
namespace {

// llama.cpp's "gpt-4o" pre-tokenizer (gpt-oss GGUF files): the pieces Hugging Face tokenizers
// 0.23.3 gives with pre_tokenizers.Split(Regex(o200k's pattern), "isolated") on the same
// strings.
TEST(PreTokenizer, GptO200kMatchesHuggingFace) {
  const std::pair<std::string, std::vector<std::string>> cases[] = {
      {"Hello WORLD, it's JSONParser's 12345 test!!\n\n  indented\tTab",
       {"Hello", " WORLD", ",", " it's", " JSONParser's", " ", "123", "45", " test", "!!\n\n", " ",
        " indented", "\tTab"}},
      {"HTTPServer don'T  x  /path/to\r\nfile \xc3\x89" "COLE \xc3\xbc" "ber caf\xc3\xa9 "
       "na\xc3\xaf" "ve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9"
       "\xe3\x83\x88",
       {"HTTPServer", " don'T", " ", " x", " ", " /", "path", "/to", "\r\n", "file",
        " \xc3\x89" "COLE", " \xc3\xbc" "ber", " caf\xc3\xa9", " na\xc3\xaf" "ve",
        " \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3\x83\x88"}},
      {"  leading spaces and trailing   ",
       {" ", " leading", " spaces", " and", " trailing", "   "}},
      {"a/b//c\n/d 3.14159 ((x)) <|end|>",
       {"a", "/b", "//", "c", "\n", "/d", " ", "3", ".", "141", "59", " ((", "x", "))", " <|",
        "end", "|>"}},
  };
  const PreTokenizer p = pre_tokenizer_for_gguf("gpt-4o");
  std::string storage;
  std::vector<std::string_view> pieces;
  for (const auto& [text, want] : cases) {
    p.split(text, &storage, &pieces);
    EXPECT_EQ(std::vector<std::string>(pieces.begin(), pieces.end()), want) << text;
  }
}

}  // namespace
}  // namespace jinx
