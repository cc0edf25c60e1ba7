// Fuzz target: the chat template engine (jinx::ChatTemplate: Jinja2 lexer, parser, renderer).
// Input: the template source, then optionally a NUL byte and a JSON context: an object is the
// whole context, an array is the messages; anything else (or nothing) uses a fixed
// conversation. Limits are lowered from the defaults (1 MB output, 100k loop iterations) so
// that one input stays fast; the call-depth limit is the default.
// Properties: parse and render either succeed or throw jinx::Error; output is within the limit.
#include <string>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_util.h"
#include "tokenizer/template.h"

namespace {

using ojson = nlohmann::ordered_json;

ojson default_messages() {
  return ojson::parse(R"([
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi <b>there</b> \u00e9"},
    {"role": "assistant", "content": "Hello!", "tool_calls": [
      {"type": "function", "function": {"name": "f", "arguments": {"x": 1, "y": [true, null]}}}]},
    {"role": "tool", "content": "42"},
    {"role": "user", "content": [{"type": "text", "text": "and?"}]}])");
}

ojson make_context(std::string_view json_text, bool has_json) {
  ojson ctx = ojson::object();
  if (has_json) {
    ojson j = ojson::parse(json_text, nullptr, /*allow_exceptions=*/false);
    if (j.is_object()) ctx = std::move(j);
    else if (j.is_array()) ctx["messages"] = std::move(j);
  }
  if (!ctx.contains("messages")) ctx["messages"] = default_messages();
  if (!ctx.contains("add_generation_prompt")) ctx["add_generation_prompt"] = true;
  if (!ctx.contains("bos_token")) ctx["bos_token"] = "<s>";
  if (!ctx.contains("eos_token")) ctx["eos_token"] = "</s>";
  return ctx;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  jinx::fuzz::Split in = jinx::fuzz::split_at_nul(data, size);
  jinx::TemplateLimits limits;
  limits.max_output_bytes = 1 << 20;
  limits.max_loop_iterations = 100'000;
  jinx::fuzz::expect_ok_or_error([&] {
    jinx::ChatTemplate tmpl(std::string(in.first), limits);
    const ojson ctx = make_context(in.second, in.has_second);
    std::string out = tmpl.render(ctx);
    JINX_FUZZ_ASSERT(out.size() <= limits.max_output_bytes);
  });
  return 0;
}
