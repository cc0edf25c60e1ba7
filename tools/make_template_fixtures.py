#!/usr/bin/env python3
"""Renders chat-template fixtures with jinja2 exactly as transformers' apply_chat_template does.

Run: /work/refvenv/bin/python tools/make_template_fixtures.py
Writes tests/fixtures/templates/cases.json: a list of cases, each
  {"name", "template" (file name under tests/fixtures/templates) or "source",
   "context" (the exact keyword arguments jinja2 rendered with),
   and "expected" (the rendered text) or "error" {"type", "message", "lineno"}}.

The compile function is transformers' own (_compile_jinja_template: ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, loopcontrols, the generation tag, raise_exception, strftime_now,
tojson override); messages go through transformers' own preprocessing (_plain_template_data,
_alias_reasoning_fields), and each render is checked against render_jinja_template itself.
"""
import json
import pathlib
import sys

import jinja2
from transformers.utils import chat_template_utils as ctu

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "templates"

REAL_TEMPLATES = {
    "qwen2_instruct": {"eos_token": "<|im_end|>"},
    "qwen2_5_instruct": {"eos_token": "<|im_end|>"},
    "qwen3": {"eos_token": "<|im_end|>"},
    "smollm2_instruct": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"},
    "llama3_1_instruct": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"},
    "gemma3": {"bos_token": "<bos>", "eos_token": "<eos>"},
    "gpt_oss": {},
}

# strftime_now() reads the clock: renders see this fixed day, and each case records it
# ("fixed_today") so that the test can put its own day in its place.
FIXED_TODAY = "2026-01-15"


class _FixedDatetime:
    @staticmethod
    def now():
        import datetime
        return datetime.datetime(2026, 1, 15, 9, 30, 0)


ctu.datetime = _FixedDatetime

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city — with “quotes” and ünïcödé.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. 東京"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 14},
            },
            "required": ["city"],
        },
    },
}
SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": "search",
        "description": "Search the web.\nReturns <b>HTML</b> & text snippets.",
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string"}, "top_k": {"type": "number", "default": 2.5}},
            "required": [],
        },
    },
}

def tool_call(name, arguments, call_id="call_1"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}

BASIC = [{"role": "user", "content": "Hello!"}]
MULTI = [
    {"role": "system", "content": "You are a terse assistant."},
    {"role": "user", "content": "What is 2+2?"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "  And 3+3?  \n"},
]
UNICODE = [
    {"role": "system", "content": "Réponds en français. 日本語もOK 🎉"},
    {"role": "user", "content": "Quote: \"double\" and 'single', backslash \\ tab\t, newline\nend. Emoji 👩‍💻 and ﬁ ligature."},
    {"role": "assistant", "content": "\n Ça va très bien — merci ! \u00a0"},
    {"role": "user", "content": "Ελληνικά, Кириллица, العربية, 한국어"},
]
TOOLS_CHAT = [
    {"role": "system", "content": "You can call tools."},
    {"role": "user", "content": "Weather in Paris and Tokyo?"},
    {"role": "assistant", "content": "", "tool_calls": [
        tool_call("get_weather", {"city": "Paris", "unit": "celsius", "days": 3}),
        tool_call("get_weather", {"city": "東京", "extra": {"nested": [1, 2.5, None, True, 1e-07, "x\"y"]}}, "call_2"),
    ]},
    {"role": "tool", "content": "{\"temp\": 21}", "tool_call_id": "call_1"},
    {"role": "tool", "content": "晴れ, 25°C", "tool_call_id": "call_2"},
    {"role": "assistant", "content": "Paris: 21°C. Tokyo: sunny, 25°C."},
    {"role": "user", "content": "Thanks"},
]
SINGLE_TOOL_CALL = [
    {"role": "user", "content": "Search for jinja2"},
    {"role": "assistant", "content": "Let me search.", "tool_calls": [tool_call("search", {"query": "jinja2 templates", "top_k": 3})]},
    {"role": "tool", "content": "Jinja is a template engine."},
]
BUILTIN_CALL = [
    {"role": "user", "content": "Search for jinja2"},
    {"role": "assistant", "content": "", "tool_calls": [tool_call("search", {"query": "jinja2", "lang": "en"})]},
]
THINKING = [
    {"role": "user", "content": "Think: what is 6*7?"},
    {"role": "assistant", "content": "<think>\n6 times 7 is 42.\n</think>\n\nThe answer is 42."},
    {"role": "user", "content": "And 6*8?"},
    {"role": "assistant", "content": "It is 48.", "reasoning_content": "6*8 = 48"},
]
MULTISTEP = [
    {"role": "user", "content": "Find the weather"},
    {"role": "assistant", "content": "<think>need tool</think>Calling.", "tool_calls": [tool_call("get_weather", "{\"city\": \"Oslo\"}")]},
    {"role": "tool", "content": "rain"},
    {"role": "assistant", "content": "<think>\nIt rains.\n</think>\n\nIt is raining in Oslo."},
]
GEMMA_PARTS = [
    {"role": "system", "content": [{"type": "text", "text": "  Be brief.  "}]},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Describe this."}]},
    {"role": "assistant", "content": "A cat."},
    {"role": "user", "content": "Thanks!"},
]
BAD_ORDER = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]

CONVERSATIONS = {
    "basic": (BASIC, None, {}),
    "multi": (MULTI, None, {}),
    "unicode": (UNICODE, None, {}),
    "tools": (TOOLS_CHAT, [WEATHER_TOOL, SEARCH_TOOL], {}),
    "single_tool_call": (SINGLE_TOOL_CALL, [SEARCH_TOOL], {}),
    "thinking": (THINKING, None, {}),
    "thinking_off": (THINKING[:3], None, {"enable_thinking": False}),
    "thinking_on": (THINKING[:3], None, {"enable_thinking": True}),
    "multistep": (MULTISTEP, [WEATHER_TOOL], {}),
    "gemma_parts": (GEMMA_PARTS, None, {}),
    "bad_order": (BAD_ORDER, None, {}),
    "llama_builtin": (BUILTIN_CALL, [SEARCH_TOOL], {"builtin_tools": ["search", "wolfram_alpha", "code_interpreter"], "date_string": "01 Jan 2025"}),
    "llama_tools_system": (MULTI, [WEATHER_TOOL], {"tools_in_user_message": False}),
    "llama_dict_content": ([{"role": "user", "content": "x"}, {"role": "tool", "content": {"result": [1, 2], "ok": True}}], None, {}),
}


def render_real(template_src, messages, tools, agp, kwargs, special):
    """Renders as apply_chat_template does; returns (context, expected or error)."""
    template_kwargs = {**special, **kwargs}
    chat = ctu._alias_reasoning_fields(ctu._plain_template_data(messages))
    tools_data = ctu._plain_template_data(tools)
    context = {"messages": chat, "tools": tools_data, "documents": None,
               "add_generation_prompt": agp, **ctu._plain_template_data(template_kwargs)}
    try:
        text = ctu._compile_jinja_template(template_src).render(**context)
    except Exception as e:  # noqa: BLE001 - recorded as an expected error
        return context, None, error_info(e)
    via_transformers, _ = ctu.render_jinja_template(
        conversations=[messages], tools=tools, chat_template=template_src,
        add_generation_prompt=agp, **template_kwargs)
    assert via_transformers[0] == text, "render_jinja_template disagrees with the direct render"
    return context, text, None


def error_info(e):
    return {"type": type(e).__name__, "message": str(e), "lineno": getattr(e, "lineno", None)}


def render_source(source, context):
    try:
        return ctu._compile_jinja_template(source).render(**context), None
    except Exception as e:  # noqa: BLE001
        return None, error_info(e)


def real_cases():
    cases = []
    for tname, special in REAL_TEMPLATES.items():
        src = (OUT / f"{tname}.jinja").read_text(encoding="utf-8")
        for cname, (messages, tools, kwargs) in CONVERSATIONS.items():
            for agp in (True, False):
                context, text, err = render_real(src, messages, tools, agp, kwargs, special)
                case = {"name": f"{tname}/{cname}/agp={agp}", "template": f"{tname}.jinja",
                        "context": context}
                if "strftime_now" in src:
                    case["fixed_today"] = FIXED_TODAY
                if err:
                    case["error"] = err
                else:
                    case["expected"] = text
                cases.append(case)
    return cases


# Small templates, one feature each. Each entry: (name, source, context).
SYNTHETIC = [
    ("whitespace_control", "a  {{- ' b ' -}}  c\n  {%- if true -%}  d  {%- endif %}\ne\n", {}),
    ("trim_lstrip_blocks", "x\n    {% if true %}\n    yes\n    {% endif %}\n  {# note #}\nz {% if 1 %}in{% endif %}\n{%+ if 1 %}plus{% endif %}\n", {}),
    ("raw_and_comments", "{% raw %}{{ not parsed }} {% if %}{% endraw %}\n{#- c -#}  after\n{# multi\nline #}end", {}),
    ("trailing_newline", "line1\r\nline2\rline3\n", {}),
    ("for_loop_vars", "{% for x in items %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.previtem }}{{ loop.nextitem }}|{% endfor %}", {"items": ["a", "b", "c"]}),
    ("for_else_filter", "{% for x in items if x > 1 %}{{ x }}{{ loop.length }},{% else %}empty{% endfor %};{% for x in [] %}x{% else %}none{% endfor %};{% for k, v in d.items() %}{{ k }}={{ v }} {% endfor %}", {"items": [1, 2, 3], "d": {"b": 1, "a": [1, 2]}}),
    ("loop_controls", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 4 %}{% break %}{% endif %}{{ i }}{% endfor %}|{{ loop }}|{% for a in [1,2] %}{% for b in 'xy' %}{{ loop.cycle('o','e') }}{{ a }}{{ b }}{% endfor %}{% endfor %}", {}),
    ("if_elif_else", "{% for n in [0, 1, 2, 3] %}{% if n == 0 %}zero{% elif n == 1 %}one{% elif n is even %}even{% else %}odd{% endif %} {% endfor %}{{ 'y' if flag else 'n' }}{{ 'z' if not flag }}.", {"flag": True}),
    ("set_scoping_namespace", "{% set x = 1 %}{% set a, b = [2, 3] %}{% for i in [1] %}{% set x = 5 %}{{ x }}{% endfor %}{{ x }}{{ a }}{{ b }}{% set ns = namespace(n=0, items=[]) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% set ns.items = ns.items + [i] %}{% endfor %}{{ ns.n }}{{ ns.items }}{% set blk %}  block {{ x }} {% endset %}[{{ blk }}]{% set up | upper %}shout{% endset %}{{ up }}", {}),
    ("macro", "{% macro greet(name, punct='!', upper=false) -%}\n{{ (name | upper) if upper else name }}{{ punct }}\n{%- endmacro %}{{ greet('bob') }} {{ greet('amy', '?') }} {{ greet(name='x', upper=true) }}{% macro r(n) %}{% if n > 0 %}{{ n }}{{ r(n - 1) }}{% endif %}{% endmacro %} {{ r(3) }}", {}),
    ("string_filters", "{{ s | trim }}|{{ s | length }}|{{ s | lower }}|{{ s | upper }}|{{ 'hello wORLD-foo(bar' | title }}|{{ 'hELLO' | capitalize }}|{{ s | replace(' ', '_') }}|{{ 'aaa' | replace('a', 'b', 2) }}|{{ 'x' | center(7) }}|{{ s | wordcount }}|{{ 'a<b>&\"c\\'' | escape }}|{{ 'l1\\nl2\\n\\nl3' | indent(2) }}|{{ 'l1\\nl2' | indent(first=true, width='> ') }}", {"s": "  Héllo Wörld ß  "}),
    ("list_filters", "{{ xs | join(', ') }}|{{ xs | first }}|{{ xs | last }}|{{ xs | length }}|{{ xs | sort | list }}|{{ xs | sort(reverse=true) | join }}|{{ xs | reverse | list }}|{{ xs | unique | list }}|{{ xs | batch(2) | list }}|{{ [3, 1, 2] | sum }}|{{ [3, 1, 2] | min }}{{ [3, 1, 2] | max }}|{{ 'abc' | list }}|{{ ['B', 'a', 'C'] | sort }}|{{ ['B', 'a', 'C'] | sort(case_sensitive=true) }}", {"xs": ["b", "a", "c", "a"]}),
    ("dict_filters", "{{ d | dictsort }}|{{ d | dictsort(by='value', reverse=true) }}|{% for k, v in d | items %}{{ k }}:{{ v }},{% endfor %}|{{ d.keys() | list }}{{ d.values() | list }}|{{ d.get('a') }}{{ d.get('zz', 'dflt') }}{{ d.get('zz') }}|{{ d | length }}|{{ d | list }}", {"d": {"b": 2, "a": 1, "c": 0}}),
    ("select_map", "{{ users | selectattr('admin') | map(attribute='name') | join(',') }}|{{ users | rejectattr('admin') | map(attribute='name') | list }}|{{ users | selectattr('name', 'equalto', 'bo') | list | length }}|{{ [1, 2, 3, 4] | select('odd') | list }}|{{ [1, 2, 3, 4] | reject('even') | list }}|{{ ['a', 'b'] | map('upper') | join }}|{{ users | map(attribute='age', default=0) | list }}|{{ users | selectattr('name', 'in', ['al', 'cy']) | map(attribute='name') | list }}|{{ users | map(attribute='name') | select('ne', 'bo') | list }}", {"users": [{"name": "al", "admin": True, "age": 30}, {"name": "bo", "admin": False}, {"name": "cy", "admin": True, "age": 5}]}),
    ("numbers", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1.5 + 1 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.0 }} {{ 3 | float }} {{ '42' | int }} {{ '3.9' | int }} {{ 'x' | int(7) }} {{ '2.5' | float }} {{ -3 | abs }} {{ 2.5 | round }} {{ 3.14159 | round(2) }} {{ 2.1 | round(0, 'ceil') }} {{ 10 | string }}{{ 1e-05 }} {{ 123456789012345678 }} {{ 1.5e300 * 1e10 }} {{ true + 1 }}", {}),
    ("tests", "{% for v in [none, true, 1, 1.5, 'a', [1], {'a': 1}, undefined_var] %}{{ v is none }}{{ v is boolean }}{{ v is number }}{{ v is integer }}{{ v is float }}{{ v is string }}{{ v is mapping }}{{ v is iterable }}{{ v is sequence }}{{ v is defined }}{{ v is true }}{{ v is false }};{% endfor %}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 'a' is in 'abc' }}{{ 2 is eq 2 }}{{ 2 is ne 2 }}{{ 'abc' is lower }}{{ 'ABC' is upper }}{{ x is undefined }}{{ 1 is gt 0 }}{{ 1 is lt 0 }}", {}),
    ("operators", "{{ 'a' ~ 1 ~ none ~ true }}|{{ 'a' + 'b' }}|{{ [1] + [2] }}|{{ 'ab' * 3 }}|{{ 1 in [1, 2] }}{{ 3 not in [1, 2] }}{{ 'b' in 'abc' }}{{ 'k' in {'k': 1} }}|{{ 1 < 2 < 3 }}{{ 2 >= 2 }}{{ 'a' < 'b' }}{{ [1, 2] < [1, 3] }}|{{ not true }}{{ true and 'x' }}{{ false or 'y' }}{{ none or [] }}|{{ 1 == 1.0 }}{{ true == 1 }}{{ 'a' != 'b' }}|{{ (1, 2) }}{{ (1,) }}{{ () }}|{{ -(3) }}{{ +4 }}|{{ '%s-%d' % ('x', 3) }}{{ '%05.1f' % 3.14159 }}", {}),
    ("slicing_strings", "{{ s[1:4] }}|{{ s[::-1] }}|{{ s[-3:] }}|{{ s[::2] }}|{{ xs[1:] }}|{{ xs[:-1] }}|{{ xs[::-1] }}|{{ xs[5:] }}|{{ s[0] }}{{ s[-1] }}|{{ xs.0 }}|{{ s.strip() }}|{{ s.split('é') }}|{{ ' a  b c '.split() }}|{{ 'a,b,,c'.split(',', 2) }}|{{ 'a b c'.rsplit(' ', 1) }}|{{ s.startswith('hé') }}{{ s.endswith(('x', 'lo')) }}|{{ s.find('l') }}{{ s.rfind('l') }}{{ s.find('zz') }}|{{ s.count('l') }}|{{ s.upper() }}{{ s.title() }}|{{ '--x--'.strip('-') }}{{ '  y'.lstrip() }}{{ 'z  '.rstrip() }}|{{ ', '.join(['p', 'q']) }}|{{ '{} and {}'.format('a', 1) }}|{{ 'x\\ny\\r\\nz'.splitlines() }}|{{ 'ab'.replace('b', 'c') }}", {"s": "héllo", "xs": [1, 2, 3, 4]}),
    ("undefined_semantics", "[{{ missing }}]{{ missing | default('dflt') }}{{ '' | default('empty', true) }}{{ d.nokey }}{{ d.nokey is defined }}{{ d['nokey'] | default(5) }}{{ missing | length }}{% for x in missing %}never{% endfor %}{{ missing | list }}{{ missing == missing }}{{ missing is none }}{% if not missing %}falsy{% endif %}{{ [1][3] is defined }}{{ d.items is defined }}{{ d['items'] is callable }}", {"d": {"a": 1}}),
    ("tojson_options", "{{ d | tojson }}\n{{ d | tojson(indent=2) }}\n{{ d | tojson(sort_keys=true) }}\n{{ d | tojson(separators=(',', ':')) }}\n{{ d | tojson(ensure_ascii=true) }}\n{{ [] | tojson(indent=2) }}{{ {} | tojson(indent=2) }}{{ 'a\"b\\\\c\\n\\t\\u0001' | tojson }}{{ 1.0 | tojson }}{{ none | tojson }}", {"d": {"z": [1, 2.5, None, True], "a": {"ü": "日本", "e": []}, "q": "x<y>&'"}}),
    ("dict_list_literals", "{% set d = {'a': 1, 'b': [1, 2, {'c': none}]} %}{{ d }}{{ d['b'][2]['c'] }}{{ d.b.1 }}{% set l = [1, 'two', 3.0, false] %}{{ l }}{{ l | length }}{{ {'x': 'it\\'s'} }}{{ ['a\"', \"b'\", 'c\\'\"'] }}{{ dict(a=1, b=2) }}{{ namespace(a=1) }}", {}),
    ("string_literals", "{{ 'tab\\there' }}|{{ \"dq\\\"q\" }}|{{ 'uni\\u00e9\\U0001F600\\x41' }}|{{ 'unknown\\q' }}|{{ 'adjacent' 'strings' }}|{{ 'naïve' }}", {}),
    ("with_filter_block", "{% with a = 1, b = 'two' %}{{ a }}{{ b }}{% endwith %}[{{ a }}]{% filter upper %}up {{ 'here' }}{% endfilter %}{% filter replace('a', 'o') | trim %}  banana  {% endfilter %}", {}),
    ("generation_tag", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}\n{% endfor %}", {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}),
    ("raise_exception", "{% if messages | length > 1 %}{{ raise_exception('Only one message is supported, got ' ~ (messages | length)) }}{% endif %}ok", {"messages": [1, 2]}),
    ("print_objects", "{{ none }}|{{ true }}|{{ [none, true, 'x', 1.5, {'k': [1]}] }}|{{ {'a': 'b'}.items() | list }}|{{ ns }}", {}),
    ("chained_attrs", "{{ m.tool_calls[0].function.arguments.city }}|{{ m['tool_calls'][0]['function']['name'] }}|{{ m.tool_calls | map(attribute='function.name') | join }}|{{ m.tool_calls[0].function.arguments | items | list }}", {"m": {"tool_calls": [{"function": {"name": "f", "arguments": {"city": "Köln", "n": 2}}}]}}),
    ("fallback_chatml", None, {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}], "add_generation_prompt": True}),
    ("python_str_edges", "{{ ' a b '.split(None, 1) }}{{ ' a b '.rsplit(None, 1) }}{{ ' a b '.split(None, 0) }}{{ 'a\u00a0b'.split() }}{{ ''.split(',') }}{{ 'abc'.replace('', '-', 2) }}{{ s.count('') }}{{ '日本語'[::-1] }}{{ '日本語'.find('語') }}{{ 'ΑΣ ΟΔΟΣ' | lower }}{{ \"they're\".title() }}{{ \"they're\" | title }}", {"s": "héllo"}),
    ("whitespace_edges", "a {#- c -#} b\na {#+ c +#} b\n  {# c #}  x\nx  {%- set a = 1 -%}  y\n\t{% if true %}t{% endif %}\t|\n{% raw -%}  r  {%- endraw %}\n  {% raw %}  r2  {% endraw %}  y\n{%- for i in [1, 2] -%} {{ i }} {%- endfor -%}\n{{ 'v' }}{# x #}\n{{ 'w' }}\n{# x #}\nb\n{% for i in [1] %}{{ i }}\n{% endfor %}{{ 'a\\\nb' }}\n", {}),
    ("python_printing", "{{ d.items() }}{{ d.keys() }}{{ d.values() }}{{ range(3) }}{{ range(1, 9, 2) }}{{ '%(a)s-%(b)05.1f' % {'a': 'x', 'b': 2} }}{% macro m(a) %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, k=3) }}", {"d": {"b": 1, "a": "x"}}),
    ("misc_filters", "{{ 'foo bar baz qux' | truncate(9) }}|{{ 'foo bar baz qux' | truncate(9, true) }}|{{ 'foo bar baz qux' | truncate(11) }}|{{ d | attr('a') }}|{{ d | attr('items') is defined }}|{{ 'x' | pprint }}|{{ undefined_var | string }}|{{ undefined_var | length }}", {"d": {"a": 1}}),
    ("generator_truthiness", "{% if msgs | selectattr('role', 'eq', 'nobody') %}generator-truthy{% endif %}|{{ msgs | selectattr('role', 'eq', 'nobody') | list | length }}|{{ (msgs | selectattr('role', 'eq', 'user') | first).content }}|{{ (msgs | map(attribute='role')) is sequence }}", {"msgs": [{"role": "user", "content": "hi"}]}),
    ("undefined_int_error", "{{ undefined_var | int }}", {}),
    ("generator_length_error", "{{ [1] | select | length }}", {}),
    ("range_json_error", "{{ range(3) | tojson }}", {}),
    ("undefined_attr_error", "{{ missing.attr }}", {}),
    ("none_attr", "{{ x.y }}[{{ x.y is defined }}]", {"x": None}),
    ("type_error", "{{ 'a' + 1 }}", {}),
    ("unpack_error", "{% set a, b = [1, 2, 3] %}", {}),
    ("unsafe_append", "{% set l = [] %}{{ l.append(1) }}", {}),
    ("unknown_filter_in_if", "{% if false %}{{ x | nope }}{% endif %}ok{% if true %}{{ x | nope }}{% endif %}", {}),
    ("range_too_big", "{% for i in range(1000000) %}{% endfor %}", {}),
]

FALLBACK_CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
                   "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
                   "{{ '<|im_start|>assistant\\n' }}{% endif %}")

# Syntax errors: jinja2's line number must match ours.
SYNTAX_ERRORS = [
    ("unclosed_if", "line1\n{% if x %}\nbody\n"),
    ("unknown_tag", "a\nb\n{% frobnicate %}"),
    ("bad_expression", "{{ 1 + }}"),
    ("unclosed_string", "x\n{{ 'abc }}"),
    ("unknown_filter", "\n\n{{ x | nosuchfilter }}"),
    ("unknown_test", "{{ x is nosuchtest }}"),
    ("unknown_filter_in_loop", "{% for x in y %}\n{{ x | nope }}{% endfor %}"),
    ("unbalanced", "{{ (1 + 2 }}"),
    ("endfor_without_for", "ok\n{% endfor %}"),
    ("unclosed_comment", "a {# never closed"),
    ("break_outside_loop", "{% break %}"),
]


def synthetic_cases():
    cases = []
    for name, source, context in SYNTHETIC:
        if source is None:
            source = FALLBACK_CHATML
        text, err = render_source(source, context)
        case = {"name": f"synthetic/{name}", "source": source, "context": context}
        if err:
            case["error"] = err
        else:
            case["expected"] = text
        cases.append(case)
    for name, source in SYNTAX_ERRORS:
        try:
            ctu._compile_jinja_template(source)
        except Exception as e:  # noqa: BLE001 - 'break' outside a loop is Python's SyntaxError
            lineno = e.lineno if isinstance(e, jinja2.TemplateSyntaxError) else None
            message = e.message if isinstance(e, jinja2.TemplateSyntaxError) else str(e)
            cases.append({"name": f"syntax/{name}", "source": source, "context": {},
                          "syntax_error": {"message": message, "lineno": lineno}})
            continue
        sys.exit(f"expected a syntax error from {name}")
    return cases


def main():
    cases = real_cases() + synthetic_cases()
    path = OUT / "cases.json"
    path.write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    n_err = sum(1 for c in cases if "error" in c or "syntax_error" in c)
    print(f"wrote {len(cases)} cases ({n_err} expected errors) to {path}")


if __name__ == "__main__":
    main()
