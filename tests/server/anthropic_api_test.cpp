// The Messages API translation (server/anthropic_api.h) without a model: requests to chat
// bodies, chat results to Message objects, chat chunks to stream events, error bodies. The
// end-to-end checks (the anthropic client parsing every object and event) are
// tests/server/test_anthropic.py.
#include "server/anthropic_api.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "server/api_error.h"

namespace jinx::server {
namespace {

using json = nlohmann::json;
using ojson = nlohmann::ordered_json;

std::string param_of(const char* body, bool count_only = false) {
  try {
    anthropic_to_chat(ojson::parse(body), count_only);
  } catch (const ApiError& e) {
    EXPECT_EQ(e.status, 400);
    return e.param;
  }
  return "(accepted)";
}

TEST(AnthropicApi, RequestBecomesChat) {
  const ojson body = ojson::parse(R"({
    "model": "m", "max_tokens": 20, "temperature": 0.5, "top_k": 4, "top_p": 0.9,
    "metadata": {"user_id": "u"}, "thinking": {"type": "enabled", "budget_tokens": 1024},
    "system": [{"type": "text", "text": "Be ", "cache_control": {"type": "ephemeral"}},
               {"type": "text", "text": "brief."}],
    "stop_sequences": ["END", "\n\n"],
    "messages": [
      {"role": "user", "content": "Weather in Oslo?"},
      {"role": "assistant", "content": [
        {"type": "thinking", "thinking": "Use the tool.", "signature": "s"},
        {"type": "redacted_thinking", "data": "xx"},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "w", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "toolu_2", "name": "w", "input": {}}]},
      {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sun"},
        {"type": "tool_result", "tool_use_id": "toolu_2",
         "content": [{"type": "text", "text": "rain"}], "is_error": true},
        {"type": "text", "text": "Thanks."}]}],
    "tools": [{"name": "w", "description": "Weather", "input_schema": {"type": "object"}},
              {"type": "custom", "name": "v", "input_schema": {"type": "object"}}],
    "tool_choice": {"type": "tool", "name": "w"},
    "stream": true})");
  const AnthropicRequest rq = anthropic_to_chat(body);
  const ojson& c = rq.chat;
  EXPECT_TRUE(rq.stream);
  EXPECT_EQ(c["model"], "m");
  EXPECT_EQ(c["max_tokens"], 20);
  EXPECT_EQ(c["temperature"], 0.5);
  EXPECT_EQ(c["top_k"], 4);
  EXPECT_EQ(c["top_p"], 0.9);
  EXPECT_EQ(c["stop"], ojson({"END", "\n\n"}));
  EXPECT_EQ(rq.stop_sequences, (std::vector<std::string>{"END", "\n\n"}));
  EXPECT_EQ(c["stream_options"]["include_usage"], true);
  EXPECT_FALSE(c.contains("metadata") || c.contains("thinking") || c.contains("system"));
  EXPECT_FALSE(c.contains("continue_final_message"));
  ASSERT_EQ(c["messages"].size(), 6u);
  EXPECT_EQ(c["messages"][0], ojson({{"role", "system"}, {"content", "Be brief."}}));
  EXPECT_EQ(c["messages"][1], ojson({{"role", "user"}, {"content", "Weather in Oslo?"}}));
  const ojson& a = c["messages"][2];
  EXPECT_EQ(a["role"], "assistant");
  EXPECT_EQ(a["content"], "Checking.");
  EXPECT_EQ(a["reasoning_content"], "Use the tool.");
  ASSERT_EQ(a["tool_calls"].size(), 2u);
  EXPECT_EQ(a["tool_calls"][0]["id"], "toolu_1");
  EXPECT_EQ(a["tool_calls"][0]["type"], "function");
  EXPECT_EQ(a["tool_calls"][0]["function"]["name"], "w");
  EXPECT_EQ(a["tool_calls"][0]["function"]["arguments"], "{\"city\":\"Oslo\"}");
  EXPECT_EQ(c["messages"][3],
            ojson({{"role", "tool"}, {"tool_call_id", "toolu_1"}, {"content", "sun"}}));
  EXPECT_EQ(c["messages"][4],
            ojson({{"role", "tool"}, {"tool_call_id", "toolu_2"}, {"content", "rain"}}));
  EXPECT_EQ(c["messages"][5], ojson({{"role", "user"}, {"content", "Thanks."}}));
  ASSERT_EQ(c["tools"].size(), 2u);
  EXPECT_EQ(c["tools"][0], ojson({{"type", "function"},
                                  {"function", {{"name", "w"},
                                                {"description", "Weather"},
                                                {"parameters", {{"type", "object"}}}}}}));
  EXPECT_EQ(c["tools"][1]["function"]["name"], "v");
  EXPECT_EQ(c["tool_choice"], ojson({{"type", "function"}, {"function", {{"name", "w"}}}}));
}

TEST(AnthropicApi, ToolChoicesAndPrefill) {
  auto choice = [](const char* tc) {
    const std::string body = std::string(R"({"max_tokens": 5, "messages": [{"role": "user",
        "content": "x"}], "tools": [{"name": "w", "input_schema": {}}], "tool_choice": )") +
                             tc + "}";
    return anthropic_to_chat(ojson::parse(body)).chat["tool_choice"];
  };
  EXPECT_EQ(choice(R"({"type": "auto"})"), "auto");
  EXPECT_EQ(choice(R"({"type": "any", "disable_parallel_tool_use": true})"), "required");
  EXPECT_EQ(choice(R"({"type": "none"})"), "none");
  // Without tools, auto means nothing; any still reaches the chat path (which refuses it).
  const AnthropicRequest no_tools = anthropic_to_chat(ojson::parse(
      R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [],
          "tool_choice": {"type": "auto"}})"));
  EXPECT_FALSE(no_tools.chat.contains("tools") || no_tools.chat.contains("tool_choice"));
  // A final assistant turn is continued; a first turn that is the assistant's is fine.
  const AnthropicRequest pre = anthropic_to_chat(ojson::parse(
      R"({"max_tokens": 5, "messages": [{"role": "assistant", "content": "Hi."},
          {"role": "user", "content": "x"}, {"role": "assistant", "content": "The answer is"}]})"));
  EXPECT_EQ(pre.chat["continue_final_message"], true);
  EXPECT_EQ(pre.chat["add_generation_prompt"], false);
  EXPECT_FALSE(pre.stream);
  EXPECT_FALSE(pre.chat.contains("stream"));
  // Structured output.
  const AnthropicRequest so = anthropic_to_chat(ojson::parse(
      R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
          "output_config": {"format": {"type": "json_schema", "schema": {"type": "object"}}}})"));
  EXPECT_EQ(so.chat["response_format"]["type"], "json_schema");
  EXPECT_EQ(so.chat["response_format"]["json_schema"]["schema"], ojson({{"type", "object"}}));
  // count_tokens: no max_tokens needed, sampling fields not read.
  const AnthropicRequest count = anthropic_to_chat(
      ojson::parse(R"({"messages": [{"role": "user", "content": "x"}], "system": "s",
                       "stream": "ignored"})"),
      /*count_only=*/true);
  EXPECT_FALSE(count.chat.contains("max_tokens") || count.chat.contains("stream"));
  EXPECT_EQ(count.chat["messages"].size(), 2u);
}

TEST(AnthropicApi, RefusalsNameTheField) {
  // One user message and `rest`.
  auto with = [](const char* rest) {
    std::string body = R"({"messages": [{"role": "user", "content": "x"}])";
    if (*rest) body.append(", ").append(rest);
    return body.append("}");
  };
  EXPECT_EQ(param_of(with("").c_str()), "max_tokens");
  EXPECT_EQ(param_of(with("").c_str(), true), "(accepted)");
  EXPECT_EQ(param_of(with(R"("max_tokens": 0)").c_str()), "max_tokens");
  EXPECT_EQ(param_of(with(R"("max_tokens": 2.5)").c_str()), "max_tokens");
  EXPECT_EQ(param_of(with(R"("max_tokens": 5, "stream": "yes")").c_str()), "stream");
  EXPECT_EQ(param_of(with(R"("max_tokens": 5, "stop_sequences": "END")").c_str()),
            "stop_sequences");
  EXPECT_EQ(param_of(R"({"max_tokens": 5})"), "messages");
  EXPECT_EQ(param_of(R"({"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]})"),
            "messages[0].role");
  EXPECT_EQ(param_of(R"({"max_tokens": 5, "messages": [{"role": "user", "content": 3}]})"),
            "messages[0].content");
  EXPECT_EQ(param_of(R"({"max_tokens": 5, "messages": [{"role": "user", "content": [
              {"type": "text", "text": "what is this?"},
              {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                           "data": "AA=="}}]}]})"),
            "messages[0].content[1]");
  EXPECT_EQ(param_of(R"({"max_tokens": 5, "messages": [{"role": "user", "content": [
              {"type": "document", "source": {"type": "text", "data": "x"}}]}]})"),
            "messages[0].content[0]");
  EXPECT_EQ(param_of(R"({"max_tokens": 5, "messages": [{"role": "user", "content": [
              {"type": "hologram"}]}]})"),
            "messages[0].content[0]");
  EXPECT_EQ(param_of(R"({"max_tokens": 5, "messages": [{"role": "user", "content": [
              {"type": "tool_result", "tool_use_id": "t", "content": [{"type": "image"}]}]}]})"),
            "messages[0].content[0].content[0]");
  EXPECT_EQ(param_of(R"({"max_tokens": 5, "messages": [{"role": "user", "content": [
              {"type": "tool_use", "id": "t", "name": "w", "input": {}}]}]})"),
            "messages[0].content[0]");
  EXPECT_EQ(param_of(R"({"max_tokens": 5, "messages": [{"role": "assistant", "content": [
              {"type": "tool_use", "id": "t", "name": "w", "input": "{}"}]}]})"),
            "messages[0].content[0]");
  EXPECT_EQ(param_of(R"({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                         "system": [{"type": "image"}]})"),
            "system[0]");
  EXPECT_EQ(param_of(with(R"("max_tokens": 5, "tools": [{"type": "web_search_20250305",
                              "name": "web_search"}])").c_str()),
            "tools[0]");
  EXPECT_EQ(param_of(with(R"("max_tokens": 5, "tools": [{"name": "w"}])").c_str()), "tools[0]");
  EXPECT_EQ(param_of(with(R"("max_tokens": 5, "tool_choice": {"type": "function"})").c_str()),
            "tool_choice");
  EXPECT_EQ(param_of(with(R"("max_tokens": 5, "tool_choice": {"type": "tool"})").c_str()),
            "tool_choice");
  EXPECT_EQ(param_of(with(R"("max_tokens": 5, "output_config": {"format": {"type": "yaml"}})")
                         .c_str()),
            "output_config.format");
}

json chat_result(const json& message, const char* reason) {
  return {{"model", "m"},
          {"choices",
           json::array({{{"index", 0}, {"message", message}, {"finish_reason", reason}}})},
          {"usage", {{"prompt_tokens", 7}, {"completion_tokens", 3}, {"total_tokens", 10}}}};
}

TEST(AnthropicApi, ChatResultBecomesMessage) {
  json m = message_object(
      chat_result({{"role", "assistant"}, {"content", "Hello"}, {"reasoning_content", "hm"}},
                  "stop"),
      "msg_1", nullptr);
  EXPECT_EQ(m["id"], "msg_1");
  EXPECT_EQ(m["type"], "message");
  EXPECT_EQ(m["role"], "assistant");
  EXPECT_EQ(m["model"], "m");
  ASSERT_EQ(m["content"].size(), 2u);
  EXPECT_EQ(m["content"][0], json({{"type", "thinking"}, {"thinking", "hm"}, {"signature", ""}}));
  EXPECT_EQ(m["content"][1], json({{"type", "text"}, {"text", "Hello"}}));
  EXPECT_EQ(m["stop_reason"], "end_turn");
  EXPECT_TRUE(m["stop_sequence"].is_null());
  EXPECT_EQ(m["usage"], json({{"input_tokens", 7}, {"output_tokens", 3}}));

  m = message_object(
      chat_result({{"role", "assistant"},
                   {"content", nullptr},
                   {"tool_calls",
                    json::array({{{"id", "call_9"},
                                  {"type", "function"},
                                  {"function", {{"name", "w"}, {"arguments", "{\"a\":1}"}}}}})}},
                  "tool_calls"),
      "msg_2", nullptr);
  ASSERT_EQ(m["content"].size(), 1u);
  EXPECT_EQ(m["content"][0], json({{"type", "tool_use"},
                                   {"id", "toolu_9"},
                                   {"name", "w"},
                                   {"input", {{"a", 1}}}}));
  EXPECT_EQ(m["stop_reason"], "tool_use");

  m = message_object(chat_result({{"role", "assistant"}, {"content", ""}}, "length"), "msg_3",
                     nullptr);
  EXPECT_TRUE(m["content"].empty());
  EXPECT_EQ(m["stop_reason"], "max_tokens");
  m = message_object(chat_result({{"role", "assistant"}, {"content", "one"}}, "stop"), "msg_4",
                     "END");
  EXPECT_EQ(m["stop_reason"], "stop_sequence");
  EXPECT_EQ(m["stop_sequence"], "END");
}

TEST(AnthropicApi, StopSequenceIsTheOneThatCut) {
  const std::vector<std::string> stops = {"\n", "END", "EN"};
  EXPECT_EQ(matched_stop_sequence("one two", "one twoEND more", stops), "EN");  // shortest
  EXPECT_EQ(matched_stop_sequence("one", "one\ntwo", stops), "\n");
  EXPECT_TRUE(matched_stop_sequence("one END", "one END", stops).is_null());  // end of turn
  EXPECT_TRUE(matched_stop_sequence("one", "other", stops).is_null());
  EXPECT_TRUE(matched_stop_sequence("one", "oneEND", {}).is_null());
  EXPECT_EQ(anthropic_stop_reason("stop", nullptr), "end_turn");
  EXPECT_EQ(anthropic_stop_reason("stop", "END"), "stop_sequence");
  EXPECT_EQ(anthropic_stop_reason("length", nullptr), "max_tokens");
  EXPECT_EQ(anthropic_stop_reason("tool_calls", nullptr), "tool_use");
}

TEST(AnthropicApi, ErrorBodies) {
  EXPECT_EQ(anthropic_error_body(400, "'max_tokens' is required", "max_tokens"),
            json::parse(R"({"type": "error", "error": {"type": "invalid_request_error",
                            "message": "max_tokens: 'max_tokens' is required"}})"));
  EXPECT_EQ(anthropic_error_body(404, "no such model")["error"]["type"], "not_found_error");
  EXPECT_EQ(anthropic_error_body(404, "no such model")["error"]["message"], "no such model");
  EXPECT_EQ(anthropic_error_body(401, "key")["error"]["type"], "authentication_error");
  EXPECT_EQ(anthropic_error_body(413, "big")["error"]["type"], "request_too_large");
  EXPECT_EQ(anthropic_error_body(429, "busy")["error"]["type"], "rate_limit_error");
  EXPECT_EQ(anthropic_error_body(500, "bug")["error"]["type"], "api_error");
  EXPECT_EQ(anthropic_error_body(503, "loading")["error"]["type"], "overloaded_error");
}

json chunk(const json& delta, const json& reason = nullptr) {
  return {{"choices", json::array({{{"index", 0}, {"delta", delta}, {"finish_reason", reason}}})}};
}

std::vector<json> run_stream(AnthropicStream& s, const std::vector<json>& chunks, int64_t out,
                             const json& stop_sequence) {
  std::vector<json> ev = {s.start()};
  for (const json& c : chunks)
    for (json& e : s.on_chunk(c)) ev.push_back(std::move(e));
  for (json& e : s.finish(out, stop_sequence)) ev.push_back(std::move(e));
  return ev;
}

std::vector<std::string> types_of(const std::vector<json>& ev) {
  std::vector<std::string> types;
  for (const json& e : ev) types.push_back(e["type"]);
  return types;
}

TEST(AnthropicApi, ChunksBecomeEvents) {
  AnthropicStream s("msg_1", "m", 4);
  const std::vector<json> ev = run_stream(
      s,
      {chunk({{"role", "assistant"}, {"content", ""}}), chunk({{"reasoning_content", "th"}}),
       chunk({{"reasoning_content", "ink"}}), chunk({{"content", "Hi"}}),
       chunk({{"content", " there"}}),
       chunk({{"tool_calls",
               json::array({{{"index", 0},
                             {"id", "call_1"},
                             {"function", {{"name", "w"}, {"arguments", "{\"a\":"}}}}})}}),
       chunk({{"tool_calls", json::array({{{"index", 0}, {"function", {{"arguments", "1}"}}}}})}}),
       chunk({{"tool_calls", json::array({{{"index", 1},
                                           {"id", "call_2"},
                                           {"function", {{"name", "v"}, {"arguments", "{}"}}}}})}}),
       chunk(json::object(), "tool_calls")},
      6, nullptr);
  const std::vector<std::string> want = {
      "message_start",
      "content_block_start", "content_block_delta", "content_block_delta",  // thinking
      "content_block_stop",
      "content_block_start", "content_block_delta", "content_block_delta",  // text
      "content_block_stop",
      "content_block_start", "content_block_delta", "content_block_delta",  // tool_use w
      "content_block_stop",
      "content_block_start", "content_block_delta", "content_block_stop",  // tool_use v
      "message_delta", "message_stop"};
  EXPECT_EQ(types_of(ev), want);
  const json& start = ev[0]["message"];
  EXPECT_EQ(start["id"], "msg_1");
  EXPECT_EQ(start["model"], "m");
  EXPECT_TRUE(start["content"].empty());
  EXPECT_TRUE(start["stop_reason"].is_null());
  EXPECT_EQ(start["usage"]["input_tokens"], 4);
  EXPECT_EQ(ev[1]["index"], 0);
  EXPECT_EQ(ev[1]["content_block"],
            json({{"type", "thinking"}, {"thinking", ""}, {"signature", ""}}));
  EXPECT_EQ(ev[3]["delta"], json({{"type", "thinking_delta"}, {"thinking", "ink"}}));
  EXPECT_EQ(ev[4]["index"], 0);
  EXPECT_EQ(ev[5]["index"], 1);
  EXPECT_EQ(ev[5]["content_block"], json({{"type", "text"}, {"text", ""}}));
  EXPECT_EQ(ev[6]["delta"], json({{"type", "text_delta"}, {"text", "Hi"}}));
  EXPECT_EQ(ev[9]["index"], 2);
  EXPECT_EQ(ev[9]["content_block"], json({{"type", "tool_use"},
                                          {"id", "toolu_1"},
                                          {"name", "w"},
                                          {"input", json::object()}}));
  EXPECT_EQ(ev[10]["delta"], json({{"type", "input_json_delta"}, {"partial_json", "{\"a\":"}}));
  EXPECT_EQ(ev[11]["delta"]["partial_json"], "1}");
  EXPECT_EQ(ev[12]["index"], 2);
  EXPECT_EQ(ev[13]["index"], 3);
  EXPECT_EQ(ev[13]["content_block"]["id"], "toolu_2");
  EXPECT_EQ(ev[15]["index"], 3);
  EXPECT_EQ(ev[16]["delta"], json({{"stop_reason", "tool_use"}, {"stop_sequence", nullptr}}));
  EXPECT_EQ(ev[16]["usage"], json({{"output_tokens", 6}}));
}

TEST(AnthropicApi, StreamStopsAtSequenceAndAbortIsAnError) {
  AnthropicStream s("msg_1", "m", 4);
  std::vector<json> ev = run_stream(
      s, {chunk({{"content", "one"}}), chunk(json::object(), "stop")}, 2, "END");
  EXPECT_EQ(types_of(ev),
            (std::vector<std::string>{"message_start", "content_block_start",
                                      "content_block_delta", "content_block_stop",
                                      "message_delta", "message_stop"}));
  EXPECT_EQ(ev[4]["delta"], json({{"stop_reason", "stop_sequence"}, {"stop_sequence", "END"}}));
  // Nothing generated: no block at all.
  AnthropicStream empty("msg_2", "m", 4);
  ev = run_stream(empty, {chunk(json::object(), "length")}, 0, nullptr);
  EXPECT_EQ(types_of(ev),
            (std::vector<std::string>{"message_start", "message_delta", "message_stop"}));
  EXPECT_EQ(ev[1]["delta"]["stop_reason"], "max_tokens");
  AnthropicStream aborted("msg_3", "m", 4);
  ev = run_stream(aborted, {chunk({{"content", "o"}}), chunk(json::object(), "abort")}, 1,
                  nullptr);
  EXPECT_EQ(ev.back()["type"], "error");
  EXPECT_EQ(ev.back()["error"]["type"], "overloaded_error");
}

}  // namespace
}  // namespace jinx::server
