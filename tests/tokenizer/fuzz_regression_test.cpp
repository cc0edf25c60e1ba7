// Unit tests for what the fuzzers found in the tokenizer layer (fuzz/README.md). Each minimal
// crashing input from fuzz/corpus/<target>/crash-* is written out here as bytes and must end in
// a clean jinx::Error; the corpus replay (ctest -L fuzz-replay) covers the same files as a whole.
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "core/check.h"
#include "tokenizer/template.h"
#include "tokenizer/tokenizer.h"

namespace jinx {
namespace {

// The jinx::Error message of fn(), or a test failure when it throws none.
template <class F>
std::string error_of(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a jinx::Error";
  return "";
}

// fuzz/corpus/template/crash-slice_in_tuple_subscript: a bare slice inside a tuple subscript
// took the subscripted value as a fourth slice argument, and rendering read past the
// expression's arguments.
TEST(FuzzRegression, SliceInsideTupleSubscriptIsASyntaxError) {
  const std::string crash = "{{s[:,1]}}";
  const std::string msg = error_of([&] { ChatTemplate t(crash); });
  EXPECT_NE(msg.find("a slice inside a tuple subscript is not supported"), std::string::npos)
      << msg;
  for (const char* bad : {"{{ s[1, 2:] }}", "{{ s[::2, ::2] }}"})
    EXPECT_THROW(ChatTemplate{bad}, Error) << bad;
}

// The forms the fix must keep: a plain slice, and a complete slice expression used as an index
// (expected values from jinja2 3.1: "abc"[:2] and {"b": 5}["abc"[1:2]]).
TEST(FuzzRegression, SlicesOutsideTuplesStillWork) {
  const nlohmann::json ctx = {{"s", "abc"}, {"d", {{"b", 5}}}};
  EXPECT_EQ(ChatTemplate("{{ s[:2] }}|{{ d[s[1:2]] }}").render(ctx), "ab|5");
}

// fuzz/corpus/tokenizer_load/crash-template_id_outside_vocab: a TemplateProcessing special
// token whose id lies outside the (here empty) vocabulary was emitted by encode() as it was.
TEST(FuzzRegression, TemplateTokenOutsideVocabularyIsAnError) {
  const std::string crash =
      R"({"pre_tokenizer": {"type":"Sequence","pretokenizers":[{"type":"ByteLevel"}]},)"
      R"("post_processor": {"type":"TemplateProcessing","single":[{"SpecialToken":)"
      R"({"id": "<|im_start|>"}}],"special_tokens":{"<|im_start|>":{"ids":[2]}}},)"
      R"("decoder":{"type":"ByteLevel"},"model":{"vocab":{},"merges":[]}})";
  const std::string msg = error_of([&] { Tokenizer::from_hf_json(crash); });
  EXPECT_NE(msg.find("template token \"<|im_start|>\" id 2 is outside the 0-token vocabulary"),
            std::string::npos)
      << msg;
}

}  // namespace
}  // namespace jinx
