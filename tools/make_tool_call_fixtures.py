#!/usr/bin/env python3
"""Tool-calling render fixtures: OpenAI-style requests rendered through real chat templates.

Run: /work/refvenv/bin/python tools/make_tool_call_fixtures.py
Writes tests/fixtures/tool_calls/render_cases.json, a list of cases
  {"name", "template" (file under tests/fixtures/templates), "format" ("hermes" | "llama3_json"),
   "format_forced" (format chosen by the case, not detected from the template),
   "supports_tools" (jinja2.meta: the template reads the `tools` variable),
   "messages", "tools" (the request, OpenAI form: tool-call arguments are JSON strings),
   "prepared" (the messages after the preprocessing below), "context_extra" (bos/eos tokens and
   other keyword arguments), "add_generation_prompt", "expected" (the rendered prompt)}.

The reference is jinja2 through transformers' own _compile_jinja_template, with the
preprocessing written here in Python from the specification of jinx::prepare_tool_messages
(src/server/tool_calls.h):
  - tool_calls[].function.arguments JSON strings -> values, null contents -> "" (as vLLM does
    before rendering);
  - for templates that do not read `tools`: the tool prompt merged into the system message,
    assistant tool calls as text in the model's call format, runs of tool messages as one user
    message of <tool_response> blocks.
Templates that read `tools` are also rendered with transformers' render_jinja_template and must
agree.
"""
import copy
import json
import pathlib

import jinja2
import jinja2.meta
from transformers.utils import chat_template_utils as ctu

ROOT = pathlib.Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "tests" / "fixtures" / "templates"
OUT = ROOT / "tests" / "fixtures" / "tool_calls"

TEMPLATE_TOKENS = {
    "qwen2_5_instruct": {"eos_token": "<|im_end|>"},
    "qwen3": {"eos_token": "<|im_end|>"},
    "llama3_1_instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                          "date_string": "26 Jul 2024"},
    "smollm2_instruct": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    "qwen2_instruct": {"eos_token": "<|im_end|>"},
}

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city — “quoted” ünïcödé.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. 東京"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 14.5},
            },
            "required": ["city"],
        },
    },
}
SEARCH = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.\nReturns <b>HTML</b> & text.",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"},
                                                        "top_k": {"type": "number", "default": 2.5}}},
    },
}
NO_PARAMS = {"type": "function", "function": {"name": "get_time"}}


def call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


TWO_CALLS = [
    {"role": "system", "content": "You are a weather bot."},
    {"role": "user", "content": "Weather in Paris and Tokyo?"},
    {"role": "assistant", "content": None, "tool_calls": [
        call("call_a", "get_weather", "{\"city\": \"Paris\", \"unit\": \"celsius\", \"days\": 3}"),
        call("call_b", "get_weather", "{\"city\":\"東京\",\"extra\":{\"n\":[1,2.5,null,true,1e-07,\"x\\\"y\"]}}"),
    ]},
    {"role": "tool", "tool_call_id": "call_a", "content": "{\"temp\": 21}"},
    {"role": "tool", "tool_call_id": "call_b", "content": "晴れ, 25°C"},
    {"role": "assistant", "content": "Paris: 21°C. Tokyo: sunny, 25°C."},
    {"role": "user", "content": "Thanks! And tomorrow?"},
]
ONE_CALL_NO_SYSTEM = [
    {"role": "user", "content": "Search for jinja2"},
    {"role": "assistant", "content": "Let me search.", "tool_calls": [
        call("call_1", "search", "{\"query\": \"jinja2 templates\", \"top_k\": 3}")]},
    {"role": "tool", "tool_call_id": "call_1", "content": "Jinja is a template engine."},
]
FIRST_TURN = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What time is it in Oslo?"},
]
OBJECT_ARGS = [  # arguments already an object (clients send both)
    {"role": "user", "content": "Time?"},
    {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c9", "type": "function", "function": {"name": "get_time", "arguments": {}}}]},
    {"role": "tool", "tool_call_id": "c9", "content": "12:00"},
]

# (name, templates, messages, tools, add_generation_prompt[, forced format])
CONVERSATIONS = [
    ("two_calls", ["qwen2_5_instruct", "qwen3", "smollm2_instruct", "qwen2_instruct"],
     TWO_CALLS, [WEATHER, SEARCH], True),
    ("one_call_no_system", list(TEMPLATE_TOKENS), ONE_CALL_NO_SYSTEM, [SEARCH, NO_PARAMS], True),
    ("first_turn", list(TEMPLATE_TOKENS), FIRST_TURN, [WEATHER, NO_PARAMS], True),
    ("history_without_tools", ["qwen2_5_instruct", "smollm2_instruct"], TWO_CALLS, None, False),
    ("object_args", ["qwen2_5_instruct", "llama3_1_instruct", "smollm2_instruct"],
     OBJECT_ARGS, [NO_PARAMS], True),
    # The Llama JSON call format injected into a template without tools (not detected: forced).
    ("llama_format_injected", ["smollm2_instruct"], TWO_CALLS, [WEATHER, SEARCH], True,
     "llama3_json"),
]


def supports_tools(source):
    env = jinja2.Environment()
    return "tools" in jinja2.meta.find_undeclared_variables(env.parse(source))


def tool_format(source):
    if "<tool_call>" in source:
        return "hermes"
    if "<|python_tag|>" in source or "parameters" in source:
        return "llama3_json"
    return "hermes"


def dumps(value):  # what Jinja's tojson writes in transformers
    return json.dumps(value, ensure_ascii=False)


def tools_prompt(tools, fmt):
    sigs = "".join(dumps(t) + "\n" for t in tools)
    head = ("# Tools\n\nYou can call functions to help with the user's request. Their signatures, "
            "as JSON schemas, are listed one per line")
    if fmt == "llama3_json":
        return (head + ":\n" + sigs + "\nTo call a function, answer with nothing but a JSON object "
                "of the form {\"name\": \"<function name>\", \"parameters\": {\"<argument name>\": "
                "<value>, ...}}; separate several calls with \"; \". Each result comes back inside "
                "<tool_response></tool_response> tags.")
    return (head + " inside <tools></tools> tags:\n<tools>\n" + sigs + "</tools>\n\nTo call a "
            "function, answer with a JSON object holding its name and arguments inside "
            "<tool_call></tool_call> tags, one block per call:\n<tool_call>\n{\"name\": "
            "\"<function name>\", \"arguments\": {\"<argument name>\": <value>, ...}}\n</tool_call>\n"
            "Each result comes back inside <tool_response></tool_response> tags.")


def content_text(content):
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if p.get("type") == "text")
    return dumps(content)


def calls_as_text(message, fmt):
    text = content_text(message.get("content"))
    parts = []
    for tc in message["tool_calls"]:
        fn = tc.get("function", tc)
        args = fn.get("arguments", {})
        if fmt == "llama3_json":
            parts.append(dumps({"name": fn["name"], "parameters": args}))
        else:
            parts.append("<tool_call>\n" + dumps({"name": fn["name"], "arguments": args}) + "\n</tool_call>")
    if fmt == "llama3_json":
        joined = "; ".join(parts)
    else:
        joined = "\n".join(parts)
    if not parts:
        return text
    return text + "\n" + joined if text else joined


def prepare(messages, tools, source, fmt):
    msgs = copy.deepcopy(messages)
    for m in msgs:
        if m.get("content") is None:  # vLLM renders a null content as ""
            m["content"] = ""
        for tc in m.get("tool_calls") or []:
            fn = tc.get("function", tc)
            if isinstance(fn.get("arguments"), str):
                fn["arguments"] = json.loads(fn["arguments"])
    if supports_tools(source):
        return msgs
    out = []
    extend = False
    for m in msgs:
        if "tool_calls" in m:
            m = dict(m)
            m["content"] = calls_as_text(m, fmt)
            del m["tool_calls"]
        if m.get("role") != "tool":
            out.append(m)
            extend = False
            continue
        block = "<tool_response>\n" + content_text(m.get("content")) + "\n</tool_response>"
        if extend:
            out[-1]["content"] += "\n" + block
        else:
            out.append({"role": "user", "content": block})
        extend = True
    if tools:
        prompt = tools_prompt(tools, fmt)
        if out and out[0].get("role") == "system":
            out[0]["content"] = (out[0]["content"] + "\n\n" + prompt) if out[0].get("content") else prompt
        else:
            out.insert(0, {"role": "system", "content": prompt})
    return out


def render(source, prepared, tools, agp, extra):
    context = {"messages": prepared, "tools": tools, "documents": None,
               "add_generation_prompt": agp, **extra}
    text = ctu._compile_jinja_template(source).render(**context)
    if supports_tools(source):
        via, _ = ctu.render_jinja_template(conversations=[prepared], tools=tools,
                                           chat_template=source, add_generation_prompt=agp,
                                           **extra)
        assert via[0] == text, "render_jinja_template disagrees with the direct render"
    return text


def main():
    cases = []
    for cname, tnames, messages, tools, agp, *forced in CONVERSATIONS:
        for tname in tnames:
            source = (TEMPLATES / f"{tname}.jinja").read_text(encoding="utf-8")
            fmt = forced[0] if forced else tool_format(source)
            prepared = prepare(messages, tools, source, fmt)
            extra = TEMPLATE_TOKENS[tname]
            cases.append({
                "name": f"{tname}/{cname}", "template": f"{tname}.jinja", "format": fmt,
                "format_forced": bool(forced),
                "supports_tools": supports_tools(source), "messages": messages, "tools": tools,
                "prepared": prepared, "context_extra": extra, "add_generation_prompt": agp,
                "expected": render(source, prepared, tools, agp, extra)})
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "render_cases.json"
    path.write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {path}")


if __name__ == "__main__":
    main()
