// gpt-oss's configuration beyond the fixtures' own: the config.json layout OpenAI publishes
// (transformers 4's rope_scaling, no layer_types) must describe the same model, bit for bit;
// llama.cpp's GGUF with o200k_harmony's tokens stops at <|return|> / <|call|>, not <|end|>;
// and what is refused.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "loader/gguf.h"
#include "loader/gguf_writer.h"
#include "model/model.h"

namespace jinx {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const fs::path kModels = fs::path(JINX_FIXTURES) / "models";

class GptOssConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("jinx-gpt-oss-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "m");
  }
  void TearDown() override { fs::remove_all(dir_); }
  // A copy of fixture `name` whose config.json is edit(config).
  std::string copy(const std::string& name, const std::function<void(json&)>& edit) {
    const fs::path to = dir_ / "m";
    fs::remove_all(to);
    fs::create_directories(to);
    for (const auto& e : fs::directory_iterator(kModels / name))
      fs::copy(e.path(), to / e.path().filename());
    std::ifstream in(to / "config.json");
    json j = json::parse(in);
    edit(j);
    std::ofstream(to / "config.json") << j.dump(2);
    return to.string();
  }
  static std::vector<float> logits(const std::string& path) {
    auto m = Model::load(path);
    const std::vector<int32_t> ids = {5, 77, 300, 12, 9, 401, 33, 250, 18, 64, 2, 100};
    KvCache cache = m->new_cache(static_cast<int64_t>(ids.size()));
    std::vector<float> out(ids.size() * m->config().vocab_size);
    ThreadPool pool(2);
    m->forward(ids, cache, out.data(), true, pool);
    return out;
  }
  fs::path dir_;
};

TEST_F(GptOssConfig, PublishedLayoutGivesTheSameModel) {
  const std::vector<float> want = logits((kModels / "tiny-gpt-oss").string());
  const std::string path = copy("tiny-gpt-oss", [](json& j) {
    json rope = j["rope_parameters"];
    j.erase("rope_parameters");
    j.erase("layer_types");  // gpt-oss's default: even layers slide
    j["rope_theta"] = rope["rope_theta"];
    rope.erase("rope_theta");
    j["rope_scaling"] = rope;
    j["torch_dtype"] = j["dtype"];
    j.erase("dtype");
  });
  const ModelConfig c = Model::load(path)->config();
  EXPECT_EQ(c.arch, Arch::kGptOss);
  EXPECT_EQ(c.rope_scaling, RopeScaling::kYarn);
  EXPECT_FALSE(c.rope_truncate);
  EXPECT_EQ(c.sliding_window, 4);
  EXPECT_EQ(c.layer_sliding, (std::vector<bool>{true, false}));
  EXPECT_TRUE(c.attn_sinks && c.norm_topk_prob);
  EXPECT_FLOAT_EQ(c.swiglu_limit, 7.0f);
  EXPECT_EQ(logits(path), want);
}

TEST_F(GptOssConfig, RefusedWithAReason) {
  auto error_of = [](const std::string& path) {
    try {
      Model::load(path);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // MXFP4 is gpt-oss's only: another architecture claiming it is refused.
  EXPECT_NE(error_of(copy("tiny-llama", [](json& j) {
              j["quantization_config"] = {{"quant_method", "mxfp4"}};
            })).find("gpt-oss only"),
            std::string::npos);
  // An MXFP4 config over BF16 experts: the blocks are missing, by name.
  EXPECT_NE(error_of(copy("tiny-gpt-oss", [](json& j) {
              j["quantization_config"] = {{"quant_method", "mxfp4"}};
            })).find("gate_up_proj_blocks"),
            std::string::npos);
  // And BF16 experts missing from an MXFP4-less config over the MXFP4 files.
  EXPECT_NE(error_of(copy("tiny-gpt-oss-mxfp4", [](json& j) { j.erase("quantization_config"); }))
                .find("gate_up_proj"),
            std::string::npos);
  EXPECT_NE(error_of(copy("tiny-gpt-oss", [](json& j) { j["swiglu_limit"] = 0.0; }))
                .find("swiglu_limit"),
            std::string::npos);
}

// The fixture GGUF rewritten with o200k_harmony's end tokens in its vocabulary and <|end|> as
// its eos and eot ids (what a converter could write): generation must stop at <|return|> and
// <|call|> only.
TEST_F(GptOssConfig, HarmonyVocabularyStopsAtReturnAndCall) {
  GgufFile src((kModels / "tiny-gpt-oss-mxfp4.gguf").string());
  GgufWriter w;
  for (const GgufKV& kv : src.metadata()) {
    if (kv.key == "general.alignment") continue;
    if (kv.key == "tokenizer.ggml.tokens") {
      std::vector<std::string> t(kv.value.strings().begin(), kv.value.strings().end());
      t[10] = "<|end|>";
      t[11] = "<|return|>";
      t[12] = "<|call|>";
      w.add_string_array(kv.key, t);
    } else if (kv.key == "tokenizer.ggml.eos_token_id") {
      w.add_u32(kv.key, 10);
    } else {
      w.add_value(kv.key, kv.value);
    }
  }
  w.add_u32("tokenizer.ggml.eot_token_id", 10);
  for (const GgufTensor& t : src.tensors()) {
    const TensorView v = t.view;
    w.add_tensor(t.name, v.dtype, v.shape, [v](uint8_t* out, size_t n) {
      ASSERT_EQ(n, v.nbytes);
      std::memcpy(out, v.data, n);
    });
  }
  const std::string path = (dir_ / "harmony.gguf").string();
  w.write(path);
  auto m = Model::load(path);
  EXPECT_EQ(m->config().eos_token_ids, (std::vector<int32_t>{11, 12}));
  // The weights came through unchanged.
  EXPECT_EQ(logits(path), logits((kModels / "tiny-gpt-oss-mxfp4.gguf").string()));
}

}  // namespace
}  // namespace jinx
