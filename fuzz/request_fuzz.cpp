// Fuzz target: the HTTP request body -> validated request path of `jinx serve`
// (server/openai_request: parse_chat_request / parse_completion_request, then the structured
// output constraint), with the committed SmolLM2 tokenizer and chat template.
// Input: the first byte picks the endpoint (even: chat, odd: completions); the rest is the body.
// Properties: a body that is not JSON is rejected by the parser (the server answers 400); every
// other bad body throws jinx::Error (the server's ApiError is one); an accepted body gives a
// plan whose prompts are in the vocabulary and fit the context, and its constraint (if any)
// can be built.
#include <fstream>
#include <sstream>

#include "fuzz/fuzz_util.h"
#include "server/openai_request.h"
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

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const bool chat = data[0] % 2 == 0;
  const nlohmann::ordered_json body = nlohmann::ordered_json::parse(
      reinterpret_cast<const char*>(data + 1), reinterpret_cast<const char*>(data + size),
      nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return 0;  // the server's 400 for malformed JSON
  const jinx::server::ModelContext& ctx = context().ctx;
  jinx::fuzz::expect_ok_or_error([&] {
    jinx::server::check_model_field(nlohmann::json(body), ctx);
    jinx::server::GenPlan plan = chat ? jinx::server::parse_chat_request(body, ctx)
                                      : jinx::server::parse_completion_request(body, ctx);
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
