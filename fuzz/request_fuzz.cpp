// Fuzz target: the HTTP request body -> validated request path of `jinx serve`
// (server/openai_request: parse_chat_request / parse_completion_request, then the structured
// output constraint), with the committed SmolLM2 tokenizer and chat template.
// Input: the first byte picks the endpoint (mod 5: 0 chat, 1 completions, 2 embeddings, 3 a
// chat request with "rag" and /v1/rag/search, 4 /v1/responses, rewritten into the chat request
// it means); the rest is the body.
// Properties: a body that is not JSON is rejected by the parser (the server answers 400); every
// other bad body throws jinx::Error (the server's ApiError is one); an accepted body gives a
// plan whose prompts are in the vocabulary and fit the context, and its constraint (if any)
// can be built.
#include <fstream>
#include <sstream>

#include "fuzz/fuzz_util.h"
#include "server/embeddings.h"
#include "server/openai_request.h"
#include "server/rag_api.h"
#include "server/responses_api.h"
#include "structured/constraint_vocab.h"
#include "tokenizer/template.h"

namespace {

struct Context {
  jinx::server::ModelContext ctx;
  std::shared_ptr<const jinx::ConstraintVocab> vocab;
  Context() {
    ctx.served_name = "smollm2";
    ctx.tok = jinx::Tokenizer::from_hf_dir(JINX_FIXTURES "/tokenizer/smollm2");
    std::ifstream f(JINX_FIXTURES "/templates/smollm2_instruct.jinja");
    std::stringstream ss;
    ss << f.rdbuf();
    ctx.tmpl_source = ss.str();
    ctx.tmpl = std::make_shared<jinx::ChatTemplate>(ctx.tmpl_source);
    ctx.tool_format = jinx::detect_tool_format(ctx.tmpl_source);
    ctx.vocab_size = ctx.tok->vocab_size();
    ctx.max_model_len = 2048;
    ctx.constraint_vocab = [this] {
      if (!vocab) vocab = std::make_shared<const jinx::ConstraintVocab>(*ctx.tok);
      return vocab;
    };
  }
};

Context& context() {
  static Context c;
  return c;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)context();
  return 0;
}

namespace {

// /v1/embeddings: an accepted body gives 1..2048 non-empty inputs of vocabulary ids that fit
// the context, and a dimension within the width.
void embeddings(const nlohmann::json& body, const jinx::server::ModelContext& ctx) {
  constexpr int64_t kHidden = 576;
  const jinx::server::EmbeddingPlan plan =
      jinx::server::parse_embedding_request(body, ctx, kHidden);
  JINX_FUZZ_ASSERT(!plan.inputs.empty() &&
                   plan.inputs.size() <= jinx::server::kMaxEmbeddingInputs);
  int64_t n = 0;
  for (const auto& ids : plan.inputs) {
    JINX_FUZZ_ASSERT(!ids.empty() && static_cast<int64_t>(ids.size()) <= ctx.max_model_len);
    for (int32_t id : ids) JINX_FUZZ_ASSERT(id >= 0 && id < ctx.vocab_size);
    n += static_cast<int64_t>(ids.size());
  }
  JINX_FUZZ_ASSERT(n == plan.n_tokens && plan.dimensions >= 0 && plan.dimensions <= kHidden);
}

// "rag" on a chat request (rewritten with no passages, then parsed as the server does), and
// the same body as a /v1/rag/search request.
void rag(nlohmann::ordered_json body, const jinx::server::ModelContext& ctx) {
  if (const auto s = jinx::server::take_chat_rag(body)) {
    JINX_FUZZ_ASSERT(s->k >= 1 && s->k <= 100 && !s->query.empty());
    jinx::server::apply_chat_rag(body, {});
    jinx::server::parse_chat_request(body, ctx);
  }
  const jinx::server::RagSearch s = jinx::server::parse_rag_search(nlohmann::json(body));
  JINX_FUZZ_ASSERT(s.k >= 1 && s.k <= 100 && !s.query.empty());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int route = data[0] % 5;
  const bool chat = route == 0 || route == 4;
  const nlohmann::ordered_json body = nlohmann::ordered_json::parse(
      reinterpret_cast<const char*>(data + 1), reinterpret_cast<const char*>(data + size),
      nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;  // the server's 400 for malformed JSON
  const jinx::server::ModelContext& ctx = context().ctx;
  if (route == 2 || route == 3) {
    jinx::fuzz::expect_ok_or_error([&] {
      if (route == 2) embeddings(nlohmann::json(body), ctx);
      if (route == 3) rag(body, ctx);
    });
    return 0;
  }
  jinx::fuzz::expect_ok_or_error([&] {
    const nlohmann::ordered_json req =
        route == 4 ? jinx::server::responses_to_chat(body).chat : body;
    jinx::server::check_model_field(nlohmann::json(req), ctx);
    jinx::server::GenPlan plan = chat ? jinx::server::parse_chat_request(req, ctx)
                                      : jinx::server::parse_completion_request(req, ctx);
    JINX_FUZZ_ASSERT(plan.n >= 1 && plan.n <= ctx.max_n);
    JINX_FUZZ_ASSERT(!plan.prompts.empty());
    for (const auto& p : plan.prompts) {
      JINX_FUZZ_ASSERT(static_cast<int64_t>(p.ids.size()) < ctx.max_model_len);
      for (int32_t id : p.ids) JINX_FUZZ_ASSERT(id >= 0 && id < ctx.vocab_size);
    }
    JINX_FUZZ_ASSERT(plan.params.validate(ctx.vocab_size).empty());
    if (plan.grammar) JINX_FUZZ_ASSERT(jinx::server::make_constraint(plan, ctx) != nullptr);
  });
  return 0;
}
