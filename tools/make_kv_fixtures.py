#!/usr/bin/env python3
"""fp8 e4m3 reference bytes for the quantized KV cache (tests/core/fp8_test.cpp), from torch's
float8_e4m3fn conversion.

    /work/refvenv/bin/python tools/make_kv_fixtures.py   # writes tests/fixtures/kv/fp8_e4m3.json

Values: every code's decoded value, random values over many magnitudes, the exact midpoints
between neighbouring codes (ties: round half to even), the subnormal range and values up to
just below 464 (torch turns larger ones into NaN; Jinx saturates them to 448, tested apart).
"""
import json
import pathlib

import numpy as np
import torch

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/kv/fp8_e4m3.json"


def main():
    codes = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float().numpy()
    decode = [None if np.isnan(v) else float(v) for v in codes]
    finite = np.array(sorted({abs(v) for v in decode if v is not None}), dtype=np.float64)
    mids = (finite[:-1] + finite[1:]) / 2  # exact in fp32: neighbours differ by few bits
    rng = np.random.default_rng(7)
    xs = [
        rng.standard_normal(400) * 10.0 ** rng.uniform(-4, 2.4, 400),
        mids, -mids,
        rng.uniform(0, 2.0 ** -6, 100), rng.uniform(-2.0 ** -6, 0, 100),
        np.array([0.0, -0.0, 447.9, 448.0, 455.99, 463.9, -463.9, 2.0 ** -10, 2.0 ** -9 * 1.5]),
    ]
    x = np.concatenate(xs).astype(np.float32)
    x = x[np.abs(x) < 464.0]
    enc = torch.from_numpy(x).to(torch.float8_e4m3fn).view(torch.uint8).numpy()
    encode = [[float(a), int(b)] for a, b in zip(x, enc)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"source": f"torch {torch.__version__} float8_e4m3fn",
                               "decode": decode, "encode": encode}) + "\n")
    print(f"wrote {OUT} ({len(encode)} values)")


if __name__ == "__main__":
    main()
