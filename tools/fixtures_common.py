"""Shared constants and helpers for tools/make_fixtures.py.

Everything here is deterministic: the same command always writes the same
fixtures (given the same library versions).
"""

import json
import math
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "tests" / "fixtures" / "models"
SMOLLM2_DIR = ROOT / "tests" / "fixtures" / "smollm2"

# Sizes shared by all tiny models (see the brief in the report).
TINY = dict(
    hidden_size=256,
    intermediate_size=512,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    vocab_size=512,
    max_position_embeddings=256,
    bos_token_id=1,
    eos_token_id=2,
)

# Width 64, one or two layers: the long-context and sliding-window variants (size budget).
NARROW = dict(hidden_size=64, intermediate_size=128, num_attention_heads=2,
              num_key_value_heads=1, head_dim=32)

N_INPUT = 12
N_GREEDY_PROMPT = 8
N_GREEDY_NEW = 32


def fixed_ids(seed, n):
    """n token ids in [3, 512): avoids the special ids 0, 1, 2."""
    rng = np.random.default_rng(seed)
    return [int(x) for x in rng.integers(3, TINY["vocab_size"], size=n)]


INPUT_IDS = fixed_ids(20240601, N_INPUT)
GREEDY_PROMPT = fixed_ids(20240602, N_GREEDY_PROMPT)


def round7(x):
    """Round to 7 significant digits (keeps the JSON small)."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"non-finite value {x}")
    return float(f"{x:.7g}")


def rows7(matrix):
    return [[round7(v) for v in row] for row in np.asarray(matrix, np.float64)]


def top2_margin(logits_row):
    row = np.sort(np.asarray(logits_row, np.float64))
    return round7(row[-1] - row[-2])


def check_greedy_quality(tokens, margins, what):
    """Rejects degenerate greedy runs: one repeated token, or near-ties that
    make the continuation fragile for a different (but correct) implementation."""
    distinct = len(set(tokens))
    if distinct < 6:
        raise RuntimeError(f"{what}: greedy continuation is degenerate ({distinct} distinct tokens): {tokens}")
    if min(margins) < 0.01:
        raise RuntimeError(f"{what}: greedy near-tie (min top-2 margin {min(margins)})")


def write_json(path, obj):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, path)


def dir_size(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
