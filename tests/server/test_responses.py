"""The Responses API (POST /v1/responses) through the openai client, whose typed models parse
every object and event: the same text as the chat path for the same conversation (greedy),
streamed events that add up to the whole response, structured output, function calls and the
conversation sent back with their results, and 400s for what is not supported.
Run: python -m pytest tests/server/test_responses.py
"""
import json

import jsonschema
import openai
import pytest

MODEL = "smollm2"


def chat_text(client, messages, **kw):
    r = client.chat.completions.create(model=MODEL, messages=messages, **kw)
    return r.choices[0].message.content, r.choices[0].finish_reason


def test_text_matches_chat(client):
    r = client.responses.create(model=MODEL, input="Name a color.", instructions="Be brief.",
                                max_output_tokens=24, temperature=0)
    assert r.object == "response" and r.id.startswith("resp_")
    want, reason = chat_text(client, [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "Name a color."}],
                             max_tokens=24, temperature=0)
    assert r.output_text == want
    assert r.status == ("incomplete" if reason == "length" else "completed")
    msg = [o for o in r.output if o.type == "message"]
    assert len(msg) == 1 and msg[0].role == "assistant" and msg[0].content[0].type == "output_text"
    assert r.usage.output_tokens > 0 and r.usage.input_tokens > 5
    assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens
    assert r.instructions == "Be brief." and r.max_output_tokens == 24


def test_item_list_input_and_length(client):
    items = [{"role": "developer", "content": "Answer in one word."},
             {"type": "message", "role": "user",
              "content": [{"type": "input_text", "text": "Capital of "},
                          {"type": "input_text", "text": "France?"}]}]
    r = client.responses.create(model=MODEL, input=items, max_output_tokens=3, temperature=0,
                                extra_body={"ignore_eos": True})
    want, _ = chat_text(client, [{"role": "system", "content": "Answer in one word."},
                                 {"role": "user", "content": "Capital of France?"}],
                        max_tokens=3, temperature=0, extra_body={"ignore_eos": True})
    assert r.output_text == want
    assert r.status == "incomplete" and r.incomplete_details.reason == "max_output_tokens"
    assert r.usage.output_tokens == 3


def test_stream_events_add_up(client):
    kw = dict(model=MODEL, input="Write a short sentence about rain.", max_output_tokens=32,
              temperature=0)
    whole = client.responses.create(**kw)
    events = list(client.responses.create(stream=True, **kw))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] in ("response.completed", "response.incomplete")
    assert [e.sequence_number for e in events] == list(range(len(events)))
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == whole.output_text
    done = [e for e in events if e.type == "response.output_text.done"]
    assert len(done) == 1 and done[0].text == text
    for t in ("response.output_item.added", "response.content_part.added",
              "response.content_part.done", "response.output_item.done"):
        assert types.count(t) == 1, t
    assert types.index("response.output_item.added") < types.index("response.output_text.delta")
    final = events[-1].response
    assert final.output_text == text and final.status == whole.status
    assert final.usage.output_tokens == whole.usage.output_tokens


SCHEMA = {"type": "object",
          "properties": {"city": {"type": "string", "maxLength": 20},
                         "population": {"type": "integer", "minimum": 0}},
          "required": ["city", "population"], "additionalProperties": False}


def test_json_schema_format(client):
    r = client.responses.create(
        model=MODEL, input="Describe a city as JSON.", max_output_tokens=60, temperature=0.7,
        text={"format": {"type": "json_schema", "name": "city", "schema": SCHEMA,
                         "strict": True}},
        extra_body={"seed": 4})
    assert r.status == "completed", r.output_text
    jsonschema.validate(json.loads(r.output_text), SCHEMA)


WEATHER = {"type": "function", "name": "get_weather", "description": "Weather of a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                          "required": ["city"]}}


def test_function_call_round_trip(client):
    r = client.responses.create(model=MODEL, input="What is the weather in Paris?",
                                tools=[WEATHER], max_output_tokens=40, temperature=0,
                                tool_choice={"type": "function", "name": "get_weather"})
    calls = [o for o in r.output if o.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather", r.output
    args = json.loads(calls[0].arguments)
    assert isinstance(args.get("city"), str)
    assert calls[0].call_id and calls[0].id.startswith("fc_")
    # The client runs the tool and sends the conversation back with its result.
    follow = [{"role": "user", "content": "What is the weather in Paris?"},
              {"type": "function_call", "call_id": calls[0].call_id, "name": "get_weather",
               "arguments": calls[0].arguments},
              {"type": "function_call_output", "call_id": calls[0].call_id,
               "output": "Sunny, 21 C"}]
    r2 = client.responses.create(model=MODEL, input=follow, tools=[WEATHER],
                                 max_output_tokens=24, temperature=0, tool_choice="none")
    assert r2.output_text
    # Streamed, a call arrives as a function_call item with its arguments.
    events = list(client.responses.create(
        model=MODEL, input="Weather in Rome?", tools=[WEATHER], max_output_tokens=40,
        temperature=0, tool_choice={"type": "function", "name": "get_weather"}, stream=True))
    done = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert len(done) == 1 and isinstance(json.loads(done[0].arguments).get("city"), str)
    item = [e.item for e in events if e.type == "response.output_item.done"][-1]
    assert item.type == "function_call" and item.name == "get_weather"


@pytest.mark.parametrize("body,field", [
    ({"input": "hi", "previous_response_id": "resp_123"}, "previous_response_id"),
    ({"input": "hi", "background": True}, "background"),
    ({}, "input"),
    ({"input": 5}, "input"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
     "input[0]"),
    ({"input": [{"type": "web_search_call"}]}, "input[0]"),
    ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
    ({"input": "hi", "text": {"format": {"type": "xml"}}}, "text.format"),
    ({"input": "hi", "max_output_tokens": -1}, "max_output_tokens"),
    ({"input": "hi", "temperature": "hot"}, "temperature"),
])
def test_unsupported_is_400(client, body, field):
    with pytest.raises(openai.BadRequestError) as e:
        client.post("/responses", body={"model": MODEL, **body}, cast_to=object)
    assert e.value.body.get("param") == field, e.value.body
