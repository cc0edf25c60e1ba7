// The /v1/embeddings pieces that need no model: base64 against RFC 4648's test vectors, and
// the response's shortened (Matryoshka) vectors renormalized.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "server/embeddings.h"

namespace jinx::server {
namespace {

TEST(Embeddings, Base64MatchesRfc4648) {
  const std::pair<const char*, const char*> cases[] = {
      {"", ""},          {"f", "Zg=="},         {"fo", "Zm8="},        {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [in, out] : cases) EXPECT_EQ(base64_encode(in, std::strlen(in)), out) << in;
  const unsigned char high[] = {0xff, 0xfe, 0x00};
  EXPECT_EQ(base64_encode(high, 3), "//4A");
}

TEST(Embeddings, ShortenedVectorsAreRenormalized) {
  EmbeddingPlan plan;
  plan.inputs = {{1, 2}, {3}};
  plan.n_tokens = 3;
  plan.dimensions = 2;
  const std::vector<float> v = {0.6f, 0.0f, 0.8f, 0.0f, 0.0f, 1.0f};  // 2 vectors of 3
  const auto r = embedding_response(plan, v, 3, "m");
  ASSERT_EQ(r["data"].size(), 2u);
  EXPECT_EQ(r["data"][0]["embedding"], nlohmann::json({1.0f, 0.0f}));
  EXPECT_EQ(r["data"][1]["embedding"], nlohmann::json({0.0f, 0.0f}));  // zero stays zero
  EXPECT_EQ(r["usage"]["prompt_tokens"], 3);
  plan.dimensions = 0;
  const auto full = embedding_response(plan, v, 3, "m");
  EXPECT_EQ(full["data"][0]["embedding"], nlohmann::json({0.6f, 0.0f, 0.8f}));
}

}  // namespace
}  // namespace jinx::server
