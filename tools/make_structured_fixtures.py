#!/usr/bin/env python3
"""Fixtures for structured output (src/structured): JSON Schema verdicts from `jsonschema`.

Write tests/fixtures/structured/verdicts.json (needs jsonschema, rfc3339-validator, fqdn):
    /work/refvenv/bin/python tools/make_structured_fixtures.py
Check outputs that the C++ random-walk tests generated (JINX_STRUCTURED_DUMP=<file>):
    JINX_STRUCTURED_DUMP=/tmp/out.jsonl build-structured/tests/jinx_structured_tests
    /work/refvenv/bin/python tools/make_structured_fixtures.py --check-outputs /tmp/out.jsonl

verdicts.json: a list of cases {name, schema, docs: [{hex, valid, policy}]}.
  hex     the document's bytes (hex, so that invalid UTF-8 and control bytes survive)
  valid   the reference verdict: the bytes are strict UTF-8, parse as JSON (no NaN/Infinity)
          and jsonschema's Draft 2020-12 validator accepts the value
  policy  whether the document is in Jinx's output policy (compact or one space after ':'
          and ',', listed properties in schema order, canonical enum serialization, bounded
          number digits, surrogates only in pairs). For policy docs the C++ matcher must agree
          with `valid`; other docs it must reject (they may or may not be valid).
"""
import argparse
import json
import os
import sys

import jsonschema

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "structured")

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "ignored"},
        "age": {"type": "integer"},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["value"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}
STEPS = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"explanation": {"type": "string"}, "output": {"type": "string"}},
                "required": ["explanation", "output"],
                "additionalProperties": False,
            },
        },
        "final_answer": {"type": "string"},
    },
    "required": ["steps", "final_answer"],
    "additionalProperties": False,
}
TAGGED = {
    "anyOf": [
        {"type": "object", "properties": {"kind": {"const": "a"}, "x": {"type": "integer"}},
         "required": ["kind", "x"], "additionalProperties": False},
        {"type": "object", "properties": {"kind": {"const": "b"}, "y": {"type": "string"}},
         "required": ["kind", "y"], "additionalProperties": False},
    ]
}

# (name, schema, policy docs, out-of-policy docs). Docs are str (UTF-8) or bytes.
CASES = [
    ("string", {"type": "string"},
     ['"abc"', '""', r'"a\"b"', r'"\\ \/ \b\f\n\r\t"', r'"\u00e9\u00E9"', r'"\ud83d\ude00"',
      '"é😀中"', '"a\nb"', r'"\x"', '"abc', "abc", r'"\u12"', r'"\u12G4"', '"\t"',
      b'"\xff"', b'"\xc3"', b'"\xc0\xaf"', b'"\xed\xa0\x80"', b'"\xf4\x90\x80\x80"', "1", "null"],
     [r'"\ud83d"', r'"\ud83d\u0041"', r'"\ude00"', ' "a"', '"a" ', '"\x7f"']),
    ("string_len", {"type": "string", "minLength": 2, "maxLength": 4},
     ['"a"', '"ab"', '"abcd"', '"abcde"', '"éé"', '"😀😀😀😀"', '"😀😀😀😀😀"', r'"\ud83d\ude00"',
      r'"\n\t"', r'"\u0041\u0042\u0043\u0044\u0045"', '""'], []),
    ("integer", {"type": "integer"},
     ["0", "-0", "12", "-12", "01", "1.5", '"1"', "-", "123456789012345678", "+1"],
     ["1 ", "1e2", "1.0", "1234567890123456789012"]),
    ("number", {"type": "number"},
     ["0", "-0.5", "1.5e10", "1E+2", "1e-2", ".5", "1.", "1e", "-01", "NaN", "Infinity", "1e+",
      "0.000001", "-", "1.5.2"],
     ["1e123"]),
    ("boolean", {"type": "boolean"}, ["true", "false", "True", "tru", "null", "truee"], []),
    ("null", {"type": "null"}, ["null", '"null"', "nul"], []),
    ("enum", {"enum": ["red", "green", 1, None, {"a": 1}, [1, 2], 10]},
     ['"red"', '"green"', "1", "10", "null", '{"a":1}', "[1,2]", '"blue"', "2", '"gre"', "100"],
     ['{"a": 1}', "[1, 2]", "1.0"]),
    ("const", {"const": "x"}, ['"x"', '"y"', '"xx"'], []),
    ("typed_enum", {"type": "string", "enum": ["a", 1]}, ['"a"', "1"], []),
    ("object", PERSON,
     ['{"name":"a","age":1}', '{"name": "a", "age": 1}', '{"name":"a","age":1,"tags":["x","y"]}',
      '{"name":"a","age":1, "tags": []}', '{"name":"a"}', '{"name":"a","age":1,"x":2}', "{}",
      '{"name":"a","age":"1"}', '{"name":"a","age":1,}', '{"name":"a","age":1,"tags":[1]}'],
     ['{"age":1,"name":"a"}', '{"name":"a" ,"age":1}', '{ "name":"a","age":1}',
      '{"name":  "a","age":1}', '{"name":"a",\n"age":1}']),
    ("optional", {"type": "object", "properties": {"a": {"type": "integer"},
                                                   "b": {"type": "boolean"}},
                  "additionalProperties": False},
     ["{}", '{"a":1}', '{"b":true}', '{"a":1,"b":false}', '{"c":1}'],
     ['{"b":true,"a":1}', '{"a":1,"a":2}']),
    ("free_object", {"type": "object"},
     ["{}", '{"x":1}', '{"x":{"y":[1,"2",null,true,-1.5e3]}}', "[]", '{"x":}', '{"a":1,}',
      '{"a":{"b":{"c":{}}}}', '{1:2}'],
     ['{"a" :1}', '{"a":1, "b": [ ]}']),
    ("map", {"type": "object", "additionalProperties": {"type": "integer"}},
     ['{"a":1,"b":2}', '{"a":"x"}', "{}"], []),
    ("array", {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 3},
     ["[]", "[1]", "[1,2,3]", "[1, 2, 3]", "[1,2,3,4]", '["a"]', "[1,]", "[,1]"], ["[ 1]"]),
    ("prefix", {"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
                "items": False},
     ['["a",1]', '["a"]', "[]", '["a",1,2]', "[1]"], []),
    ("prefix_rest", {"type": "array", "prefixItems": [{"type": "string"}],
                     "items": {"type": "boolean"}, "minItems": 2},
     ['["a",true]', '["a"]', '["a",true,false]', '["a","b"]'], []),
    ("min_items", {"type": "array", "minItems": 2},
     ['[1,"a"]', "[1]", "[[],{}]", '[null, {"a": [true]}]'], []),
    ("anyof", {"anyOf": [{"type": "string", "maxLength": 2}, {"type": "integer"}]},
     ['"ab"', '"abc"', "5", "true", "-3"], []),
    ("two_strings", {"anyOf": [{"type": "string", "maxLength": 3},
                               {"type": "string", "minLength": 5, "maxLength": 6}]},
     ['"ab"', '"abcd"', '"abcde"', '"abcdefg"', '""'], []),
    ("type_list", {"type": ["string", "null"], "maxLength": 3},
     ['"x"', "null", "1", '"abcd"'], []),
    ("tagged", TAGGED,
     ['{"kind":"a","x":1}', '{"kind":"b","y":"s"}', '{"kind":"a","y":"s"}', '{"kind":"c","x":1}',
      '{"kind":"b","y":1}'], []),
    ("tree", TREE,
     ['{"value":1}', '{"value":1,"children":[{"value":2,"children":[]}]}',
      '{"value":1,"children":[{"children":[]}]}', '{"value":1,"children":[{"value":2}, {"value":3}]}'],
     []),
    ("definitions", {"definitions": {"c": {"enum": ["r", "g"]}}, "type": "object",
                     "properties": {"color": {"$ref": "#/definitions/c"}},
                     "required": ["color"]},
     ['{"color":"r"}', '{"color":"x"}', "{}"], ['{"color":"r","z":1}']),
    ("oneof", {"oneOf": [{"type": "boolean"}, {"type": "null"}]}, ["true", "null", "0"], []),
    ("steps", STEPS,
     ['{"steps":[{"explanation":"e","output":"o"}],"final_answer":"f"}',
      '{"steps": [], "final_answer": "f"}', '{"steps":[{"explanation":"e"}],"final_answer":"f"}',
      '{"final_answer":"f"}'], []),
    ("odd_keys", {"type": "object", "properties": {'a"b': {"type": "integer"},
                                                   "é": {"type": "integer"}},
                  "required": ['a"b'], "additionalProperties": False},
     [r'{"a\"b":1}', r'{"a\"b":1,"é":2}', '{"é":2}'], [r'{"a\"b":1,"\u00e9":2}']),
    ("bool_schema", True, ["1", '"x"', "[]", "{}", "nul"], []),
    # Numeric bounds (minimum / maximum / exclusive*): integers any bounds, numbers integer ones.
    ("int_range", {"type": "integer", "minimum": -5, "maximum": 120},
     ["0", "-5", "-6", "120", "121", "-0", "99", "1000", "-10", "5", "12", "-50"], []),
    ("int_exclusive", {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10},
     ["0", "1", "9", "10", "-1", "5"], []),
    ("int_fraction_bounds", {"type": "integer", "minimum": 1.5, "maximum": 3.5},
     ["1", "2", "3", "4", "-2"], []),
    ("int_min_only", {"type": "integer", "minimum": 100},
     ["100", "99", "5", "1000", "-100", "123456789012345678"], []),
    ("int_max_negative", {"type": "integer", "maximum": -100},
     ["-100", "-99", "-1000", "0", "-5"], []),
    ("num_unit", {"type": "number", "minimum": 0, "maximum": 1},
     ["0", "1", "0.5", "1.0", "1.5", "-0", "-0.1", "0.999", "1.000", "2", "1.001", "0.0"],
     ["1e0", "5e-1"]),
    ("num_positive", {"type": "number", "exclusiveMinimum": 0},
     ["0", "0.0", "0.001", "-0.5", "3", "0.00", "12.5"], []),
    ("num_negative", {"type": "number", "minimum": -10, "exclusiveMaximum": -2},
     ["-2", "-10", "-1.5", "-2.5", "-10.5", "-9.99", "-2.0", "-2.01", "0", "5", "-3"], []),
    ("bounded_property", {"type": "object", "properties": {
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "score": {"type": ["number", "null"], "minimum": 0, "maximum": 10}},
        "required": ["age"], "additionalProperties": False},
     ['{"age":30}', '{"age":151}', '{"age":-1}', '{"age":0,"score":9.5}', '{"age":0,"score":10.5}',
      '{"age":0,"score":null}'], []),
    # pydantic v2's field of a model type with a description: allOf of one $ref.
    ("allof_ref", {"$defs": {"Address": {"type": "object", "properties": {
        "city": {"type": "string"}}, "required": ["city"], "additionalProperties": False}},
        "type": "object", "properties": {
            "home": {"allOf": [{"$ref": "#/$defs/Address"}], "description": "Where"}},
        "required": ["home"], "additionalProperties": False},
     ['{"home":{"city":"Oslo"}}', '{"home":{}}', '{"home":"Oslo"}', '{}'], []),
    # pattern (ECMA search semantics) and format; such strings are written without escapes.
    ("pattern_anchored", {"type": "string", "pattern": "^[A-Z]{2}-\\d{3}$"},
     ['"AB-123"', '"ab-123"', '"AB-1234"', '"xAB-123"', '""', '"AB-12"'], [r'"\u0041B-123"']),
    ("pattern_search", {"type": "string", "pattern": "[0-9]+"},
     ['"abc123def"', '"7"', '"abc"', '""', '"a b 9"'], [r'"a\n9"']),
    ("pattern_len", {"type": "string", "pattern": "^a+$", "maxLength": 3},
     ['"a"', '"aaa"', '"aaaa"', '"b"', '""'], []),
    ("pattern_utf8", {"type": "string", "pattern": "^é+[a-c]?$"},
     ['"é"', '"ééb"', '"e"', '"éd"', '"b"'], []),
    ("format_date", {"type": "string", "format": "date"},
     ['"2024-01-31"', '"2024-02-28"', '"2023-02-30"', '"2024-13-01"', '"24-01-01"', '"2024-1-1"',
      '"0000-01-01"', '"0001-01-01"'],
     ['"2024-02-29"']),
    ("format_date_time", {"type": "string", "format": "date-time"},
     ['"2024-01-31T12:30:00Z"', '"2024-01-31T12:30:00.25+02:00"', '"2024-01-31 12:30:00Z"',
      '"2024-01-31T25:00:00Z"', '"2024-01-31T12:30:00"'], ['"2024-01-31t12:30:00z"']),
    ("format_time", {"type": "string", "format": "time"},
     ['"23:59:59Z"', '"00:00:00-05:30"', '"24:00:00Z"', '"12:00"'], []),
    ("format_uuid", {"type": "string", "format": "uuid"},
     ['"123e4567-e89b-12d3-a456-426614174000"', '"123e4567e89b12d3a456426614174000"',
      '"123e4567-e89b-12d3-a456-42661417400"', '"g23e4567-e89b-12d3-a456-426614174000"'], []),
    ("format_email", {"type": "string", "format": "email"},
     ['"jo.smith+x@example.co.uk"', '"nobody"', '"a@b.c"'], ['"a@b"', '"a@@b.c"']),
    ("format_ipv4", {"type": "string", "format": "ipv4"},
     ['"192.168.0.1"', '"255.255.255.255"', '"256.1.1.1"', '"01.2.3.4"', '"1.2.3"'], []),
    ("format_hostname", {"type": "string", "format": "hostname"},
     ['"example.com"', '"a-b.c"', '"localhost"', '"-a"', '"a..b"', '"a-.com"'], []),
    ("format_unknown", {"type": "string", "format": "color-name"}, ['"red"', '"anything"'], []),
    ("patterned_object", {"type": "object", "properties": {
        "id": {"type": "string", "format": "uuid"},
        "code": {"type": "string", "pattern": "^[a-z]{3}$"},
        "when": {"type": "string", "format": "date"}},
        "required": ["id", "code"], "additionalProperties": False},
     ['{"id":"123e4567-e89b-12d3-a456-426614174000","code":"abc"}',
      '{"id":"123e4567-e89b-12d3-a456-426614174000","code":"abcd"}',
      '{"id":"x","code":"abc"}',
      '{"id":"123e4567-e89b-12d3-a456-426614174000","code":"xyz","when":"2020-06-30"}'], []),
]


def to_bytes(doc):
    return doc if isinstance(doc, bytes) else doc.encode("utf-8")


def reject_constant(name):
    raise ValueError(f"not JSON: {name}")


def verdict(schema, data):
    """The reference verdict for a document given as bytes."""
    try:
        value = json.loads(data.decode("utf-8", errors="strict"), parse_constant=reject_constant)
    except ValueError:
        return False
    # Formats asserted, as generation follows them (date-time, time and hostname need the
    # rfc3339-validator and fqdn packages, else jsonschema accepts any text for them).
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER).is_valid(value)


def write_verdicts():
    cases = []
    for name, schema, policy_docs, other_docs in CASES:
        jsonschema.Draft202012Validator.check_schema(schema)
        docs = []
        for doc, policy in [(d, True) for d in policy_docs] + [(d, False) for d in other_docs]:
            data = to_bytes(doc)
            docs.append({"hex": data.hex(), "valid": verdict(schema, data), "policy": policy})
        cases.append({"name": name, "schema": schema, "docs": docs})
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "verdicts.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cases, f, indent=1, ensure_ascii=False)
        f.write("\n")
    n = sum(len(c["docs"]) for c in cases)
    print(f"wrote {path}: {len(cases)} schemas, {n} documents")


def check_outputs(path):
    """Validates outputs dumped by the C++ tests: one {"schema", "output_hex"} per line."""
    n, bad = 0, 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            rec = json.loads(line)
            n += 1
            if not verdict(rec["schema"], bytes.fromhex(rec["output_hex"])):
                bad += 1
                print("INVALID:", rec.get("case"), bytes.fromhex(rec["output_hex"])[:200])
    print(f"{n} outputs checked with jsonschema, {bad} invalid")
    return 1 if bad or n == 0 else 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-outputs", metavar="JSONL")
    args = ap.parse_args()
    if args.check_outputs:
        sys.exit(check_outputs(args.check_outputs))
    write_verdicts()


if __name__ == "__main__":
    main()
