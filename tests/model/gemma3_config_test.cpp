// Gemma 3's config.json in the two layouts: transformers 5's (layer_types, rope_parameters by
// layer type; the tiny-gemma3 fixture) and published checkpoints' (rope_theta + rope_scaling for
// the full layers, rope_local_base_freq, sliding_window_pattern). Both must describe the same
// model: the same logits, bit for bit. Plus what is refused.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "model/model.h"

namespace jinx {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kFixture = fs::path(JINX_FIXTURES) / "models" / "tiny-gemma3";

class Gemma3Config : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("jinx-gemma3-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    for (const auto& e : fs::directory_iterator(kFixture))
      fs::copy(e.path(), dir_ / e.path().filename());
    std::ifstream in(dir_ / "config.json");
    cfg_ = json::parse(in);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const json& j) {
    std::ofstream out(dir_ / "config.json");
    out << j.dump(2);
  }
  std::vector<float> logits(const std::string& path) {
    auto m = Model::load(path);
    const std::vector<int32_t> ids = {5, 77, 300, 12, 9, 401, 33, 250, 18, 64, 2, 100};
    KvCache cache = m->new_cache(static_cast<int64_t>(ids.size()));
    std::vector<float> out(ids.size() * m->config().vocab_size);
    ThreadPool pool(2);
    m->forward(ids, cache, out.data(), true, pool);
    return out;
  }
  fs::path dir_;
  json cfg_;
};

TEST_F(Gemma3Config, PublishedLayoutGivesTheSameModel) {
  json j = cfg_;
  ASSERT_TRUE(j.contains("rope_parameters"));
  j.erase("rope_parameters");
  j.erase("layer_types");
  j["rope_theta"] = 1000000.0;
  j["rope_local_base_freq"] = 10000.0;
  j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}};
  j["sliding_window_pattern"] = 2;  // layers 0, 2 sliding, 1 full, as layer_types said
  write(j);
  EXPECT_EQ(logits(dir_.string()), logits(kFixture.string()));
}

TEST_F(Gemma3Config, UnsupportedVariantsAreRefused) {
  for (const auto& [key, value] : std::vector<std::pair<std::string, json>>{
           {"final_logit_softcapping", 30.0},
           {"attn_logit_softcapping", 50.0},
           {"use_bidirectional_attention", true},
           {"hidden_activation", "relu"},
           {"layer_types", json::array({"sliding_attention"})}}) {
    json j = cfg_;
    j[key] = value;
    write(j);
    EXPECT_THROW(Model::load(dir_.string()), Error) << key;
  }
}

}  // namespace
}  // namespace jinx
