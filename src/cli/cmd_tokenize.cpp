// jinx tokenize | detokenize | template
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/common.h"
#include "core/check.h"
#include "tokenizer/template.h"

namespace jinx::cli {

namespace {

struct TokArgs {
  std::string model, text, file, ids, messages, tools;
  bool special = false, add_generation_prompt = false, skip_special = false;
};

void run_tokenize(const TokArgs& a) {
  auto tok = load_tokenizer(a.model, nullptr);
  const std::string text = a.file.empty() ? a.text : read_file(a.file);
  auto ids = tok->encode(text, /*add_special=*/true, /*parse_special=*/a.special);
  nlohmann::json j = ids;
  std::printf("%s\n", j.dump().c_str());
}

void run_detokenize(const TokArgs& a) {
  auto tok = load_tokenizer(a.model, nullptr);
  auto ids = parse_ids(a.ids);
  for (int32_t id : ids)
    if (id >= tok->vocab_size()) fail("token id ", id, " is outside the vocabulary");
  std::string s = tok->decode(ids, a.skip_special);
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::printf("\n");
}

nlohmann::ordered_json read_json(const std::string& path) {
  auto j = nlohmann::ordered_json::parse(read_file(path), nullptr, false);
  if (j.is_discarded()) fail(path, ": invalid JSON");
  return j;
}

void run_template(const TokArgs& a) {
  auto tok = load_tokenizer(a.model, nullptr);
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  nlohmann::ordered_json msgs = read_json(a.messages);
  if (msgs.is_object() && msgs.contains("messages")) {
    ctx = msgs;  // a whole context object
  } else {
    if (!msgs.is_array()) fail(a.messages, ": expected a JSON array of messages");
    ctx["messages"] = msgs;
  }
  if (!a.tools.empty()) ctx["tools"] = read_json(a.tools);
  ctx["add_generation_prompt"] = a.add_generation_prompt;
  ctx["bos_token"] = tok->bos_token();
  ctx["eos_token"] = tok->eos_token();
  const std::string& src = tok->chat_template().empty() ? fallback_chat_template()
                                                        : tok->chat_template();
  std::string out = ChatTemplate(src).render(ctx);
  std::fwrite(out.data(), 1, out.size(), stdout);
}

}  // namespace

void add_tokenizer_commands(CLI::App& app) {
  auto a = std::make_shared<TokArgs>();
  CLI::App* t = app.add_subcommand("tokenize", "Print the token ids of a text as JSON");
  t->add_option("-m,--model", a->model, "Model directory or .gguf file")->required();
  auto* text = t->add_option("--text", a->text, "Text to tokenize");
  t->add_option("--file", a->file, "File to tokenize")->excludes(text);
  t->add_flag("--special", a->special, "Parse special tokens written in the text");
  t->callback([a] { run_tokenize(*a); });

  CLI::App* d = app.add_subcommand("detokenize", "Print the text of token ids");
  d->add_option("-m,--model", a->model, "Model directory or .gguf file")->required();
  d->add_option("--ids", a->ids, "Token ids: 1,2,3")->required();
  d->add_flag("--skip-special", a->skip_special, "Leave out special tokens");
  d->callback([a] { run_detokenize(*a); });

  CLI::App* m = app.add_subcommand("template", "Render the chat template for messages");
  m->add_option("-m,--model", a->model, "Model directory or .gguf file")->required();
  m->add_option("--messages", a->messages, "JSON file: an array of messages")->required();
  m->add_option("--tools", a->tools, "JSON file: an array of tools");
  m->add_flag("--add-generation-prompt", a->add_generation_prompt, "End with the assistant prompt");
  m->callback([a] { run_template(*a); });
}

}  // namespace jinx::cli
