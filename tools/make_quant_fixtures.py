#!/usr/bin/env python3
"""Fixtures for --quantize q8_0|q4_0 (quantize-on-load), under tests/fixtures/quant/.

Run:  /work/refvenv/bin/python tools/make_quant_fixtures.py

Writes:
  rows.json, rows.f32   random and edge-case fp32 rows [n_rows, n_cols] (little-endian)
  rows.q8_0, rows.q4_0  the same rows quantized by gguf-py's quantize() (the numpy port of
                        ggml's quantize_row_*_ref), n_rows * n_cols / 32 blocks each
  <model>-<q>.ref.json  transformers fp32 on the tiny HF checkpoints of tests/fixtures/models
                        after their layer projections went through gguf-py's quantize() and
                        dequantize() to <q>, and an untied lm_head through Q8_0: what Jinx's
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


def roundtrip(t, qt):
    """Weight tensor -> gguf-py quantize -> dequantize, back into an fp32 tensor."""
    import torch
    w = t.detach().to(torch.float32).numpy()
    back = dequantize(quantize(w, qt), qt).reshape(w.shape)
    return torch.from_numpy(np.ascontiguousarray(back, dtype=np.float32))


def quantized_model(name, model_cls, qt):
    import torch
    from fixtures_hf import load_fp32
    model = load_fp32(MODELS_DIR / name, model_cls)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith(".weight") and pname.split(".")[-2] in PROJECTIONS:
                p.copy_(roundtrip(p, qt))
        if not model.config.tie_word_embeddings:
            head = model.lm_head.weight
            assert head.data_ptr() != model.model.embed_tokens.weight.data_ptr()
            head.copy_(roundtrip(head, QT.Q8_0))
    return model


def build_model_refs():
    import torch
    import transformers
    from fixtures_hf import MODELS, reference
    for name, spec in MODELS.items():
        for qname, qt in QTYPES.items():
            model = quantized_model(name, spec["model_cls"], qt)
            source = (f"transformers {transformers.__version__} float32 (torch {torch.__version__}) "
                      f"on {name} with layer projections through gguf-py {qname} and an untied "
                      f"lm_head through q8_0")
            ref = reference(model, source)
            write_json(OUT / f"{name}-{qname}.ref.json", ref)
            print(f"{name}-{qname}: greedy {ref['greedy_tokens'][:10]}... min margin "
                  f"{min(ref['greedy_top2_margins']):.4f}")


def main():
    build_rows()
    build_model_refs()


if __name__ == "__main__":
    main()
