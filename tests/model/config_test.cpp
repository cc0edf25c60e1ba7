// load_hf_config on hostile config.json / generation_config.json: every bad value ends in a
// clear jinx::Error, never a wrapped cast, a nlohmann exception or a crash.
#include <gtest/gtest.h>

#include <unistd.h>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/check.h"
#include "model/config.h"

namespace jinx {
namespace {

namespace fs = std::filesystem;

// A fresh model directory holding the given config.json (and generation_config.json when
// non-empty), removed at the end of the test.
class ConfigDir {
 public:
  ConfigDir(const std::string& config, const std::string& generation = "") {
    static int counter = 0;
    dir_ = fs::temp_directory_path() /
           ("jinx_config_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "config.json", std::ios::binary) << config;
    if (!generation.empty())
      std::ofstream(dir_ / "generation_config.json", std::ios::binary) << generation;
  }
  ~ConfigDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path() const { return dir_.string(); }

 private:
  fs::path dir_;
};

// A small valid Llama config with vocab_size 10; `extra` is spliced in as more fields.
std::string llama_config(const std::string& extra) {
  std::string s = R"({"architectures":["LlamaForCausalLM"],"vocab_size":10,"hidden_size":8,)"
                  R"("intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2)";
  if (!extra.empty()) s += "," + extra;
  return s + "}";
}

// load_hf_config must throw jinx::Error whose message contains `needle`.
void expect_error(const ConfigDir& d, const std::string& needle) {
  try {
    load_hf_config(d.path());
    ADD_FAILURE() << "no error; expected one mentioning \"" << needle << "\"";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(HfConfig, TokenIdsInsideTheVocabularyLoad) {
  ConfigDir d(llama_config(R"("bos_token_id":0,"eos_token_id":[9,2])"));
  const ModelConfig c = load_hf_config(d.path());
  EXPECT_EQ(c.bos_token_id, 0);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{9, 2}));
}

TEST(HfConfig, MissingOrNullBosMeansNone) {
  for (const char* extra : {"", R"("bos_token_id":null)", R"("bos_token_id":-1)"}) {
    ConfigDir d(llama_config(extra));
    EXPECT_EQ(load_hf_config(d.path()).bos_token_id, -1) << extra;
  }
}

TEST(HfConfig, BosOutsideTheVocabularyIsAnError) {
  ConfigDir at_vocab(llama_config(R"("bos_token_id":10)"));
  expect_error(at_vocab, "bos_token_id 10 is outside the vocabulary [0, 10)");
  ConfigDir negative(llama_config(R"("bos_token_id":-2)"));
  expect_error(negative, "bos_token_id -2 is out of range");
  // 2^32 + 1 would wrap to 1 through an int32 cast.
  ConfigDir wraps(llama_config(R"("bos_token_id":4294967297)"));
  expect_error(wraps, "bos_token_id 4294967297 is out of range");
  ConfigDir huge(llama_config(R"("bos_token_id":18446744073709551615)"));
  expect_error(huge, "is out of range");
  ConfigDir text(llama_config(R"("bos_token_id":"1")"));
  expect_error(text, "bos_token_id must be an integer");
}

TEST(HfConfig, EosOutsideTheVocabularyIsAnError) {
  ConfigDir single(llama_config(R"("eos_token_id":10)"));
  expect_error(single, "eos_token_id 10 is outside the vocabulary [0, 10)");
  ConfigDir in_list(llama_config(R"("eos_token_id":[2,11])"));
  expect_error(in_list, "eos_token_id 11 is outside the vocabulary");
  ConfigDir negative(llama_config(R"("eos_token_id":[-1])"));
  expect_error(negative, "bad eos_token_id -1");
}

// generation_config.json overrides config.json, and is checked the same way.
TEST(HfConfig, GenerationConfigIdsAreChecked) {
  ConfigDir ok(llama_config(R"("bos_token_id":1,"eos_token_id":2)"),
               R"({"bos_token_id":3,"eos_token_id":[4,5]})");
  const ModelConfig c = load_hf_config(ok.path());
  EXPECT_EQ(c.bos_token_id, 3);
  EXPECT_EQ(c.eos_token_ids, (std::vector<int32_t>{4, 5}));
  ConfigDir bad_bos(llama_config(R"("bos_token_id":1)"), R"({"bos_token_id":100})");
  expect_error(bad_bos, "bos_token_id 100 is outside the vocabulary");
  ConfigDir bad_eos(llama_config(""), R"({"eos_token_id":12})");
  expect_error(bad_eos, "eos_token_id 12 is outside the vocabulary");
}

// generation_config.json's top_k: a value past int32 means "keep every token" (0), never a
// wrapped negative; negatives mean off (-1).
TEST(HfConfig, GenerationTopKNeverWraps) {
  for (const auto& [text, want] : std::vector<std::pair<std::string, int>>{
           {"40", 40}, {"0", 0}, {"-5", -1}, {"4294967297", 0}, {"18446744073709551615", 0}}) {
    ConfigDir d(llama_config(""), "{\"top_k\":" + text + "}");
    EXPECT_EQ(load_hf_config(d.path()).default_top_k, want) << text;
  }
}

// Fuzz regression (fuzz/corpus/config/crash-non_boolean_tie_word_embeddings): json::value()
// threw nlohmann's type_error on a non-boolean flag, which escaped as a non-jinx exception.
TEST(HfConfig, FuzzNonBooleanFlagIsAnError) {
  const std::string crash =
      R"({"architectures":["LlamaForCausalLM"],"vocab_size":10,"hidden_size":8,)"
      R"("intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,)"
      R"("tie_word_embeddings":"yes"})";
  ConfigDir d(crash);
  expect_error(d, "\"tie_word_embeddings\" must be true or false");
  for (const char* flag : {"use_sliding_window", "attention_bias"}) {
    ConfigDir other(llama_config(std::string("\"") + flag + "\":1"));
    expect_error(other, std::string("\"") + flag + "\" must be true or false");
  }
}

}  // namespace
}  // namespace jinx
