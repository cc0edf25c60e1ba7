// The Responses API translation (server/responses_api.h) without a model: requests to chat
// bodies, chat results to Response objects, chat chunks to events. The end-to-end checks (the
// openai client parsing every object and event) are tests/server/test_responses.py.
#include "server/responses_api.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/api_error.h"

namespace jinx::server {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

std::string param_of(const ojson& body) {
  try {
    responses_to_chat(body);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    return e.param;
  }
  return "(accepted)";
}

TEST(ResponsesApi, RequestBecomesChat) {
  const ojson body = ojson::parse(R"({
    "model": "m", "instructions": "Be brief.", "max_output_tokens": 20, "temperature": 0.5,
    "input": [
      {"role": "developer", "content": "Answer in English."},
      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather "},
                                                       {"type": "input_text", "text": "in Oslo?"}]},
      {"type": "function_call", "call_id": "c1", "name": "w", "arguments": "{\"city\":\"Oslo\"}"},
      {"type": "function_call", "call_id": "c2", "name": "w", "arguments": "{}"},
      {"type": "function_call_output", "call_id": "c1", "output": "sun"},
      {"type": "reasoning", "id": "rs_1", "summary": []}],
    "tools": [{"type": "function", "name": "w", "parameters": {"type": "object"}}],
    "tool_choice": {"type": "function", "name": "w"},
    "text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}},
    "stream": true})");
  const ResponsesRequest rq = responses_to_chat(body);
  const ojson& c = rq.chat;
  EXPECT_TRUE(rq.stream);
  EXPECT_EQ(c["max_tokens"], 20);
  EXPECT_EQ(c["temperature"], 0.5);
  EXPECT_EQ(c["stream_options"]["include_usage"], true);
  ASSERT_EQ(c["messages"].size(), 5u);
  EXPECT_EQ(c["messages"][0], ojson({{"role", "system"}, {"content", "Be brief."}}));
  EXPECT_EQ(c["messages"][1]["role"], "system");
  EXPECT_EQ(c["messages"][2]["content"], "Weather in Oslo?");
  EXPECT_EQ(c["messages"][3]["role"], "assistant");
  ASSERT_EQ(c["messages"][3]["tool_calls"].size(), 2u);  // consecutive calls: one message
  EXPECT_EQ(c["messages"][3]["tool_calls"][0]["id"], "c1");
  EXPECT_EQ(c["messages"][3]["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
  EXPECT_EQ(c["messages"][4], ojson({{"role", "tool"}, {"tool_call_id", "c1"}, {"content", "sun"}}));
  EXPECT_EQ(c["tools"][0]["function"]["name"], "w");
  EXPECT_EQ(c["tool_choice"]["function"]["name"], "w");
  EXPECT_EQ(c["response_format"]["type"], "json_schema");
  EXPECT_EQ(c["response_format"]["json_schema"]["name"], "x");
  EXPECT_EQ(rq.echo["instructions"], "Be brief.");
  EXPECT_EQ(rq.echo["top_p"], 1.0);
}

TEST(ResponsesApi, RefusalsNameTheField) {
  EXPECT_EQ(param_of(ojson::parse(R"({"input": "hi", "previous_response_id": "r"})")),
            "previous_response_id");
  EXPECT_EQ(param_of(ojson::parse(R"({"input": "hi", "background": true})")), "background");
  EXPECT_EQ(param_of(ojson::parse(R"({"input": "hi", "background": false})")), "(accepted)");
  EXPECT_EQ(param_of(ojson::parse(R"({})")), "input");
  EXPECT_EQ(param_of(ojson::parse(R"({"input": {"a": 1}})")), "input");
  EXPECT_EQ(param_of(ojson::parse(R"({"input": [3]})")), "input[0]");
  EXPECT_EQ(param_of(ojson::parse(R"({"input": [{"role": "tool", "content": "x"}]})")), "input[0]");
  EXPECT_EQ(param_of(ojson::parse(
                R"({"input": [{"role": "user", "content": [{"type": "input_file"}]}]})")),
            "input[0]");
  EXPECT_EQ(param_of(ojson::parse(R"({"input": [{"type": "function_call", "name": "w"}]})")),
            "input[0]");
  EXPECT_EQ(param_of(ojson::parse(R"({"input": "x", "tools": [{"type": "file_search"}]})")),
            "tools[0]");
  EXPECT_EQ(param_of(ojson::parse(R"({"input": "x", "tool_choice": 7})")), "tool_choice");
  EXPECT_EQ(param_of(ojson::parse(R"({"input": "x", "text": {"format": {"type": "yaml"}}})")),
            "text.format");
  EXPECT_EQ(param_of(ojson::parse(R"({"input": "x", "max_output_tokens": 0})")),
            "max_output_tokens");
  EXPECT_EQ(param_of(ojson::parse(R"({"input": "x", "stream": "yes"})")), "stream");
}

json chat_result(const json& message, const char* reason) {
  return {{"model", "m"},
          {"choices", json::array({{{"index", 0}, {"message", message}, {"finish_reason", reason}}})},
          {"usage", {{"prompt_tokens", 7}, {"completion_tokens", 3}, {"total_tokens", 10},
                     {"prompt_tokens_details", {{"cached_tokens", 2}}}}}};
}

TEST(ResponsesApi, ChatResultBecomesResponse) {
  const ResponsesRequest rq = responses_to_chat(ojson::parse(R"({"input": "hi"})"));
  json r = response_object(
      chat_result({{"role", "assistant"}, {"content", "Hello"}, {"reasoning_content", "hm"}}, "stop"),
      rq, "resp_1", 5);
  EXPECT_EQ(r["status"], "completed");
  EXPECT_TRUE(r["incomplete_details"].is_null());
  ASSERT_EQ(r["output"].size(), 2u);
  EXPECT_EQ(r["output"][0]["type"], "reasoning");
  EXPECT_EQ(r["output"][0]["content"][0]["text"], "hm");
  EXPECT_EQ(r["output"][1]["content"][0]["text"], "Hello");
  EXPECT_EQ(r["usage"]["input_tokens"], 7);
  EXPECT_EQ(r["usage"]["input_tokens_details"]["cached_tokens"], 2);
  EXPECT_EQ(r["usage"]["total_tokens"], 10);
  r = response_object(
      chat_result({{"role", "assistant"},
                   {"content", nullptr},
                   {"tool_calls", json::array({{{"id", "call_9"},
                                                {"type", "function"},
                                                {"function", {{"name", "w"}, {"arguments", "{}"}}}}})}},
                  "tool_calls"),
      rq, "resp_2", 5);
  ASSERT_EQ(r["output"].size(), 1u);
  EXPECT_EQ(r["output"][0]["type"], "function_call");
  EXPECT_EQ(r["output"][0]["call_id"], "call_9");
  r = response_object(chat_result({{"role", "assistant"}, {"content", "Hel"}}, "length"), rq,
                      "resp_3", 5);
  EXPECT_EQ(r["status"], "incomplete");
  EXPECT_EQ(r["incomplete_details"]["reason"], "max_output_tokens");
}

json chunk(const json& delta, const json& reason = nullptr) {
  return {{"choices", json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", reason}}})}};
}

TEST(ResponsesApi, ChunksBecomeEvents) {
  const ResponsesRequest rq = responses_to_chat(ojson::parse(R"({"input": "hi"})"));
  ResponsesStream s(rq, "resp_1", 5, "m");
  std::vector<json> ev = s.start();
  for (const json& c : {chunk({{"role", "assistant"}, {"content", ""}}),
                        chunk({{"reasoning_content", "th"}}), chunk({{"reasoning_content", "ink"}}),
                        chunk({{"content", "Hi"}}), chunk({{"content", " there"}}),
                        chunk({{"tool_calls", json::array({{{"index", 0},
                                                            {"id", "call_1"},
                                                            {"function", {{"name", "w"},
                                                                          {"arguments", "{\"a\":"}}}}})}}),
                        chunk({{"tool_calls", json::array({{{"index", 0},
                                                            {"function", {{"arguments", "1}"}}}}})}}),
                        chunk(json::object(), "tool_calls")}) {
    for (json& e : s.on_chunk(c)) ev.push_back(std::move(e));
  }
  for (json& e : s.finish({{"prompt_tokens", 4}, {"completion_tokens", 6}})) ev.push_back(std::move(e));
  std::vector<std::string> types;
  for (size_t i = 0; i < ev.size(); ++i) {
    EXPECT_EQ(ev[i]["sequence_number"], static_cast<int64_t>(i));
    types.push_back(ev[i]["type"]);
  }
  const std::vector<std::string> want = {
      "response.created", "response.in_progress",
      "response.output_item.added", "response.content_part.added",  // reasoning
      "response.reasoning_text.delta", "response.reasoning_text.delta",
      "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added", "response.content_part.added",  // message
      "response.output_text.delta", "response.output_text.delta",
      "response.output_text.done", "response.content_part.done", "response.output_item.done",
      "response.output_item.added",  // function call
      "response.function_call_arguments.delta", "response.function_call_arguments.delta",
      "response.function_call_arguments.done", "response.output_item.done",
      "response.completed"};
  EXPECT_EQ(types, want);
  const json& done = ev.back()["response"];
  ASSERT_EQ(done["output"].size(), 3u);
  EXPECT_EQ(done["output"][0]["content"][0]["text"], "think");
  EXPECT_EQ(done["output"][1]["content"][0]["text"], "Hi there");
  EXPECT_EQ(done["output"][2]["arguments"], "{\"a\":1}");
  EXPECT_EQ(done["output"][2]["call_id"], "call_1");
  EXPECT_EQ(done["usage"]["total_tokens"], 10);
  // The ids of an item's events agree.
  EXPECT_EQ(ev[11]["item_id"], ev[9]["item"]["id"]);
}

}  // namespace
}  // namespace jinx::server
