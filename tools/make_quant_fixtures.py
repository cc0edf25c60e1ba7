#!/usr/bin/env python3
"""Fixtures for --quantize q8_0|q4_0 (quantize-on-load), under tests/fixtures/quant/.

Run:  /work/refvenv/bin/python tools/make_quant_fixtures.py

Writes:
  rows.json, rows.f32   random and edge-case fp32 rows [n_rows, n_cols] (little-endian)
  rows.q8_0, rows.q4_0  the same rows quantized by gguf-py's quantize() (the numpy port of
                        ggml's quantize_row_*_ref), n_rows * n_cols / 32 blocks each
  rows_q4k.f32, rows.q4_k
                        fp32 rows [n, 256] and llama.cpp's Q4_K of them (llama_model_quantize
                        of an F32 GGUF holding the rows, via llama-cpp-python: ggml's
                        quantize_row_q4_K_ref), rows_q4k.json
  mlx_rows.<dt>, mlx_rows.<dt>.q4g64
                        rows [n, 256] stored as <dt> (f32, f16, bf16) and mlx.core.quantize of
                        them (4-bit, group 64): the uint32 words [n, 32], then scales [n, 4],
                        then biases [n, 4] in <dt> (as mlx_lm.convert -q writes a checkpoint of
                        that type), mlx_rows.json
  <model>-<q>.ref.json  transformers fp32 on the tiny HF checkpoints of tests/fixtures/models
                        after their layer projections went through gguf-py's quantize() and
                        dequantize() to <q>, and the head (a tied one copied from the embedding) through Q8_0: what Jinx's
                        --quantize <q> computes (with exact activations)

Deterministic: the same command writes the same files (given the same library versions).
Needs tests/fixtures/models/<tiny model> (tools/make_fixtures.py hf).
"""

import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gguf import GGMLQuantizationType as QT  # noqa: E402
from gguf import dequantize, quantize  # noqa: E402

from fixtures_common import MODELS_DIR, ROOT, write_json  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "quant"
N_COLS = 256  # 8 blocks of 32
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
QTYPES = {"q8_0": QT.Q8_0, "q4_0": QT.Q4_0}
# --quantize modes whose model references are made here: the gguf-py types above, plus q4_k
# (llama.cpp's own ggml quantize_row_q4_K_ref / dequantize_row_q4_K, called in libggml-base
# through ctypes) and int4 (mlx.core.quantize, affine 4-bit group 64, scales in the stored type).
MODEL_QUANTS = ("q8_0", "q4_0", "q4_k", "int4")


def to_bf16(x):
    """Round fp32 to the nearest bfloat16 (ties to even), as a checkpoint stores weights."""
    u = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(np.float32)


def edge_rows():
    """Rows aimed at the rounding rules: ties of magnitude, exact halves, clipping at 15,
    zero and one-hot blocks, subnormal scales."""
    rows = []
    r = np.zeros(N_COLS, np.float32)  # block 0 all zero; block 1 one-hot; blocks 2-3 ties
    r[32 + 5] = 0.25
    r[64 + 3], r[64 + 10] = -0.7, 0.7   # Q4_0 takes the first: max = -0.7
    r[96 + 3], r[96 + 10] = 0.7, -0.7   # ... max = +0.7
    r[128:160] = 1.0                    # constant block
    r[160:192] = -np.linspace(0.1, 3.0, 32, dtype=np.float32)
    r[192:224] = np.float32(1e-30)      # tiny: scale rounds to 0 in f16
    r[224:256] = np.linspace(-2e-5, 3e-5, 32, dtype=np.float32)  # f16-subnormal scale
    rows.append(r)
    # Q8_0 with amax 127: d = 1 exactly, halves round away from zero.
    r = np.arange(N_COLS, dtype=np.float32) % 64 - np.float32(31.5)  # -31.5, -30.5, ... 32.5
    r[::32] = 127.0
    r[16::32] = -127.0
    rows.append(r)
    # Q4_0 with max -8: d = 1, x + 8.5 lands on integers; 8 and above clip to 15.
    r = np.tile(np.linspace(-8.0, 8.0, 32, dtype=np.float32), N_COLS // 32)
    r[::32] = -8.0
    r[1::32] = 8.0
    r[2::32] = 7.5
    r[3::32] = -0.5
    rows.append(r)
    # Q4_0 where x / d is exactly k + 0.5 but 1 / d is inexact: x * id rounds to k + 0.5, and
    # only an implementation that rounds the product before adding 8.5 gets trunc right (an
    # FMA gives k + 0.5 - ulp). Scales 3, 5, 7, 13 times a power of two, both signs.
    r = np.zeros(N_COLS, np.float32)
    for i, m in enumerate([0.09375, 0.1875, -0.0859375, 0.1015625, 3.0, -5.0, 7.0, -0.8125]):
        k = np.arange(-8, 8, dtype=np.float32)
        r[i * 32:i * 32 + 16] = (k + np.float32(0.5)) * np.float32(m) / np.float32(8)
        r[i * 32 + 16:i * 32 + 32] = -(k + np.float32(0.5)) * np.float32(m) / np.float32(8)
        r[i * 32 + 31] = m
    rows.append(r)
    return rows


def random_rows():
    rng = np.random.default_rng(20240605)
    rows = [to_bf16(rng.normal(0, 0.05, N_COLS)) for _ in range(16)]   # typical bf16 weights
    rows += [rng.normal(0, 1, N_COLS).astype(np.float32) for _ in range(8)]
    rows += [rng.uniform(-1e3, 1e3, N_COLS).astype(np.float32) for _ in range(4)]
    rows += [rng.normal(0, 1e-5, N_COLS).astype(np.float32) for _ in range(2)]
    # Heavy tails: one outlier per block dominates the scale.
    for _ in range(4):
        r = rng.normal(0, 0.02, N_COLS).astype(np.float32)
        r[rng.integers(0, 32, N_COLS // 32) + np.arange(0, N_COLS, 32)] *= 40
        rows.append(r)
    return rows


def build_rows():
    rows = np.stack(edge_rows() + random_rows()).astype(np.float32)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "rows.f32").write_bytes(rows.astype("<f4").tobytes())
    for name, qt in QTYPES.items():
        q = quantize(rows, qt)
        block_bytes = 34 if qt == QT.Q8_0 else 18
        assert q.dtype == np.uint8 and q.shape == (rows.shape[0], rows.shape[1] // 32 * block_bytes)
        (OUT / f"rows.{name}").write_bytes(q.tobytes())
    write_json(OUT / "rows.json", {
        "n_rows": int(rows.shape[0]), "n_cols": int(rows.shape[1]),
        "source": f"gguf-py {version('gguf')} quants.quantize, numpy {np.__version__}",
    })
    print(f"rows: {rows.shape[0]} x {rows.shape[1]}")


def ggml_base():
    """llama.cpp's ggml-base library from llama-cpp-python, with its Q4_K reference functions."""
    import ctypes
    import llama_cpp
    lib = ctypes.CDLL(str(Path(llama_cpp.__file__).parent / "lib" / "libggml-base.so"))
    for fn in (lib.quantize_row_q4_K_ref, lib.dequantize_row_q4_K):
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
    return lib


def q4k_roundtrip(w):
    """fp32 [rows, cols] -> ggml Q4_K -> fp32, by llama.cpp's own code."""
    lib = ggml_base()
    w = np.ascontiguousarray(w, dtype=np.float32)
    assert w.shape[-1] % 256 == 0
    blocks = np.zeros(w.size // 256 * 144, np.uint8)
    back = np.zeros_like(w)
    lib.quantize_row_q4_K_ref(w.ctypes.data, blocks.ctypes.data, w.size)
    lib.dequantize_row_q4_K(blocks.ctypes.data, back.ctypes.data, w.size)
    return back


def int4_roundtrip(w, stored_dtype):
    """fp32 [rows, cols] holding values of stored_dtype -> mlx.core.quantize (4-bit, group 64,
    in that dtype) -> scale * q + bias in fp32 from the stored (rounded) scales and biases."""
    import mlx.core as mx
    mt = {"torch.float32": mx.float32, "torch.float16": mx.float16,
          "torch.bfloat16": mx.bfloat16}[str(stored_dtype)]
    wq, scales, biases = mx.quantize(mx.array(w).astype(mt), group_size=64, bits=4)
    words = np.array(wq, dtype=np.uint32)
    q = (words[..., None] >> (4 * np.arange(8, dtype=np.uint32))) & 15
    q = q.reshape(w.shape).astype(np.float32)
    s = np.repeat(np.array(scales.astype(mx.float32)), 64, axis=-1)
    b = np.repeat(np.array(biases.astype(mx.float32)), 64, axis=-1)
    return (s * q + b).astype(np.float32)


def roundtrip(t, qname, stored_dtype=None):
    """Weight tensor -> quantize -> dequantize as --quantize <qname> does, back into fp32."""
    import torch
    w = t.detach().to(torch.float32).numpy()
    if qname == "q4_k":
        back = q4k_roundtrip(w)
    elif qname == "int4":
        back = int4_roundtrip(w, stored_dtype)
    else:
        qt = QTYPES[qname]
        back = dequantize(quantize(w, qt), qt).reshape(w.shape)
    return torch.from_numpy(np.ascontiguousarray(back, dtype=np.float32))


def stored_dtypes(name):
    """Tensor name -> torch dtype as stored in the checkpoint's safetensors."""
    from safetensors import safe_open
    out = {}
    for f in sorted((MODELS_DIR / name).glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as st:
            for k in st.keys():
                out[k] = st.get_slice(k).get_dtype()
    return {k: {"F32": "torch.float32", "F16": "torch.float16", "BF16": "torch.bfloat16"}[v]
            for k, v in out.items()}


def quantized_model(name, model_cls, qname):
    import torch
    from fixtures_hf import load_fp32
    model = load_fp32(MODELS_DIR / name, model_cls)
    dtypes = stored_dtypes(name)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith(".weight") and pname.split(".")[-2] in PROJECTIONS:
                p.copy_(roundtrip(p, qname, dtypes[pname]))
        if model.config.tie_word_embeddings:
            # Jinx keeps the embedding and gives the head a Q8_0 copy of it: untie them here.
            emb = model.model.embed_tokens.weight
            model.config.tie_word_embeddings = False
            model.lm_head.weight = torch.nn.Parameter(roundtrip(emb.detach().clone(), "q8_0"))
        else:
            head = model.lm_head.weight
            assert head.data_ptr() != model.model.embed_tokens.weight.data_ptr()
            head.copy_(roundtrip(head, "q8_0"))
    return model


def q4k_edge_rows(rng):
    """Rows aimed at Q4_K's special cases: an all-zero super-block, a zero sub-block among
    non-zero ones (its 6-bit scale is 0: the fit's codes stay), all-positive (min clamps to 0),
    all-negative, constant, tiny (f16-subnormal d), one outlier per super-block."""
    rows = []
    rows.append(np.zeros(N_COLS, np.float32))
    r = rng.normal(0, 1, N_COLS).astype(np.float32)
    r[64:96] = 0
    rows.append(r)
    r = rng.normal(0, 0.05, N_COLS).astype(np.float32)
    r[0:32] = np.float32(1e-4) * rng.normal(0, 1, 32).astype(np.float32)  # scale rounds to 0
    rows.append(r)
    rows.append(np.abs(rng.normal(0, 1, N_COLS)).astype(np.float32) + np.float32(0.5))
    rows.append(-np.abs(rng.normal(0, 1, N_COLS)).astype(np.float32))
    rows.append(np.full(N_COLS, 0.75, np.float32))
    rows.append(rng.normal(0, 1e-6, N_COLS).astype(np.float32))
    r = rng.normal(0, 0.02, N_COLS).astype(np.float32)
    r[77] = 5.0
    rows.append(r)
    r = np.tile(np.arange(16, dtype=np.float32), N_COLS // 16) * np.float32(0.125)  # on the grid
    rows.append(r)
    return rows


def build_q4k_rows():
    """llama.cpp's own Q4_K of fixture rows: the rows go into blk.0.attn_q.weight (256 rows of
    256) of the tiny-llama F32 GGUF, llama_model_quantize (Q4_K_M, pure: every matrix Q4_K)
    rewrites the file, and the first n rows of the result are kept."""
    import shutil
    import tempfile

    import gguf
    import fixtures_llamacpp
    rng = np.random.default_rng(44)
    rows = np.fromfile(OUT / "rows.f32", dtype="<f4").reshape(-1, N_COLS)
    rows = np.concatenate([rows, np.stack(q4k_edge_rows(rng))]).astype(np.float32)
    src_model = MODELS_DIR / "tiny-llama-f32.gguf"
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "rows-f32.gguf", Path(tmp) / "rows-q4_k.gguf"
        shutil.copy(src_model, src)
        t = next(x for x in gguf.GGUFReader(str(src)).tensors if x.name == "blk.0.attn_q.weight")
        assert t.tensor_type == QT.F32 and t.data.shape == (256, N_COLS)
        assert rows.shape[0] <= 256
        with open(src, "r+b") as f:
            f.seek(int(t.data_offset))
            f.write(rows.astype("<f4").tobytes())
        fixtures_llamacpp.call("quantize", src, dst, 15, 1)  # LLAMA_FTYPE_MOSTLY_Q4_K_M, pure
        q = next(x for x in gguf.GGUFReader(str(dst)).tensors if x.name == "blk.0.attn_q.weight")
        assert q.tensor_type == QT.Q4_K
        qbytes = np.asarray(q.data, np.uint8).reshape(256, -1)[:rows.shape[0]]
    assert qbytes.shape[1] == 144
    (OUT / "rows_q4k.f32").write_bytes(rows.astype("<f4").tobytes())
    (OUT / "rows.q4_k").write_bytes(qbytes.tobytes())
    write_json(OUT / "rows_q4k.json", {
        "n_rows": int(rows.shape[0]), "n_cols": N_COLS,
        "source": f"llama.cpp llama_model_quantize Q4_K (llama-cpp-python "
                  f"{version('llama_cpp_python')})",
    })
    print(f"q4_k rows: {rows.shape[0]} x {N_COLS}")


def build_mlx_rows():
    """mlx.core.quantize (affine, 4-bit, group 64) of rows stored as f32, f16 and bf16."""
    import mlx.core as mx
    rows = np.fromfile(OUT / "rows.f32", dtype="<f4").reshape(-1, N_COLS)
    rows = rows[np.abs(rows).max(axis=1) < 6e4]  # finite in f16
    mx_types = {"f32": mx.float32, "f16": mx.float16, "bf16": mx.bfloat16}
    for name, mt in mx_types.items():
        if name == "bf16":
            stored = to_bf16(rows)
        elif name == "f16":
            stored = rows.astype(np.float16).astype(np.float32)
        else:
            stored = rows
        w = mx.array(stored).astype(mt)
        wq, scales, biases = mx.quantize(w, group_size=64, bits=4)
        raw_dt = np.uint32 if name == "f32" else np.uint16
        view_dt = mx.uint32 if name == "f32" else mx.uint16
        parts = [np.array(wq, dtype=np.uint32).astype("<u4").tobytes(),
                 np.array(scales.view(view_dt)).astype(raw_dt).tobytes(),
                 np.array(biases.view(view_dt)).astype(raw_dt).tobytes()]
        stored_bytes = np.array(w.view(view_dt)).astype(raw_dt).tobytes()
        (OUT / f"mlx_rows.{name}").write_bytes(stored_bytes)
        (OUT / f"mlx_rows.{name}.q4g64").write_bytes(b"".join(parts))
    write_json(OUT / "mlx_rows.json", {
        "n_rows": int(rows.shape[0]), "n_cols": N_COLS, "bits": 4, "group_size": 64,
        "types": list(mx_types), "source": f"mlx {version('mlx')} mlx.core.quantize (cpu)",
    })
    print(f"mlx rows: {rows.shape[0]} x {N_COLS}")


def build_model_refs():
    import torch
    import transformers
    from fixtures_hf import MODELS, reference
    only = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--quants=")]
    quants = only[0].split(",") if only else MODEL_QUANTS
    for name, spec in MODELS.items():
        for qname in quants:
            model = quantized_model(name, spec["model_cls"], qname)
            how = {"q4_k": "llama.cpp ggml quantize_row_q4_K_ref",
                   "int4": f"mlx {version('mlx')} quantize (4-bit, group 64)"}.get(
                       qname, f"gguf-py {qname}")
            source = (f"transformers {transformers.__version__} float32 (torch {torch.__version__}) "
                      f"on {name} with layer projections through {how} and the head "
                      f"(lm_head, or a copy of a tied embedding) through gguf-py q8_0")
            ref = reference(model, source)
            write_json(OUT / f"{name}-{qname}.ref.json", ref)
            print(f"{name}-{qname}: greedy {ref['greedy_tokens'][:10]}... min margin "
                  f"{min(ref['greedy_top2_margins']):.4f}")


def main():
    build_rows()
    build_q4k_rows()
    build_mlx_rows()
    if "--rows-only" not in sys.argv:
        build_model_refs()


if __name__ == "__main__":
    main()
