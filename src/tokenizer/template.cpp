#include "tokenizer/template.h"

#include "tokenizer/jinja_eval.h"
#include "tokenizer/jinja_parser.h"

namespace jinx {

struct ChatTemplate::Impl {
  jinja::Body body;
  jinja::Limits limits;

  std::string render(jinja::Value context) const {
    if (!context.is_dict()) fail("chat template context must be a JSON object");
    auto globals = std::make_shared<jinja::Scope>();
    jinja::add_globals(*globals);
    auto top = std::make_shared<jinja::Scope>();
    top->parent = globals;
    // What transformers' render_jinja_template always passes.
    top->vars["tools"] = jinja::Value::none();
    top->vars["documents"] = jinja::Value::none();
    top->vars["add_generation_prompt"] = jinja::Value::boolean(false);
    for (const auto& [key, value] : context.dict->items) top->vars[key] = value;
    jinja::Renderer renderer(limits, top);
    return renderer.render(body);
  }
};

ChatTemplate::ChatTemplate(const std::string& source, TemplateLimits limits)
    : impl_(std::make_unique<Impl>()) {
  impl_->body = jinja::parse_template(source);
  impl_->limits.max_output_bytes = limits.max_output_bytes;
  impl_->limits.max_loop_iterations = limits.max_loop_iterations;
  impl_->limits.max_call_depth = limits.max_call_depth;
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  return impl_->render(jinja::Value::from_json(context));
}

std::string ChatTemplate::render(const nlohmann::json& context) const {
  return impl_->render(jinja::Value::from_json(context));
}

std::string fallback_chat_template() {
  return "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
         "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
         "{{ '<|im_start|>assistant\\n' }}{% endif %}";
}

}  // namespace jinx
