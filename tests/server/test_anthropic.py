"""Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens) through the official
anthropic client, whose typed models parse every object and event: the same text as the chat
path for the same conversation (greedy), streamed events that add up to the whole message, stop
sequences and max_tokens as stop reasons, forced tool calls as tool_use blocks and the
conversation sent back with their results, token counts equal to the chat path's prompt tokens,
and errors in Anthropic's shape.
Run: python -m pytest tests/server/test_anthropic.py
"""
import json
import urllib.error
import urllib.request

import anthropic
import pytest

from conftest import API_KEY

MODEL = "smollm2"
# The anthropic 2.x client has no sampling arguments (temperature, top_p, top_k); the API and
# older clients still send them, so they go in the body.
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def claude(server):
    # The key goes as x-api-key (the anthropic client's way).
    return anthropic.Anthropic(base_url=server.url, api_key=API_KEY, max_retries=0, timeout=300)


def chat(client, messages, **kw):
    return client.chat.completions.create(model=MODEL, messages=messages, **kw)


def text_of(message):
    return "".join(b.text for b in message.content if b.type == "text")


def test_text_matches_chat(claude, client):
    m = claude.messages.create(model=MODEL, system="Be brief.", max_tokens=24, extra_body=GREEDY,
                               messages=[{"role": "user", "content": "Name a color."}])
    assert m.type == "message" and m.role == "assistant" and m.id.startswith("msg_")
    assert m.model == MODEL
    want = chat(client, [{"role": "system", "content": "Be brief."},
                         {"role": "user", "content": "Name a color."}],
                max_tokens=24, temperature=0)
    assert [b.type for b in m.content] == ["text"]
    assert m.content[0].text == want.choices[0].message.content
    assert m.stop_reason == ("max_tokens" if want.choices[0].finish_reason == "length"
                             else "end_turn")
    assert m.stop_sequence is None
    assert m.usage.input_tokens == want.usage.prompt_tokens
    assert m.usage.output_tokens == want.usage.completion_tokens


def test_blocks_and_prefill_match_chat(claude, client):
    # System and user text as blocks (cache_control ignored), and a final assistant turn that
    # the reply continues (the chat path's continue_final_message).
    m = claude.messages.create(
        model=MODEL, max_tokens=12, extra_body=GREEDY,
        system=[{"type": "text", "text": "You answer in one sentence.",
                 "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "Describe the sea."}]},
                  {"role": "assistant", "content": "The sea is"}])
    want = chat(client, [{"role": "system", "content": "You answer in one sentence."},
                         {"role": "user", "content": "Describe the sea."},
                         {"role": "assistant", "content": "The sea is"}],
                max_tokens=12, temperature=0,
                extra_body={"continue_final_message": True, "add_generation_prompt": False})
    assert text_of(m) == want.choices[0].message.content


def test_max_tokens(claude):
    m = claude.messages.create(model=MODEL, max_tokens=3,
                               messages=[{"role": "user", "content": "Tell me a long story."}],
                               extra_body={"ignore_eos": True, **GREEDY})
    assert m.stop_reason == "max_tokens" and m.usage.output_tokens == 3
    assert text_of(m)


KW = dict(model=MODEL, max_tokens=32, extra_body=GREEDY,
          messages=[{"role": "user", "content": "Write a short sentence about rain."}])


def test_stream_events_add_up(claude):
    whole = claude.messages.create(**KW)
    events = list(claude.messages.create(stream=True, **KW))
    types = [e.type for e in events]
    assert types[0] == "message_start" and types[-2:] == ["message_delta", "message_stop"]
    start = events[0].message
    assert start.id.startswith("msg_") and start.content == [] and start.stop_reason is None
    assert start.usage.input_tokens == whole.usage.input_tokens
    assert types.count("content_block_start") == 1 and types.count("content_block_stop") == 1
    assert types.index("content_block_start") < types.index("content_block_delta")
    assert types.index("content_block_stop") == len(types) - 3
    deltas = [e for e in events if e.type == "content_block_delta"]
    assert all(e.index == 0 and e.delta.type == "text_delta" for e in deltas)
    assert "".join(e.delta.text for e in deltas) == text_of(whole)
    assert events[-2].delta.stop_reason == whole.stop_reason
    assert events[-2].usage.output_tokens == whole.usage.output_tokens
    # The client's own accumulation gives the same message.
    with claude.messages.stream(**KW) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == text_of(whole) == text_of(final)
    assert final.stop_reason == whole.stop_reason
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_stop_sequences(claude):
    whole = claude.messages.create(**KW)
    text = text_of(whole)
    words = text.split()
    assert len(words) >= 4, text
    stop = " " + words[2]  # stops before the third word
    m = claude.messages.create(stop_sequences=["qqqzzz", stop], **KW)
    assert m.stop_reason == "stop_sequence" and m.stop_sequence == stop
    assert text_of(m) == text[:text.index(stop)]
    events = list(claude.messages.create(stream=True, stop_sequences=[stop], **KW))
    assert events[-2].delta.stop_reason == "stop_sequence"
    assert events[-2].delta.stop_sequence == stop
    # A stop sequence that never appears: the turn ends as without one.
    m = claude.messages.create(stop_sequences=["qqqzzz"], **KW)
    assert m.stop_reason == whole.stop_reason and m.stop_sequence is None


WEATHER = {"name": "get_weather", "description": "Weather of a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


def test_forced_tool_use_round_trip(claude):
    ask = {"role": "user", "content": "What is the weather in Paris?"}
    m = claude.messages.create(model=MODEL, max_tokens=40, extra_body=GREEDY, messages=[ask],
                               tools=[WEATHER], tool_choice={"type": "tool", "name": "get_weather"})
    uses = [b for b in m.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather", m.content
    assert isinstance(uses[0].input, dict) and isinstance(uses[0].input.get("city"), str)
    assert uses[0].id.startswith("toolu_") and m.stop_reason == "tool_use"
    # The client runs the tool and sends the conversation back with its result.
    follow = [ask, {"role": "assistant", "content": [b.model_dump() for b in m.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": uses[0].id,
                                            "content": [{"type": "text", "text": "Sunny, 21 C"}]}]}]
    m2 = claude.messages.create(model=MODEL, max_tokens=24, extra_body=GREEDY, messages=follow,
                                tools=[WEATHER], tool_choice={"type": "none"})
    assert text_of(m2) and m2.stop_reason in ("end_turn", "max_tokens")
    # Streamed, the call arrives as a tool_use block with its input as JSON deltas.
    with claude.messages.stream(model=MODEL, max_tokens=40, extra_body=GREEDY,
                                messages=[{"role": "user", "content": "Weather in Rome?"}],
                                tools=[WEATHER],
                                tool_choice={"type": "tool", "name": "get_weather"}) as s:
        events = list(s)
        final = s.get_final_message()
    assert any(e.type == "content_block_delta" and e.delta.type == "input_json_delta"
               for e in events)
    uses = [b for b in final.content if b.type == "tool_use"]
    assert len(uses) == 1 and isinstance(uses[0].input.get("city"), str)
    assert final.stop_reason == "tool_use"


def test_count_tokens_matches_chat(claude, client):
    msgs = [{"role": "user", "content": "Hello there, how are you?"}]
    n = claude.messages.count_tokens(model=MODEL, system="Be brief.", messages=msgs)
    want = chat(client, [{"role": "system", "content": "Be brief."}, *msgs], max_tokens=1)
    assert n.input_tokens == want.usage.prompt_tokens
    # Tools are part of the prompt.
    n = claude.messages.count_tokens(model=MODEL, messages=msgs, tools=[WEATHER])
    want = chat(client, msgs, max_tokens=1,
                tools=[{"type": "function",
                        "function": {"name": WEATHER["name"],
                                     "description": WEATHER["description"],
                                     "parameters": WEATHER["input_schema"]}}])
    assert n.input_tokens == want.usage.prompt_tokens


def user(text="hi"):
    return [{"role": "user", "content": text}]


@pytest.mark.parametrize("path,body,field", [
    ("/v1/messages", {"messages": user()}, "max_tokens"),
    ("/v1/messages", {"messages": user(), "max_tokens": 0}, "max_tokens"),
    ("/v1/messages", {"max_tokens": 5}, "messages"),
    ("/v1/messages", {"max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
     "messages[0].role"),
    ("/v1/messages", {"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": "iVBORw0KGgo="}}]}]}, "messages[0].content[0]"),
    ("/v1/messages", {"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "read this"},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain",
                                        "data": "x"}}]}]}, "messages[0].content[1]"),
    ("/v1/messages", {"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "sparkle"}]}]}, "messages[0].content[0]"),
    ("/v1/messages", {"max_tokens": 5, "messages": user(),
                      "tools": [{"type": "web_search_20250305", "name": "web_search"}]},
     "tools[0]"),
    ("/v1/messages", {"max_tokens": 5, "messages": user(), "tool_choice": {"type": "magic"}},
     "tool_choice"),
    ("/v1/messages", {"max_tokens": 5, "messages": user(), "temperature": "hot"},
     "temperature"),
    ("/v1/messages/count_tokens", {"messages": [{"role": "user", "content": [
        {"type": "image"}]}]}, "messages[0].content[0]"),
])
def test_malformed_is_400(claude, path, body, field):
    with pytest.raises(anthropic.BadRequestError) as e:
        claude.post(path, body={"model": MODEL, **body}, cast_to=object)
    assert e.value.status_code == 400
    err = e.value.body
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error", err
    assert err["error"]["message"].startswith(field + ": "), err


def test_other_errors_in_anthropic_shape(claude, server):
    with pytest.raises(anthropic.NotFoundError) as e:
        claude.messages.create(model="claude-nonexistent", max_tokens=5, messages=user())
    assert e.value.body["type"] == "error"
    assert e.value.body["error"]["type"] == "not_found_error"
    bad = anthropic.Anthropic(base_url=server.url, api_key="wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as e:
        bad.messages.create(model=MODEL, max_tokens=5, messages=user())
    assert e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError) as e:  # not JSON at all
        claude.post("/v1/messages", body="{nope", cast_to=object,
                    options={"headers": {"content-type": "application/json"}})
    assert e.value.body["error"]["type"] == "invalid_request_error"


def test_bearer_key_and_openai_shape_elsewhere(claude, server):
    # The OpenAI form of the key works here too; other routes keep OpenAI's error shape.
    bearer = anthropic.Anthropic(base_url=server.url, auth_token=API_KEY, max_retries=0)
    assert bearer.messages.count_tokens(model=MODEL, messages=user()).input_tokens > 0
    req = urllib.request.Request(server.url + "/v1/chat/completions", data=b"{}",
                                 headers={"x-api-key": API_KEY,
                                          "Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    body = json.loads(e.value.read())
    assert e.value.code == 400 and "param" in body["error"], body


def test_still_serving(claude, server):
    m = claude.messages.create(model=MODEL, max_tokens=4, extra_body=GREEDY, messages=user())
    assert m.usage.output_tokens > 0
    with urllib.request.urlopen(server.url + "/health", timeout=5) as r:
        assert r.status == 200
