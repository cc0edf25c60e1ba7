#!/usr/bin/env python3
"""Writes the GGUF reader and dequantization fixtures into tests/fixtures/gguf/.

Run (re-runnable, deterministic):  /work/refvenv/bin/python tools/make_gguf_fixtures.py

Everything expected here comes from the independent `gguf` PyPI package (gguf-py): the files are
written by gguf.GGUFWriter, read back with gguf.GGUFReader as a cross-check, and the expected
fp32 values come from gguf.quants.dequantize.

Outputs:
  all_types_v3.gguf   metadata of every value type (incl. string arrays, nested arrays) and one
                      tensor of every supported type (1-D to 4-D), default alignment (32)
  all_types_v2.gguf   the same bytes with the version field patched to 2 (GGUFWriter only
                      writes v3; v2 and v3 share the little-endian layout)
  align64_v3.gguf     general.alignment = 64, two tensors
  expected.json       expected metadata (in file order) and tensors (row-major shape, ggml type,
                      expected-values file) of each .gguf
  expected/<tensor>.raw.bin   the tensor's bytes as written (blocks)
  expected/<tensor>.f32.bin   their gguf.quants.dequantize values (raw little-endian f32)
  dequant/manifest.txt        lines "<DTYPE> <n_elements> <stem>" for the dequant test
  dequant/<stem>.raw.bin      raw blocks (random bits with sane f16 scales, and gguf-quantized data)
  dequant/<stem>.f32.bin      gguf.quants.dequantize of those blocks
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT

TENSOR_MANIFEST: list[str] = []  # the GGUF fixtures' tensors, also listed for the dequant test
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "gguf"

TYPE_NAMES = {VT.UINT8: "u8", VT.INT8: "i8", VT.UINT16: "u16", VT.INT16: "i16",
              VT.UINT32: "u32", VT.INT32: "i32", VT.FLOAT32: "f32", VT.BOOL: "bool",
              VT.STRING: "str", VT.ARRAY: "arr", VT.UINT64: "u64", VT.INT64: "i64",
              VT.FLOAT64: "f64"}
NP_OF = {VT.UINT8: np.uint8, VT.INT8: np.int8, VT.UINT16: np.uint16, VT.INT16: np.int16,
         VT.UINT32: np.uint32, VT.INT32: np.int32, VT.FLOAT32: np.float32,
         VT.UINT64: np.uint64, VT.INT64: np.int64, VT.FLOAT64: np.float64}

# ------------------------------------------------------------------------------------------
# Random blocks for the types gguf-py cannot quantize (and extra coverage for the others).
# Dequant-only types covered: Q8_0, Q4_0, Q4_1, Q5_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS,
# MXFP4.


def sane_f16(rng: np.random.Generator, n: int) -> np.ndarray:
    """f16 scales of varied magnitude and sign, with some zeros and subnormals."""
    v = rng.standard_normal(n).astype(np.float32) * np.float32(2.0) ** rng.integers(-12, 3, n)
    v[rng.random(n) < 0.05] = 0.0
    sub = rng.random(n) < 0.05
    v[sub] = rng.integers(1, 1024, sub.sum()) * np.float32(2.0 ** -24)  # f16 subnormals
    return v.astype(np.float16)


def random_blocks(rng: np.random.Generator, qt: QT, n_blocks: int) -> np.ndarray:
    """n_blocks blocks of type qt: random quant/scale bits, f16 fields set to sane values."""
    block_elems, block_bytes = gguf.GGML_QUANT_SIZES[qt]
    raw = rng.integers(0, 256, (n_blocks, block_bytes), dtype=np.uint8)
    # Byte offsets of the f16 fields of each block (core/quant_blocks.h).
    f16_fields = {QT.Q8_0: [0], QT.Q4_0: [0], QT.Q4_1: [0, 2], QT.Q4_K: [0, 2], QT.Q5_K: [0, 2],
                  QT.Q6_K: [208],
                  QT.Q5_1: [0, 2],     # d, m, qh[4], qs[16]
                  QT.Q2_K: [80, 82],   # scales[16], qs[64], d, dmin
                  QT.Q3_K: [108],      # hmask[32], qs[64], scales[12], d
                  QT.IQ4_NL: [0],      # d, qs[16]
                  QT.IQ4_XS: [0],      # d, scales_h (u16), scales_l[4], qs[128]
                  QT.MXFP4: [],        # e (E8M0, any byte), qs[16]
                  }[qt]
    for off in f16_fields:
        raw[:, off:off + 2] = sane_f16(rng, n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return raw


def raw_bits(rng: np.random.Generator, qt: QT, n: int) -> np.ndarray:
    """Any bit pattern at all (NaN, inf, subnormals included) for the plain float types."""
    nbytes = {QT.F32: 4, QT.F16: 2, QT.BF16: 2}[qt] * n
    return rng.integers(0, 256, nbytes, dtype=np.uint8)


def quantized(rng: np.random.Generator, qt: QT, shape: tuple[int, ...]) -> np.ndarray:
    """Blocks of qt for random data of `shape` (row-major, last dim contiguous), as uint8 rows."""
    data = (rng.standard_normal(shape) * 0.5).astype(np.float32)
    if qt in (QT.F32, QT.F16):
        return gguf.quants.quantize(data, qt).view(np.uint8).reshape(*shape[:-1], -1)
    if qt in (QT.Q8_0, QT.Q4_0, QT.Q4_1, QT.Q5_1, QT.MXFP4, QT.BF16):
        return gguf.quants.quantize(data, qt)
    block_elems, _ = gguf.GGML_QUANT_SIZES[qt]
    n_blocks = int(np.prod(shape)) // block_elems
    return random_blocks(rng, qt, n_blocks).reshape(*shape[:-1], -1)


def dequant(raw: np.ndarray, qt: QT) -> np.ndarray:
    return np.ascontiguousarray(gguf.quants.dequantize(raw.reshape(-1), qt), dtype=np.float32)


# ------------------------------------------------------------------------------------------
# Metadata of every type.


def metadata_spec() -> list[tuple[str, VT, object, VT | None]]:
    tokens = ["<|endoftext|>", "", "a\x00b", "héllo", "✓", "Ġthe", "\n"] + [
        f"tok{i}" for i in range(293)]
    return [
        ("general.name", VT.STRING, "jinx all-types fixture", None),
        ("test.u8", VT.UINT8, 255, None),
        ("test.i8", VT.INT8, -128, None),
        ("test.u16", VT.UINT16, 65535, None),
        ("test.i16", VT.INT16, -32768, None),
        ("test.u32", VT.UINT32, 4294967295, None),
        ("test.i32", VT.INT32, -2147483648, None),
        ("test.f32", VT.FLOAT32, 3.14159, None),
        ("test.bool_true", VT.BOOL, True, None),
        ("test.bool_false", VT.BOOL, False, None),
        ("test.string", VT.STRING, "hello, wörld ✓", None),
        ("test.u64", VT.UINT64, 2**63 - 1, None),
        ("test.u64_max", VT.UINT64, 2**64 - 1, None),
        ("test.i64", VT.INT64, -(2**63), None),
        ("test.f64", VT.FLOAT64, 2.718281828459045, None),
        ("test.arr_u8", VT.ARRAY, [0, 1, 255], VT.UINT8),
        ("test.arr_i8", VT.ARRAY, [-128, 0, 127], VT.INT8),
        ("test.arr_u16", VT.ARRAY, [0, 65535], VT.UINT16),
        ("test.arr_i16", VT.ARRAY, [-32768, 32767], VT.INT16),
        ("test.arr_u32", VT.ARRAY, [1, 2, 4294967295], VT.UINT32),
        ("test.arr_i32", VT.ARRAY, [-1, 0, 2147483647], VT.INT32),
        ("test.arr_f32", VT.ARRAY, [0.5, -1.25, 1e-3], VT.FLOAT32),
        ("test.arr_bool", VT.ARRAY, [True, False, True], VT.BOOL),
        ("test.arr_u64", VT.ARRAY, [0, 2**63], VT.UINT64),
        ("test.arr_i64", VT.ARRAY, [-(2**63), 2**62], VT.INT64),
        ("test.arr_f64", VT.ARRAY, [1.0 / 3.0, -2.5e300], VT.FLOAT64),
        ("test.nested_i32", VT.ARRAY, [[1, 2], [3], [4, 5, 6]], VT.ARRAY),
        ("test.nested_str", VT.ARRAY, [["a", "bc"], ["", "✓"]], VT.ARRAY),
        ("test.nested3", VT.ARRAY, [[[1]], [[2, 3], [4]]], VT.ARRAY),
        ("tokenizer.ggml.model", VT.STRING, "gpt2", None),
        ("tokenizer.ggml.tokens", VT.ARRAY, tokens, VT.STRING),
        ("tokenizer.ggml.scores", VT.ARRAY, [float(-i) for i in range(len(tokens))], VT.FLOAT32),
        ("tokenizer.ggml.token_type", VT.ARRAY, [1] * len(tokens), VT.INT32),
        ("tokenizer.ggml.bos_token_id", VT.UINT32, 0, None),
    ]


def stored(value: object, vtype: VT) -> object:
    """The value as the file stores it (f32 rounding applied), for the expected JSON."""
    if vtype in NP_OF:
        return NP_OF[vtype](value).item()
    return value


def json_value(value: object, vtype: VT, sub: VT | None) -> dict:
    if vtype != VT.ARRAY:
        return {"type": TYPE_NAMES[vtype], "value": stored(value, vtype)}
    assert isinstance(value, list)
    if sub is None:
        sub = VT.get_type(value[0])
    if sub == VT.ARRAY:
        return {"type": "arr", "elem": "arr", "value": [json_value(v, VT.ARRAY, None) for v in value]}
    return {"type": "arr", "elem": TYPE_NAMES[sub], "value": [stored(v, sub) for v in value]}


# ------------------------------------------------------------------------------------------


def write_gguf(path: Path, arch: str, kvs, tensors, alignment: int | None) -> dict:
    """Writes a GGUF file and returns its expected description."""
    w = gguf.GGUFWriter(path, arch)
    if alignment is not None:
        w.add_custom_alignment(alignment)
    for key, vtype, value, sub in kvs:
        w.add_key_value(key, value, vtype, sub_type=sub)
    expected_tensors = []
    for name, qt, shape, raw in tensors:
        w.add_tensor(name, raw, raw_dtype=qt)  # byte shape -> element shape
        values = dequant(raw, qt)
        assert values.size == int(np.prod(shape))
        (OUT / "expected" / f"{name}.f32.bin").write_bytes(values.astype("<f4").tobytes())
        (OUT / "expected" / f"{name}.raw.bin").write_bytes(raw.tobytes())
        TENSOR_MANIFEST.append(f"{qt.name} {values.size} ../expected/{name}")
        expected_tensors.append({"name": name, "ggml_type": int(qt), "type_name": qt.name,
                                 "shape": list(shape), "expected": f"expected/{name}.f32.bin",
                                 "raw": f"expected/{name}.raw.bin"})
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    meta = [{"key": "general.architecture", "type": "str", "value": arch}]
    if alignment is not None:
        meta.append({"key": "general.alignment", "type": "u32", "value": alignment})
    meta += [{"key": k, **json_value(v, t, s)} for k, t, v, s in kvs]
    return {"version": 3, "alignment": alignment or 32, "metadata": meta,
            "tensors": expected_tensors}


def cross_check(path: Path, desc: dict) -> None:
    """Reads the file back with gguf.GGUFReader and compares with the expected description."""
    r = gguf.GGUFReader(path)
    keys = [k for k in r.fields if not k.startswith("GGUF.")]
    assert keys == [m["key"] for m in desc["metadata"]], keys
    for m in desc["metadata"]:
        f = r.fields[m["key"]]
        if m["type"] != "arr" or m["elem"] != "arr":
            got = f.contents()
            want = m["value"]
            assert got == want or np.allclose(got, want, rtol=0, atol=0), (m["key"], got, want)
    for t, rt in zip(desc["tensors"], r.tensors):
        assert rt.name == t["name"] and int(rt.tensor_type) == t["ggml_type"]
        assert list(reversed([int(x) for x in rt.shape])) == t["shape"], (rt.shape, t["shape"])
        want = np.fromfile(OUT / t["expected"], dtype="<f4")
        got = dequant(np.asarray(rt.data).view(np.uint8), rt.tensor_type)
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), t["name"]


def all_types_tensors(rng: np.random.Generator):
    specs = [  # name, type, row-major shape
        ("t.f32", QT.F32, (3, 64)),
        ("t.f16", QT.F16, (2, 2, 32)),
        ("t.bf16", QT.BF16, (4, 64)),
        ("t.q8_0", QT.Q8_0, (2, 64)),
        ("t.q4_0", QT.Q4_0, (2, 64)),
        ("t.q4_1", QT.Q4_1, (2, 64)),
        ("t.q4_k", QT.Q4_K, (2, 256)),
        ("t.q5_k", QT.Q5_K, (2, 1, 256)),
        ("t.q6_k", QT.Q6_K, (2, 256)),
        ("t.4d", QT.F32, (2, 3, 2, 32)),
        ("t.1d", QT.F32, (32,)),
    ]
    return [(n, qt, s, quantized(rng, qt, s)) for n, qt, s in specs]


def write_dequant_fixtures(rng: np.random.Generator) -> None:
    d = OUT / "dequant"
    d.mkdir(parents=True, exist_ok=True)
    lines = []

    def emit(stem: str, qt: QT, raw: np.ndarray) -> None:
        raw = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
        values = dequant(raw, qt)
        (d / f"{stem}.raw.bin").write_bytes(raw.tobytes())
        (d / f"{stem}.f32.bin").write_bytes(values.astype("<f4").tobytes())
        lines.append(f"{qt.name} {values.size} {stem}")

    for qt in (QT.F32, QT.F16, QT.BF16):
        emit(f"{qt.name.lower()}_bits", qt, raw_bits(rng, qt, 4096))
        emit(f"{qt.name.lower()}_data", qt, quantized(rng, qt, (4, 256)))
    for qt in (QT.Q8_0, QT.Q4_0, QT.Q4_1):
        emit(f"{qt.name.lower()}_random", qt, random_blocks(rng, qt, 128))
        emit(f"{qt.name.lower()}_data", qt, quantized(rng, qt, (8, 256)))
    for qt in (QT.Q4_K, QT.Q5_K, QT.Q6_K):
        emit(f"{qt.name.lower()}_random", qt, random_blocks(rng, qt, 48))
    # Added later: every use of rng below comes after all the earlier ones, so the files above
    # stay byte-identical when these are regenerated.
    for qt in (QT.Q5_1, QT.IQ4_NL):
        emit(f"{qt.name.lower()}_random", qt, random_blocks(rng, qt, 128))
    emit("q5_1_data", QT.Q5_1, quantized(rng, QT.Q5_1, (8, 256)))
    for qt in (QT.Q2_K, QT.Q3_K, QT.IQ4_XS):
        emit(f"{qt.name.lower()}_random", qt, random_blocks(rng, qt, 48))
    # MXFP4: every exponent byte at random, the extremes first (0 and 1 give denormal scales;
    # gguf-py and ggml read 255 as 2^127, not NaN, and large scales overflow to inf).
    mxfp4 = random_blocks(rng, QT.MXFP4, 128)
    mxfp4[:7, 0] = [0, 1, 2, 127, 128, 254, 255]
    emit("mxfp4_random", QT.MXFP4, mxfp4)
    emit("mxfp4_data", QT.MXFP4, quantized(rng, QT.MXFP4, (8, 256)))
    lines += TENSOR_MANIFEST
    (d / "manifest.txt").write_text(
        "# <DTYPE> <n_elements> <stem>: <stem>.raw.bin dequantizes to <stem>.f32.bin "
        "(gguf.quants.dequantize)\n" + "\n".join(lines) + "\n")


def main() -> None:
    if OUT.exists():
        shutil.rmtree(OUT)
    (OUT / "expected").mkdir(parents=True)
    rng = np.random.default_rng(1234)

    v3 = OUT / "all_types_v3.gguf"
    desc = {"all_types_v3.gguf": write_gguf(v3, "llama", metadata_spec(), all_types_tensors(rng),
                                            None)}
    cross_check(v3, desc["all_types_v3.gguf"])

    # v2: same layout as v3 for little-endian files; patch the version field (bytes 4..7).
    v2 = OUT / "all_types_v2.gguf"
    data = bytearray(v3.read_bytes())
    assert data[4:8] == (3).to_bytes(4, "little")
    data[4:8] = (2).to_bytes(4, "little")
    v2.write_bytes(bytes(data))
    desc["all_types_v2.gguf"] = dict(desc["all_types_v3.gguf"], version=2)

    a64 = OUT / "align64_v3.gguf"
    small_kvs = [("general.name", VT.STRING, "aligned", None)]
    small_tensors = [(n, qt, s, quantized(rng, qt, s)) for n, qt, s in
                     [("a.q8_0", QT.Q8_0, (1, 32)), ("a.f16", QT.F16, (3, 32))]]
    desc["align64_v3.gguf"] = write_gguf(a64, "qwen2", small_kvs, small_tensors, 64)
    cross_check(a64, desc["align64_v3.gguf"])

    (OUT / "expected.json").write_text(json.dumps(desc, indent=1, ensure_ascii=True) + "\n")
    write_dequant_fixtures(rng)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes)")
    assert total < 1_000_000


if __name__ == "__main__":
    main()
