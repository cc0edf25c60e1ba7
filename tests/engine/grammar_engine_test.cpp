// Grammar-constrained generation end to end against llama.cpp: the same GGUF (SmolLM2-135M
// Q4_1), the same prompts and GBNF grammars, greedy; llama.cpp's tokens come from
// tools/make_grammar_fixtures.py (llama-cpp-python's grammar sampler). The two engines'
// logits differ a little (activation rounding), so a divergence is allowed only where
// llama.cpp's best two allowed tokens were within kTieTol of each other.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/llm.h"
#include "loader/gguf.h"
#include "model/model.h"
#include "structured/gbnf_constraint.h"
#include "tokenizer/tokenizer.h"
#include "../support/smollm2.h"

namespace jinx {
namespace {

constexpr double kTieTol = 0.25;

TEST(GrammarEngine, GreedyMatchesLlamaCppGrammarSampler) {
  const std::string path = test::smollm2_path();
  const std::shared_ptr<const Tokenizer> tok = test::smollm2_tokenizer();
  if (!tok) GTEST_SKIP() << "model not installed: " << path;
  nlohmann::json ref;
  std::ifstream(std::string(JINX_FIXTURES) + "/structured/grammar_llamacpp.json") >> ref;
  ASSERT_FALSE(ref["cases"].empty());

  std::shared_ptr<const Model> model = Model::load(path);
  const auto vocab = std::make_shared<ConstraintVocab>(*tok);
  EngineOptions o;
  o.threads = 2;
  o.kv_dtype = DType::F32;
  LLM llm(model, tok, o);

  std::vector<Request> reqs;
  for (const auto& c : ref["cases"]) {
    Request r;
    r.prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    EXPECT_EQ(r.prompt, tok->encode(c["prompt"].get<std::string>(), false)) << c["name"];
    r.params.temperature = 0;
    r.params.max_tokens = c["max_tokens"].get<int>();
    r.constraint = std::make_shared<GbnfConstraint>(GbnfGrammar::parse(c["gbnf"].get<std::string>()),
                                                    vocab, tok->eos_ids());
    reqs.push_back(std::move(r));
  }
  // All at once: every request keeps its own constraint in a shared batch.
  const auto outs = llm.generate(reqs);
  const std::vector<int32_t> eos = tok->eos_ids();
  int identical = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto& c = ref["cases"][i];
    const auto want = c["tokens"].get<std::vector<int32_t>>();
    std::vector<int32_t> got = outs[i].token_ids;
    while (!got.empty() && std::find(eos.begin(), eos.end(), got.back()) != eos.end()) got.pop_back();
    size_t k = 0;
    while (k < got.size() && k < want.size() && got[k] == want[k]) ++k;
    const auto& margins = c["margins"];
    std::printf("%-16s llama.cpp %-40s jinx %-40s agree %zu/%zu\n", c["name"].get<std::string>().c_str(),
                nlohmann::json(c["text"]).dump().c_str(), nlohmann::json(outs[i].text).dump().c_str(), k,
                want.size());
    if (k == want.size() && k == got.size()) {
      ++identical;
      // Stopped the same way: at EOS or at the grammar's end, else at max_tokens.
      EXPECT_EQ(outs[i].finish_reason, c["stopped_at_eos"].get<bool>() ? "stop" : "length") << c["name"];
      continue;
    }
    // Parted (or one stopped early): only at a near-tie of llama.cpp's allowed tokens.
    ASSERT_LT(k, margins.size()) << c["name"];
    ASSERT_FALSE(margins[k].is_null()) << c["name"] << ": only one token was allowed at " << k;
    EXPECT_LT(margins[k].get<double>(), kTieTol) << c["name"] << " parted at token " << k;
  }
  EXPECT_GE(identical, static_cast<int>(reqs.size()) - 2);
}

}  // namespace
}  // namespace jinx
