#!/usr/bin/env python3
"""Writes the safetensors reader's fixtures into tests/fixtures/safetensors/.

Run from anywhere:  /work/refvenv/bin/python tools/make_safetensors_fixtures.py

Files are written by the reference libraries (safetensors.torch, mlx.core.save_safetensors) and
the expected values come from them (torch tensors, mlx.core.dequantize), never from Jinx.

  single/model.safetensors + single/expected.json   one file, every supported dtype
  sharded/model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json + expected.json
  mlx/model.safetensors + mlx/config.json + mlx/expected.json + mlx/<name>.dequant.f32
      MLX affine-quantized matrices (several bits / group sizes / scale dtypes); the .f32 files
      hold mlx.core.dequantize's output (little-endian float32, row-major [out, in]).
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
from safetensors.torch import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "safetensors")

# torch dtype -> safetensors dtype name
ST_NAMES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.uint32: "U32", torch.int16: "I16",
    torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL",
}


def expected_entry(t):
    """Exact values as JSON numbers (f16/bf16 widen exactly to float64)."""
    if t.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        values = t.to(torch.float64).flatten().tolist()
    elif t.dtype == torch.bool:
        values = [int(v) for v in t.flatten().tolist()]
    elif t.dtype == torch.uint32:
        values = t.to(torch.int64).flatten().tolist()
    else:
        values = t.flatten().tolist()
    return {"dtype": ST_NAMES[t.dtype], "shape": list(t.shape), "values": values}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


def single_tensors():
    g = torch.Generator().manual_seed(1)
    return {
        "f64": torch.randn(2, 3, generator=g, dtype=torch.float64),
        "f32": torch.randn(3, 4, generator=g),
        "f16": torch.randn(5, generator=g).to(torch.float16),
        "bf16": torch.randn(2, 2, 2, generator=g).to(torch.bfloat16),
        "i64": torch.tensor([-(2**40), 0, 2**62 + 7], dtype=torch.int64),
        "i32": torch.tensor([[-2147483648, -1], [7, 2147483647]], dtype=torch.int32),
        "u32": torch.tensor([0, 1, 4294967295], dtype=torch.int64).to(torch.uint32),
        "i16": torch.tensor([-32768, 123, 32767], dtype=torch.int16),
        "i8": torch.tensor([[-128, 0], [5, 127]], dtype=torch.int8),
        "u8": torch.tensor([0, 200, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True, True]),
        "scalar": torch.tensor(3.5, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
        "layer.0.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
    }


def make_single():
    d = os.path.join(OUT, "single")
    os.makedirs(d)
    tensors = single_tensors()
    meta = {"format": "pt", "note": "jinx safetensors fixture"}
    save_file(tensors, os.path.join(d, "model.safetensors"), metadata=meta)
    write_json(os.path.join(d, "expected.json"),
               {"metadata": meta, "tensors": {k: expected_entry(v) for k, v in tensors.items()}})


def make_sharded():
    d = os.path.join(OUT, "sharded")
    os.makedirs(d)
    g = torch.Generator().manual_seed(2)
    shards = [
        {"embed.weight": torch.randn(6, 4, generator=g).to(torch.bfloat16),
         "layers.0.attn.weight": torch.randn(4, 4, generator=g)},
        {"layers.1.attn.weight": torch.randn(4, 4, generator=g).to(torch.float16),
         "norm.weight": torch.ones(4), "lm_head.weight": torch.randn(6, 4, generator=g)},
    ]
    weight_map, expected, total = {}, {}, 0
    for i, tensors in enumerate(shards):
        name = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(tensors, os.path.join(d, name), metadata={"format": "pt"})
        for k, v in tensors.items():
            weight_map[k] = name
            expected[k] = dict(expected_entry(v), file=name)
            total += v.numel() * v.element_size()
    write_json(os.path.join(d, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": weight_map})
    write_json(os.path.join(d, "expected.json"), {"total_size": total, "tensors": expected})


def make_mlx():
    try:
        import mlx.core as mx
    except ImportError:
        sys.exit("mlx is not installed in this venv (stage 2 of /tmp/refvenv.log)")
    d = os.path.join(OUT, "mlx")
    os.makedirs(d)
    mx.random.seed(3)
    # name, out, in, bits, group_size, weight/scale dtype
    specs = [
        ("model.layers.0.mlp.up_proj", 8, 128, 4, 64, mx.bfloat16),
        ("model.layers.0.mlp.down_proj", 4, 128, 8, 32, mx.float16),
        ("model.layers.0.self_attn.q_proj", 4, 128, 3, 64, mx.float32),
        ("model.layers.0.self_attn.k_proj", 4, 64, 6, 32, mx.float16),
        ("model.layers.0.self_attn.v_proj", 2, 256, 2, 128, mx.bfloat16),
    ]
    arrays, expected = {}, {}
    for name, out, inp, bits, gs, dt in specs:
        # Per-row and per-column scale so that groups get distinct scales and biases.
        w = mx.random.normal((out, inp)) * mx.exp(mx.random.normal((out, 1)))
        w = (w + mx.random.uniform(shape=(1, inp))).astype(dt)
        wq, scales, biases = mx.quantize(w, group_size=gs, bits=bits)
        arrays[name + ".weight"] = wq
        arrays[name + ".scales"] = scales
        arrays[name + ".biases"] = biases
        # Dequantize in float32 so the reference is the affine formula without output rounding.
        deq = mx.dequantize(wq, scales.astype(mx.float32), biases.astype(mx.float32),
                            group_size=gs, bits=bits)
        np.asarray(deq, dtype="<f4").tofile(os.path.join(d, name + ".dequant.f32"))
        expected[name] = {"bits": bits, "group_size": gs, "rows": out, "cols": inp,
                          "packed_cols": int(wq.shape[1]),
                          "scale_dtype": {mx.bfloat16: "BF16", mx.float16: "F16",
                                          mx.float32: "F32"}[dt]}
    arrays["model.norm.weight"] = mx.ones((64,), dtype=mx.float16)
    arrays["lm_head.weight"] = mx.random.normal((4, 64)).astype(mx.float16)
    mx.save_safetensors(os.path.join(d, "model.safetensors"), arrays)
    write_json(os.path.join(d, "config.json"),
               {"model_type": "qwen2", "quantization": {"group_size": 64, "bits": 4}})
    write_json(os.path.join(d, "expected.json"), {"mlx_version": mx.__version__,
                                                  "weights": expected})


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    make_single()
    make_sharded()
    make_mlx()
    files = [os.path.join(r, f) for r, _, fs in os.walk(OUT) for f in fs]
    for f in files:
        os.chmod(f, 0o644)  # safetensors writes 0600
    total = sum(os.path.getsize(f) for f in files)
    print(f"wrote {OUT} ({total} bytes)")


if __name__ == "__main__":
    main()
