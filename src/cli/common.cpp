#include "cli/common.h"

#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/check.h"
#include "loader/gguf.h"
#include "structured/gbnf_constraint.h"
#include "structured/json_constraint.h"
#include "structured/regex_grammar.h"

namespace jinx::cli {

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const Model* model) {
  if (model && model->store().gguf()) return Tokenizer::from_gguf(*model->store().gguf());
  if (std::filesystem::is_regular_file(path)) {
    GgufFile f(path);
    return Tokenizer::from_gguf(f);
  }
  return Tokenizer::from_hf_dir(path);
}

std::vector<int32_t> parse_ids(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    std::string item = s.substr(i, j - i);
    while (!item.empty() && item.front() == ' ') item.erase(item.begin());
    while (!item.empty() && item.back() == ' ') item.pop_back();
    int32_t v = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || p != item.data() + item.size() || v < 0)
      fail("bad token id \"", item, "\" (expected comma-separated non-negative integers)");
    ids.push_back(v);
    i = j + 1;
  }
  return ids;
}

std::shared_ptr<TokenConstraint> make_constraint(const ConstraintSpec& spec, const Tokenizer& tok,
                                                 std::shared_ptr<const ConstraintVocab>* vocab) {
  if (spec.kind.empty()) return nullptr;
  if (!*vocab) *vocab = std::make_shared<ConstraintVocab>(tok);
  if (spec.kind == "json_schema") {
    std::shared_ptr<const JsonGrammar> g;
    try {
      g = JsonGrammar::from_schema_text(spec.text);
    } catch (const nlohmann::json::exception& e) {
      fail("the JSON schema does not parse: ", e.what());
    }
    return std::make_shared<JsonConstraint>(std::move(g), *vocab, tok.eos_ids());
  }
  std::shared_ptr<const GbnfGrammar> g;
  if (spec.kind == "grammar") g = GbnfGrammar::parse(spec.text);
  else if (spec.kind == "regex") g = regex_grammar(spec.text);
  else if (spec.kind == "choice") g = GbnfGrammar::choice(spec.choices);
  else fail("unknown constraint kind '", spec.kind, "'");
  return std::make_shared<GbnfConstraint>(std::move(g), *vocab, tok.eos_ids());
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace jinx::cli
