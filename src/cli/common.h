// Shared helpers of the jinx subcommands.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "model/model.h"
#include "structured/constraint.h"
#include "tokenizer/tokenizer.h"

namespace jinx {
class ConstraintVocab;
}

namespace jinx::cli {

// The tokenizer that goes with a model path (tokenizer.json in a directory, or GGUF metadata).
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, const Model* model);
// "1,2,3" -> ids; throws jinx::Error on anything else.
std::vector<int32_t> parse_ids(const std::string& s);
std::string read_file(const std::string& path);

// Structured output on the command line and in batch lines: a GBNF grammar, a regex, a JSON
// schema or a list of choices (kind "" = none).
struct ConstraintSpec {
  std::string kind;  // "", "grammar", "regex", "json_schema" or "choice"
  std::string text;  // the grammar, regex or schema
  std::vector<std::string> choices;
};
// Compiles the spec (throws jinx::Error naming what is wrong); null for kind "". The
// vocabulary index is built on first use into *vocab and reused.
std::shared_ptr<TokenConstraint> make_constraint(const ConstraintSpec& spec, const Tokenizer& tok,
                                                 std::shared_ptr<const ConstraintVocab>* vocab);

}  // namespace jinx::cli
