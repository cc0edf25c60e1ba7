// Chat templates: a Jinja2 interpreter for the subset chat templates use, rendering
// byte-identically to Python jinja2 as Hugging Face transformers runs it
// (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols, the generation tag,
// and the globals raise_exception, strftime_now, namespace, dict, plus a tojson filter with
// ensure_ascii=False).
//
// A template is untrusted input: parsing and rendering never crash, and rendering stops with
// jinx::Error at the configured limits (output size, loop iterations, macro call depth).
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace jinx {

namespace jinja {
struct Stmt;
}

struct TemplateLimits {
  size_t max_output_bytes = 64u << 20;
  int64_t max_loop_iterations = 1'000'000;
  int max_call_depth = 100;
};

class ChatTemplate {
 public:
  // Parses; throws jinx::Error "template line N: ..." on syntax errors or unsupported
  // constructs (extends, include, import, call blocks, recursive loops).
  explicit ChatTemplate(const std::string& source, TemplateLimits limits = {});
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // context: an object with messages, tools (optional), add_generation_prompt, bos_token,
  // eos_token and any extra keyword arguments (enable_thinking, ...). Keys missing from it are
  // filled as transformers' apply_chat_template does: tools and documents = none,
  // add_generation_prompt = false. Object key order matters to tojson, so prefer
  // ordered_json; a plain nlohmann::json renders its (sorted) key order.
  // Throws jinx::Error "template line N: ..." on runtime errors; raise_exception("msg") throws
  // jinx::Error whose what() is exactly "msg".
  std::string render(const nlohmann::ordered_json& context) const;
  std::string render(const nlohmann::json& context) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The template used for models that ship none: ChatML, as transformers' former default
// (`<|im_start|>role\ncontent<|im_end|>\n` per message, then `<|im_start|>assistant\n` when
// add_generation_prompt is set).
std::string fallback_chat_template();

}  // namespace jinx
