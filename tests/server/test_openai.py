"""`jinx serve` driven by the official openai client (and raw HTTP for what the client hides).

Run: python -m pytest tests/server/test_openai.py (needs openai, jsonschema, httpx).
"""
import asyncio
import json
import math
import re
import socket
import time

import httpx
import jsonschema
import openai
import pytest

from conftest import API_KEY, ROOT, Server
from conftest import MODEL as MODEL_PATH

MODEL = "smollm2"
HDR = {"Authorization": f"Bearer {API_KEY}"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {"name": "get_time", "description": "Current time in a timezone",
                 "parameters": {"type": "object", "properties": {"tz": {"type": "string"}},
                                "required": ["tz"]}},
}


def chat(client, content, **kw):
    kw.setdefault("max_tokens", 24)
    return client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": content}], **kw)


def metrics(server):
    text = httpx.get(server.url + "/metrics").text
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def metric(m, prefix):
    return sum(v for k, v in m.items() if k.startswith(prefix))


# --- basics --------------------------------------------------------------------------------

def test_health_and_models(server, client):
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    models = client.models.list()
    assert [m.id for m in models.data] == [MODEL]


def test_chat_non_stream(client):
    # Greedy, this prompt's tokens win by >= 0.6 logits in llama.cpp on the same file (" Paris"
    # by 3.5); the bare question's first token is a 0.06 near-tie ("L" vs "The") that flips
    # with any rounding change.
    r = chat(client, "What is the capital of France? Answer in one word.", temperature=0)
    c = r.choices[0]
    assert c.message.role == "assistant"
    assert "Paris" in c.message.content
    assert c.finish_reason in ("stop", "length")
    assert r.usage.prompt_tokens > 5
    assert r.usage.completion_tokens >= 1
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


@pytest.mark.parametrize("params", [dict(temperature=0), dict(temperature=0.9, seed=1234,
                                                               top_p=0.9, top_k=40)])
def test_chat_stream_equals_non_stream(client, params):
    kw = dict(max_tokens=32, **{k: v for k, v in params.items() if k != "top_k"})
    extra = {"top_k": params["top_k"]} if "top_k" in params else None
    # A first request fills the prefix cache; the two compared then both reuse it and compute the
    # same remaining rows. (A cache hit changes how many prompt rows one matmul takes, and the
    # many-row int8 kernel rounds differently from the few-row one, so the first request's
    # tokens may differ from later ones, as in vLLM with prefix caching.)
    chat(client, "Tell me about the moon.", extra_body=extra, **kw)
    full = chat(client, "Tell me about the moon.", extra_body=extra, **kw)
    stream = chat(client, "Tell me about the moon.", stream=True,
                  stream_options={"include_usage": True}, extra_body=extra, **kw)
    text, reasons, usage, roles = "", [], None, []
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for ch in chunk.choices:
            if ch.delta.role:
                roles.append(ch.delta.role)
            text += ch.delta.content or ""
            if ch.finish_reason:
                reasons.append(ch.finish_reason)
    assert roles == ["assistant"]
    assert text == full.choices[0].message.content
    assert reasons == [full.choices[0].finish_reason]
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens


def test_completions_stream_and_non_stream(client):
    kw = dict(model=MODEL, prompt="The three primary colors are", max_tokens=16, temperature=0)
    full = client.completions.create(**kw)
    text = "".join(c.choices[0].text for c in client.completions.create(stream=True, **kw)
                   if c.choices)
    assert full.choices[0].text and text == full.choices[0].text
    assert full.object == "text_completion"
    echo = client.completions.create(echo=True, **kw)
    assert echo.choices[0].text == kw["prompt"] + full.choices[0].text


# --- prompt logprobs: echo + logprobs (OpenAI's legacy form, lm-eval-harness' loglikelihood)
# and vLLM's prompt_logprobs

def test_prompt_logprobs_rank_transformers_greedy_tokens_first(server):
    # transformers' greedy continuation (fixtures/smollm2/transformers.json) fed back as the
    # prompt: each of its tokens was transformers' argmax, so it ranks first here too, except
    # at near-ties.
    with open(ROOT / "tests/fixtures/smollm2/transformers.json") as f:
        p = json.load(f)["prompts"][0]
    greedy, margins = p["greedy_tokens"][:12], p["greedy_top2_margins"][:12]
    ids = p["prompt_ids"] + greedy
    r = post(server, "/v1/completions", {"model": MODEL, "prompt": ids, "max_tokens": 1,
                                         "temperature": 0, "prompt_logprobs": 2})
    assert r.status_code == 200, r.text
    pl = r.json()["choices"][0]["prompt_logprobs"]
    assert len(pl) == len(ids) and pl[0] is None
    n_checked = 0
    for k, (tok, margin) in enumerate(zip(greedy, margins)):
        entry = pl[len(p["prompt_ids"]) + k]
        assert str(tok) in entry and len(entry) <= 3
        assert entry[str(tok)]["logprob"] <= 0
        if margin > 0.5:  # int8 activations here, fp32 there: near-ties may swap
            assert entry[str(tok)]["rank"] == 1, (k, entry)
            n_checked += 1
    assert n_checked >= 7


def test_echo_logprobs_score_the_prompt(client):
    kw = dict(model=MODEL, echo=True, logprobs=1, max_tokens=0, temperature=0)
    scores = {}
    for city in ("Paris", "London"):
        prompt = f"The capital of France is {city}"
        r = client.completions.create(prompt=prompt, **kw)
        c = r.choices[0]
        assert c.text == prompt and r.usage.completion_tokens == 0
        lp = c.logprobs
        assert "".join(lp.tokens) == prompt
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        assert all(x <= 0 for x in lp.token_logprobs[1:])
        assert lp.text_offset == sorted(lp.text_offset) and lp.text_offset[0] == 0
        scores[city] = lp.token_logprobs[-1]
    assert scores["Paris"] > scores["London"] + 1.0
    # The same numbers as vLLM's prompt_logprobs form, and a generated token after them.
    r = client.completions.create(model=MODEL, prompt="The capital of France is Paris", echo=True,
                                  logprobs=1, max_tokens=2, temperature=0,
                                  extra_body={"prompt_logprobs": 0})
    c = r.choices[0]
    n_prompt = r.usage.prompt_tokens
    assert len(c.logprobs.tokens) == n_prompt + 2
    assert math.isclose(c.logprobs.token_logprobs[n_prompt - 1], scores["Paris"], abs_tol=1e-5)
    vllm = c.model_extra["prompt_logprobs"]
    ids = [int(next(k for k, v in e.items() if math.isclose(v["logprob"], x, abs_tol=1e-6)))
           for e, x in zip(vllm[1:], c.logprobs.token_logprobs[1:n_prompt])]
    assert len(ids) == n_prompt - 1


def test_echo_logprobs_streamed(client):
    kw = dict(model=MODEL, prompt="One, two, three,", echo=True, logprobs=0, max_tokens=4,
              temperature=0)
    whole = client.completions.create(**kw).choices[0].logprobs
    tokens, lps = [], []
    for chunk in client.completions.create(stream=True, **kw):
        for ch in chunk.choices:
            if ch.logprobs:
                tokens += ch.logprobs.tokens
                lps += ch.logprobs.token_logprobs
    assert tokens == whole.tokens and lps == whole.token_logprobs


def test_chat_prompt_logprobs(client):
    r = chat(client, "Hi", max_tokens=2, extra_body={"prompt_logprobs": 1})
    pl = r.model_extra["prompt_logprobs"]
    assert pl[0] is None and len(pl) == r.usage.prompt_tokens
    assert all(1 <= len(e) <= 2 for e in pl[1:])


@pytest.mark.parametrize("body,words", [
    ({"prompt": "hi", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "hi", "max_tokens": 0, "echo": True, "stream": True}, "stream"),
    ({"prompt": "hi", "prompt_logprobs": 1, "stream": True}, "stream"),
    ({"prompt": "hi", "prompt_logprobs": 21}, "prompt_logprobs"),
    ({"prompt": "hi", "prompt_logprobs": "x"}, "prompt_logprobs"),
])
def test_bad_prompt_logprobs_400(server, body, words):
    r = post(server, "/v1/completions", dict(body, model=MODEL))
    assert r.status_code == 400 and words in r.json()["error"]["message"], r.text


def test_vllm_sampling_fields(client, server):
    kw = dict(model=MODEL, prompt="Tell me about the sea.", max_tokens=40, temperature=0)
    cut = client.completions.create(stop=["."], **kw).choices[0]
    kept = client.completions.create(stop=["."], extra_body={"include_stop_str_in_output": True},
                                     **kw).choices[0]
    assert cut.finish_reason == "stop" and "." not in cut.text
    assert kept.text == cut.text + "."
    # Stop strings count from min_tokens on (vLLM): a "." in the first tokens no longer ends it.
    first = client.completions.create(stop=["."], **kw)
    late = client.completions.create(stop=["."], extra_body={"min_tokens": 40}, **kw)
    assert late.usage.completion_tokens == 40, late.choices[0].text
    if first.usage.completion_tokens < 40:
        assert late.choices[0].text.startswith(first.choices[0].text + ".")
    # min_tokens: the first greedy token as a stop token ends the reply at once, unless
    # min_tokens holds it back.
    first = client.completions.create(**dict(kw, max_tokens=1, logprobs=0)).choices[0]
    tid = httpx.post(server.url + "/tokenize", headers=HDR,
                     json={"prompt": first.text, "add_special_tokens": False}).json()["tokens"][0]
    r = client.completions.create(extra_body={"stop_token_ids": [tid]}, **kw)
    assert r.usage.completion_tokens == 1
    r = client.completions.create(extra_body={"stop_token_ids": [tid], "min_tokens": 6}, **kw)
    assert r.usage.completion_tokens >= 6
    # allowed_token_ids: " yes" / " no" only.
    ids = [httpx.post(server.url + "/tokenize", headers=HDR,
                      json={"prompt": w, "add_special_tokens": False}).json()["tokens"][0]
           for w in (" yes", " no")]
    r = client.completions.create(model=MODEL, prompt="Is it?", max_tokens=5, temperature=1.0,
                                  seed=1, extra_body={"allowed_token_ids": ids})
    assert re.fullmatch(r"( yes| no){5}", r.choices[0].text), r.choices[0].text


def test_bad_words(client):
    kw = dict(model=MODEL, prompt="The capital of France is", max_tokens=8, temperature=0)
    free = client.completions.create(**kw).choices[0].text
    word = free.split()[0]
    banned = client.completions.create(**kw, extra_body={"bad_words": [word]}).choices[0].text
    assert banned != free and banned.split()[:1] != [word], (free, banned)


def test_truncate_prompt_tokens(server, client):
    text = "one two three four five six seven eight nine ten"
    ids = post(server, "/tokenize", {"prompt": text}).json()["tokens"]
    r = client.completions.create(model=MODEL, prompt=text, max_tokens=6, temperature=0,
                                  extra_body={"truncate_prompt_tokens": 4})
    assert r.usage.prompt_tokens == 4
    same = client.completions.create(model=MODEL, prompt=ids[-4:], max_tokens=6, temperature=0)
    assert r.choices[0].text == same.choices[0].text
    assert post(server, "/v1/completions", {"model": MODEL, "prompt": text,
                                             "truncate_prompt_tokens": 0}).status_code == 400


def test_continue_final_message(server, client):
    msgs = [{"role": "user", "content": "List three fruits."},
            {"role": "assistant", "content": "Apple, banana,"}]

    def rendered(extra):
        ids = post(server, "/tokenize", dict({"messages": msgs}, **extra)).json()["tokens"]
        return post(server, "/detokenize", {"tokens": ids}).json()["prompt"]

    closed = rendered({"add_generation_prompt": False})
    cont = rendered({"continue_final_message": True})
    # transformers' rule: cut right after the final message's text, so the turn stays open.
    assert cont.endswith("Apple, banana,") and closed.startswith(cont) and closed != cont
    assert not closed.endswith("assistant\n")  # no new turn opened either
    opened = rendered({})
    assert opened.startswith(closed) and len(opened) > len(closed)
    r = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=6, temperature=0,
                                       extra_body={"continue_final_message": True,
                                                   "add_generation_prompt": False})
    assert r.choices[0].message.content
    bad = post(server, "/v1/chat/completions",
               {"model": MODEL, "messages": msgs, "continue_final_message": True,
                "add_generation_prompt": True})
    assert bad.status_code == 400 and "continue_final_message" in bad.text


@pytest.mark.parametrize("extra,words", [
    ({"min_tokens": 50, "max_tokens": 10}, "min_tokens"),
    ({"min_tokens": -1}, "min_tokens"),
    ({"allowed_token_ids": [10**9]}, "allowed_token_ids"),
    ({"allowed_token_ids": "x"}, "allowed_token_ids"),
    ({"stop_token_ids": [-1]}, "stop_token_ids"),
    ({"include_stop_str_in_output": "yes"}, "include_stop_str_in_output"),
    ({"bad_words": "x"}, "bad_words"),
    ({"bad_words": [" "]}, "bad_words"),
    ({"bad_words": [5]}, "bad_words"),
    ({"truncate_prompt_tokens": -2}, "truncate_prompt_tokens"),
])
def test_bad_vllm_sampling_fields_400(server, extra, words):
    r = post(server, "/v1/completions", dict({"model": MODEL, "prompt": "hi"}, **extra))
    assert r.status_code == 400 and words in r.json()["error"]["message"], r.text


def test_completions_token_prompt_and_batch(client):
    ids = httpx.post(client.base_url.join("/tokenize").__str__().replace("/v1", ""), headers=HDR,
                     json={"prompt": "Once upon a time"}).json()["tokens"]
    by_ids = client.completions.create(model=MODEL, prompt=ids, max_tokens=8, temperature=0)
    by_text = client.completions.create(model=MODEL, prompt="Once upon a time", max_tokens=8,
                                        temperature=0)
    assert by_ids.choices[0].text == by_text.choices[0].text
    batch = client.completions.create(model=MODEL, prompt=["Once upon a time", "1, 2, 3,"],
                                      max_tokens=8, temperature=0)
    assert [c.index for c in batch.choices] == [0, 1]
    assert batch.choices[0].text == by_text.choices[0].text


def test_n_choices(client):
    r = chat(client, "Name a fruit.", n=3, temperature=1.0, seed=7, max_tokens=12)
    assert sorted(c.index for c in r.choices) == [0, 1, 2]
    assert all(c.message.content for c in r.choices)
    again = chat(client, "Name a fruit.", n=3, temperature=1.0, seed=7, max_tokens=12)
    assert [c.message.content for c in again.choices] == [c.message.content for c in r.choices]
    # Streamed: every index gets its own finish_reason.
    reasons = {}
    for chunk in chat(client, "Name a fruit.", n=3, stream=True, max_tokens=12):
        for ch in chunk.choices:
            if ch.finish_reason:
                reasons[ch.index] = ch.finish_reason
    assert sorted(reasons) == [0, 1, 2]


def test_stop_strings(client):
    base = chat(client, "Count from 1 to 20, separated by commas.", temperature=0, max_tokens=40)
    text = base.choices[0].message.content
    words = re.findall(r"[0-9A-Za-z]+", text)
    assert len(words) >= 4, text
    stop = words[3]
    r = chat(client, "Count from 1 to 20, separated by commas.", temperature=0, max_tokens=40,
             stop=[stop])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == text[:text.index(stop)]
    # Streaming holds back text that might start a stop string and never emits the stop.
    streamed = "".join(c.choices[0].delta.content or "" for c in chat(
        client, "Count from 1 to 20, separated by commas.", temperature=0, max_tokens=40,
        stop=[stop], stream=True) if c.choices)
    assert streamed == r.choices[0].message.content


def test_max_tokens_and_length(client):
    r = chat(client, "Write a long story about a dragon.", max_tokens=5, temperature=0)
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 5
    r = client.chat.completions.create(model=MODEL, max_completion_tokens=3, temperature=0,
                                       messages=[{"role": "user", "content": "Hi there"}])
    assert r.usage.completion_tokens <= 3


def test_logprobs(client):
    r = chat(client, "Say hello.", temperature=0, max_tokens=8, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    for e in content:
        assert len(e.top_logprobs) == 3
        assert e.logprob <= 0
        lps = [t.logprob for t in e.top_logprobs]
        assert lps == sorted(lps, reverse=True)
        assert sum(math.exp(x) for x in lps) <= 1.0 + 1e-4
        # Greedy picks the most likely token.
        assert e.top_logprobs[0].token == e.token
        assert abs(e.top_logprobs[0].logprob - e.logprob) < 1e-5
        assert bytes(e.bytes).decode("utf-8", "replace") == e.token
    c = client.completions.create(model=MODEL, prompt="Hello", max_tokens=4, logprobs=2,
                                  temperature=0)
    lp = c.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 4
    assert "".join(lp.tokens) == c.choices[0].text


def test_sampling_parameters_accepted(client):
    r = chat(client, "Pick a color.", temperature=0.7, top_p=0.8, seed=3, presence_penalty=0.5,
             frequency_penalty=0.5, logit_bias={"28": -100},
             extra_body={"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1})
    assert r.choices[0].message.content is not None


def test_logit_bias_forces_token(client):
    tok = httpx.post(f"{client.base_url}".replace("/v1/", "/tokenize"), headers=HDR,
                     json={"prompt": " banana", "add_special_tokens": False}).json()["tokens"]
    r = chat(client, "Say something.", temperature=0, max_tokens=3,
             logit_bias={str(tok[0]): 100})
    ids_text = r.choices[0].message.content
    assert ids_text.startswith(httpx.post(f"{client.base_url}".replace("/v1/", "/detokenize"),
                                          headers=HDR, json={"tokens": tok[:1]}).json()["prompt"])


# --- tools and structured output -----------------------------------------------------------

def test_tool_choice_required_gives_valid_call(client):
    r = chat(client, "What is the weather in Paris?", tools=[WEATHER_TOOL, TIME_TOOL],
             tool_choice="required", max_tokens=60, temperature=0)
    c = r.choices[0]
    assert c.finish_reason == "tool_calls"
    assert c.message.tool_calls, c.message
    call = c.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    tool = {"get_weather": WEATHER_TOOL, "get_time": TIME_TOOL}[call.function.name]
    args = json.loads(call.function.arguments)
    jsonschema.validate(args, tool["function"]["parameters"])


def test_named_tool_choice_and_stream(client):
    choice = {"type": "function", "function": {"name": "get_time"}}
    r = chat(client, "What time is it in Tokyo?", tools=[WEATHER_TOOL, TIME_TOOL],
             tool_choice=choice, max_tokens=40, temperature=0)
    call = r.choices[0].message.tool_calls[0]
    assert call.function.name == "get_time"
    jsonschema.validate(json.loads(call.function.arguments),
                        TIME_TOOL["function"]["parameters"])
    # Streamed: tool-call deltas accumulate to the same call.
    name, args, reason = "", "", None
    for chunk in chat(client, "What time is it in Tokyo?", tools=[WEATHER_TOOL, TIME_TOOL],
                      tool_choice=choice, max_tokens=40, temperature=0, stream=True):
        for ch in chunk.choices:
            for d in ch.delta.tool_calls or []:
                name += d.function.name or ""
                args += d.function.arguments or ""
            reason = ch.finish_reason or reason
    assert name == "get_time" and json.loads(args) == json.loads(call.function.arguments)
    assert reason == "tool_calls"


def test_tool_result_turn(client):
    messages = [
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function",
             "function": {"name": "get_weather",
                          "arguments": "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "{\"temperature\": 21}"},
    ]
    r = client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL],
                                       max_tokens=30, temperature=0)
    assert r.choices[0].finish_reason in ("stop", "length", "tool_calls")


SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 40},
        "age": {"type": "integer"},
        "languages": {"type": "array", "items": {"type": "string", "maxLength": 20},
                      "maxItems": 3},
        "role": {"enum": ["admin", "user", "guest"]},
    },
    "required": ["name", "age", "languages", "role"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_json_schema_output_validates(client, seed):
    rf = {"type": "json_schema", "json_schema": {"name": "person", "strict": True,
                                                 "schema": SCHEMA}}
    r = chat(client, "Describe a software developer as JSON.", response_format=rf,
             max_tokens=160, temperature=0.8, seed=seed)
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    doc = json.loads(r.choices[0].message.content)
    jsonschema.validate(doc, SCHEMA)
    assert list(doc) == list(SCHEMA["properties"])  # in the schema's order


def test_json_object_output_parses(client):
    r = chat(client, "Give me a JSON object describing a cat.",
             response_format={"type": "json_object"}, max_tokens=120, temperature=0.7, seed=5)
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(r.choices[0].message.content), dict)
    else:  # length: still a valid prefix of an object
        assert r.choices[0].message.content.lstrip().startswith("{")


# Bounds, patterns and formats (pydantic's Field(ge=..., le=...), constr(pattern=...), date,
# UUID4): every output is in range and matches.
EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "format": "uuid"},
        "day": {"type": "string", "format": "date"},
        "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
        "seats": {"type": "integer", "minimum": 1, "maximum": 40},
        "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 500},
    },
    "required": ["id", "day", "code", "seats", "price"],
    "additionalProperties": False,
}


@pytest.mark.parametrize("seed", [1, 2])
def test_json_schema_bounds_patterns_formats(client, seed):
    rf = {"type": "json_schema", "json_schema": {"name": "event", "schema": EVENT_SCHEMA}}
    r = chat(client, "Describe a concert booking as JSON.", response_format=rf,
             max_tokens=200, temperature=0.8, seed=seed)
    assert r.choices[0].finish_reason == "stop", r.choices[0].message.content
    doc = json.loads(r.choices[0].message.content)
    jsonschema.validate(doc, EVENT_SCHEMA, format_checker=jsonschema.FormatChecker())


def test_unsupported_schema_is_400(client):
    rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": {
        "type": "integer", "multipleOf": 3}}}
    with pytest.raises(openai.BadRequestError):
        chat(client, "hi", response_format=rf)


# --- grammars, regexes and choices (llama.cpp's `grammar`, vLLM's guided_* / structured_outputs)

LIST_GBNF = r"""
root ::= item{2,3}
item ::= "- " [A-Z] [a-z ]{1,24} "\n"
"""
LIST_RE = re.compile(r"(- [A-Z][a-z ]{1,24}\n){2,3}")
DATE_RE = r"(19|20)\d{2}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])"


@pytest.mark.parametrize("field", ["grammar", "guided_grammar", "structured_outputs"])
def test_gbnf_grammar_output_matches(client, field):
    body = {"structured_outputs": {"grammar": LIST_GBNF}} if field == "structured_outputs" \
        else {field: LIST_GBNF}
    for seed in (1, 2):
        r = chat(client, "List some fruits.", max_tokens=60, temperature=0.9, seed=seed,
                 extra_body=body)
        text = r.choices[0].message.content
        assert r.choices[0].finish_reason == "stop", text
        assert LIST_RE.fullmatch(text), text


def test_regex_output_matches(client):
    for seed in (3, 4):
        r = chat(client, "When was the moon landing?", max_tokens=20, temperature=1.0, seed=seed,
                 extra_body={"guided_regex": DATE_RE})
        assert r.choices[0].finish_reason == "stop"
        assert re.fullmatch(DATE_RE, r.choices[0].message.content), r.choices[0].message.content
    r = client.completions.create(model=MODEL, prompt="The date today is ", max_tokens=20,
                                  extra_body={"structured_outputs": {"regex": DATE_RE}})
    assert re.fullmatch(DATE_RE, r.choices[0].text), r.choices[0].text


def test_choice_output_is_one_of_them(client):
    options = ["positive", "negative", "neutral"]
    seen = set()
    for seed in range(4):
        r = chat(client, "Sentiment of: I love this phone!", max_tokens=10, temperature=1.5,
                 seed=seed, extra_body={"guided_choice": options})
        assert r.choices[0].message.content in options
        assert r.choices[0].finish_reason == "stop"
        seen.add(r.choices[0].message.content)
    r = chat(client, "Sentiment?", extra_body={"structured_outputs": {"choice": ["yes", "no"]}})
    assert r.choices[0].message.content in ("yes", "no")


def test_json_schema_fields(client):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
              "required": ["city"], "additionalProperties": False}
    for body in ({"guided_json": schema}, {"json_schema": schema},
                 {"structured_outputs": {"json": json.dumps(schema)}}):
        r = chat(client, "Name a city as JSON.", max_tokens=40, extra_body=body)
        jsonschema.validate(json.loads(r.choices[0].message.content), schema)


def test_grammar_streamed_matches_whole(client):
    kw = dict(max_tokens=60, temperature=0.9, seed=7, extra_body={"grammar": LIST_GBNF})
    whole = chat(client, "List some animals.", **kw).choices[0].message.content
    text = ""
    for chunk in chat(client, "List some animals.", stream=True, **kw):
        for ch in chunk.choices:
            text += ch.delta.content or ""
    assert text == whole and LIST_RE.fullmatch(text), (text, whole)


BAD_STRUCTURED = [
    ({"grammar": "root ::= foo"}, "undefined rule"),
    ({"grammar": "root ::= \"a\"\nx ::= ["}, "line 2"),
    ({"grammar": "root ::= root \"a\""}, "left recursion"),
    ({"grammar": 5}, "must be a string"),
    ({"guided_regex": "(a)\\1"}, "backreferences"),
    ({"guided_regex": "(?=x)"}, "lookaround"),
    ({"guided_choice": []}, "non-empty array"),
    ({"guided_choice": ["a", 1]}, "array of strings"),
    ({"guided_json": "{not json"}, "bad JSON schema"),
    ({"structured_outputs": {}}, "needs one of"),
    ({"structured_outputs": "x"}, "must be an object"),
    ({"grammar": "root ::= \"a\"", "guided_regex": "a"}, "only one"),
    ({"guided_choice": ["a"], "response_format": {"type": "json_object"}}, "only one"),
    ({"grammar": "root ::= \"a\"", "tools": [WEATHER_TOOL], "tool_choice": "required"},
     "forced tool call"),
]


@pytest.mark.parametrize("i", range(len(BAD_STRUCTURED)))
def test_bad_structured_output_400(server, i):
    extra, words = BAD_STRUCTURED[i]
    r = post(server, "/v1/chat/completions", dict(msg(), **extra))
    assert r.status_code == 400, (extra, r.text)
    assert words in r.json()["error"]["message"], r.text


# --- concurrency and cancellation ----------------------------------------------------------

def test_32_concurrent_streams(server):
    async def one(ac, i):
        text, reason = "", None
        stream = await ac.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"Tell me fact number {i}."}],
            max_tokens=16, temperature=0.8, seed=i, stream=True)
        async for chunk in stream:
            for ch in chunk.choices:
                text += ch.delta.content or ""
                reason = ch.finish_reason or reason
        return text, reason

    async def main():
        ac = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=API_KEY, max_retries=0,
                                timeout=600)
        return await asyncio.gather(*(one(ac, i) for i in range(32)))

    results = asyncio.run(main())
    assert len(results) == 32
    for text, reason in results:
        assert reason in ("stop", "length")
        assert text or reason == "stop"


def test_disconnect_mid_stream_frees_blocks(server):
    before = metrics(server)
    aborted0 = metric(before, 'jinx:request_success_total{model_name="smollm2",finished_reason="abort"}')
    body = {"model": MODEL, "stream": True, "max_tokens": 2000, "ignore_eos": True,
            "messages": [{"role": "user", "content": "Write a very long essay."}]}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, headers=HDR,
                      timeout=120) as r:
        assert r.status_code == 200
        n = 0
        # Keep the line iterator referenced: breaking out of a temporary one closes it, and
        # closing it closes the connection, which the server may notice before we ask.
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                n += 1
            if n >= 5:
                break
        m = metrics(server)
        assert metric(m, "jinx:kv_blocks_used") > 0, (n, m)
        assert metric(m, "jinx:num_requests_running") >= 1
    # Closed: the server notices at its next write and cancels.
    deadline = time.time() + 30
    while time.time() < deadline:
        m = metrics(server)
        if metric(m, "jinx:kv_blocks_used") == 0 and metric(m, "jinx:num_requests_running") == 0:
            break
        time.sleep(0.1)
    assert metric(m, "jinx:kv_blocks_used") == 0
    assert metric(m, "jinx:num_requests_running") == 0
    assert metric(m, 'jinx:request_success_total{model_name="smollm2",finished_reason="abort"}') == aborted0 + 1
    assert metric(m, "jinx:generation_tokens_total") < metric(before, "jinx:generation_tokens_total") + 1000


def test_metrics_shape(server, client):
    chat(client, "Hello!", max_tokens=4)
    text = httpx.get(server.url + "/metrics").text
    for name in ["jinx:num_requests_running", "jinx:num_requests_waiting", "jinx:kv_blocks_used",
                 "jinx:prefix_cache_hit_rate", "jinx:prompt_tokens_total",
                 "jinx:generation_tokens_total", "jinx:time_to_first_token_seconds_bucket",
                 "jinx:time_per_output_token_seconds_bucket"]:
        assert name in text
    m = metrics(server)
    assert metric(m, "jinx:prompt_tokens_total") > 0
    assert metric(m, "jinx:time_to_first_token_seconds_count") > 0


# --- bad input -----------------------------------------------------------------------------

def post(server, path, data, headers=HDR, **kw):
    return httpx.post(server.url + path, content=data if isinstance(data, (bytes, str)) else None,
                      json=None if isinstance(data, (bytes, str)) else data,
                      headers=headers, timeout=60, **kw)


def msg(content="hi", **kw):
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], "max_tokens": 4,
            **kw}


BAD_400 = [
    b"{not json",
    b"[1, 2, 3]",
    b"\xff\xfe{\"messages\": 1}",
    {"model": MODEL, "messages": "hello"},
    {"model": MODEL, "messages": []},
    {"model": MODEL},
    {"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]},
    {"model": MODEL, "messages": [{"role": "user"}]},
    {"model": MODEL, "messages": [{"role": "user", "content": 42}]},
    {"model": MODEL, "messages": [{"content": "hi"}]},
    {"model": MODEL, "messages": ["hi"]},
    msg(temperature="hot"),
    msg(temperature=5),
    msg(temperature=float("nan")) if False else msg(top_p=0),
    msg(top_p=1.5),
    msg(max_tokens=0),
    msg(max_tokens=-3),
    msg(max_tokens=10_000_000),
    msg(max_tokens="many"),
    msg(n=0),
    msg(n=1000),
    msg(stop=[""]),
    msg(stop=7),
    msg(logit_bias={"abc": 1}),
    msg(logit_bias={"999999999": 1}),
    msg(logit_bias={"5": 1000}),
    msg(top_logprobs=5),
    msg(logprobs=True, top_logprobs=99),
    msg(presence_penalty=3),
    msg(seed="x"),
    msg(stream="yes"),
    msg(stream_options={"include_usage": True}),
    msg(tools="nope"),
    msg(tools=[{"type": "function", "function": {"name": ""}}]),
    msg(tools=[WEATHER_TOOL], tool_choice={"type": "function", "function": {"name": "nope"}}),
    msg(tool_choice="required"),
    msg(response_format={"type": "xml"}),
    msg(response_format={"type": "json_schema"}),
    msg("x " * 9000),
]


@pytest.mark.parametrize("i", range(len(BAD_400)))
def test_bad_request_400(server, i):
    r = post(server, "/v1/chat/completions", BAD_400[i])
    assert r.status_code == 400, (BAD_400[i] if not isinstance(BAD_400[i], bytes) else "", r.text)
    err = r.json()["error"]
    assert err["message"] and err["type"] == "invalid_request_error"


def test_bad_completions_400(server):
    for body in [{"model": MODEL}, {"model": MODEL, "prompt": []}, {"model": MODEL, "prompt": [-1]},
                 {"model": MODEL, "prompt": [[1, 2], "x", 3]}, {"model": MODEL, "prompt": 12},
                 {"model": MODEL, "prompt": "hi", "logprobs": 9},
                 {"model": MODEL, "prompt": [10**12]}]:
        r = post(server, "/v1/completions", body)
        assert r.status_code == 400, (body, r.text)


def test_invalid_utf8_in_string_is_400(server):
    raw = b'{"model": "smollm2", "messages": [{"role": "user", "content": "\xc3\x28 bad"}]}'
    r = post(server, "/v1/chat/completions", raw)
    assert r.status_code == 400
    assert "error" in r.json()


def test_unknown_model_and_route_404(server):
    r = post(server, "/v1/chat/completions", dict(msg(), model="gpt-9"))
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = httpx.get(server.url + "/v1/nothing-here", headers=HDR)
    assert r.status_code == 404 and "error" in r.json()


def test_oversized_body_413(server):
    big = json.dumps(msg("a" * (2 << 20))).encode()
    r = post(server, "/v1/chat/completions", big)
    assert r.status_code == 413
    assert "error" in r.json()


def test_auth_401(server):
    for headers in [{}, {"Authorization": "Bearer wrong"}, {"Authorization": API_KEY}]:
        r = post(server, "/v1/chat/completions", msg(), headers=headers)
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    bad = openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert httpx.get(server.url + "/health").status_code == 200  # health stays open


def test_garbage_connections_do_not_hurt(server, client):
    for payload in [b"GARBAGE\r\n\r\n", b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n{",
                    b"\x00" * 1000, b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 2000 + b"\r\n"]:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            try:
                s.sendall(payload)
                s.recv(1000)
            except OSError:
                pass
    assert chat(client, "Still there?", max_tokens=3).choices[0].message.content is not None


def test_tokenize_detokenize(server):
    r = post(server, "/tokenize", {"prompt": "Hello world!", "add_special_tokens": False}).json()
    assert r["count"] == len(r["tokens"]) > 0
    back = post(server, "/detokenize", {"tokens": r["tokens"]}).json()["prompt"]
    assert back == "Hello world!"
    chat_ids = post(server, "/tokenize", {"messages": [{"role": "user", "content": "Hi"}]}).json()
    assert chat_ids["count"] > r["count"] - 1
    assert post(server, "/detokenize", {"tokens": [-5]}).status_code == 400


def test_queue_full_429():
    s = Server("queue", "--max-queue", "1", "--max-num-seqs", "1")
    try:
        body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 64, "ignore_eos": True}

        async def main():
            async with httpx.AsyncClient(timeout=300) as ac:
                return await asyncio.gather(*(ac.post(s.url + "/v1/completions", json=body)
                                              for _ in range(8)))

        codes = [r.status_code for r in asyncio.run(main())]
        assert codes.count(429) >= 1, codes
        assert codes.count(200) >= 2, codes
        assert set(codes) <= {200, 429}, codes
        assert httpx.post(s.url + "/v1/completions", json=body, timeout=300).status_code == 200
    finally:
        s.stop()


def test_burst_admits_run_slots_plus_queue():
    # --max-queue counts requests waiting for a run slot: of a burst of 24, the 8 that free
    # slots take and the 4 queued are admitted (more if some finish before the burst is in).
    s = Server("burst", "--max-queue", "4", "--max-num-seqs", "8")
    try:
        body = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 48, "ignore_eos": True}

        async def main():
            async with httpx.AsyncClient(timeout=300) as ac:
                return await asyncio.gather(*(ac.post(s.url + "/v1/completions", json=body)
                                              for _ in range(24)))

        codes = [r.status_code for r in asyncio.run(main())]
        assert set(codes) <= {200, 429}, codes
        assert codes.count(200) >= 12, codes
        assert codes.count(429) >= 1, codes
    finally:
        s.stop()


def test_speculative_sampling_server_keeps_the_guesses():
    # --speculative-sampling rejection with the model as its own draft: p == q, so every guess
    # of a sampled request stands (greedy guesses of sampled requests mostly fall).
    s = Server("speculative-rejection", "--api-key", API_KEY, "--speculative-model",
               str(MODEL_PATH), "--num-speculative-tokens", "3", "--speculative-sampling",
               "rejection")
    try:
        import openai
        c = openai.OpenAI(base_url=s.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
        for seed in (1, 2):
            r = chat(c, "Write a short poem about the sea.", temperature=1.0, seed=seed,
                     max_tokens=40, extra_body={"ignore_eos": True})
            assert r.usage.completion_tokens == 40
        m = metrics(s)
        drafted = metric(m, "jinx:spec_decode_num_draft_tokens_total")
        accepted = metric(m, "jinx:spec_decode_num_accepted_tokens_total")
        assert drafted > 0 and accepted >= 0.9 * drafted, (drafted, accepted)
    finally:
        s.stop()


@pytest.mark.parametrize("how", ["lookup", "draft"])
def test_speculative_server_gives_the_same_text(server, client, how):
    # Guesses (prompt lookup, or a draft model: here the model itself, the one at hand) change
    # how many steps a reply takes, not the reply: greedy, streamed, cut by a stop string or
    # sampled with a seed, concurrently.
    flags = (["--num-speculative-tokens", "4"] if how == "lookup" else
             ["--speculative-model", str(MODEL_PATH), "--num-speculative-tokens", "3"])
    s = Server("speculative-" + how, "--api-key", API_KEY, *flags)
    try:
        import openai
        spec = openai.OpenAI(base_url=s.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)
        ask = "Repeat this list three times: red, green, blue, yellow, purple, orange."
        cases = [dict(temperature=0, max_tokens=60),
                 dict(temperature=0, max_tokens=60, stop=["yellow, purple"]),
                 dict(temperature=0.8, seed=5, max_tokens=40),
                 dict(temperature=0, max_tokens=30, logprobs=True, top_logprobs=2)]

        def run(c, kw, stream=False):
            if stream:
                return "".join(ch.choices[0].delta.content or "" for ch in chat(
                    c, ask, stream=True, **kw) if ch.choices)
            r = chat(c, ask, **kw)
            lps = r.choices[0].logprobs
            return (r.choices[0].message.content, r.choices[0].finish_reason,
                    r.usage.completion_tokens,
                    [round(e.logprob, 4) for e in lps.content] if lps else None)

        async def both():
            loop = asyncio.get_running_loop()
            jobs = [loop.run_in_executor(None, run, c, kw) for kw in cases for c in (client, spec)]
            jobs += [loop.run_in_executor(None, run, c, cases[0], True) for c in (client, spec)]
            return await asyncio.gather(*jobs)

        got = asyncio.run(both())
        for i in range(0, len(got), 2):
            assert got[i + 1] == got[i], (i, got[i], got[i + 1])
        m = metrics(s)
        drafted = metric(m, "jinx:spec_decode_num_draft_tokens_total")
        accepted = metric(m, "jinx:spec_decode_num_accepted_tokens_total")
        assert drafted > 0 and 0 < accepted <= drafted, (drafted, accepted)
    finally:
        s.stop()
