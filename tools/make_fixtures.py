#!/usr/bin/env python3
"""Builds the model fixtures under tests/fixtures/models and tests/fixtures/smollm2.

Run:  /work/refvenv/bin/python tools/make_fixtures.py [stage ...]
Stages (default: all, in this order): hf mlx gguf smollm2 smollm2_hf moe yarn gemma3 swa mlx_moe
embed lora

  hf       tiny HF checkpoints (random weights, fixed seeds) + transformers fp32 references
  mlx      tiny-qwen2 quantized with mlx_lm (4-bit, group 64) + MLX reference
  gguf     tiny-llama as GGUF F32/Q8_0/Q4_0/Q4_K/Q4_K_M/Q2_K/Q3_K_M/Q5_1/IQ4_NL/IQ4_XS +
           llama.cpp references (+ transformers on the dequantized weights)
  smollm2  greedy reference of llama.cpp on the real SmolLM2-135M-Instruct Q4_1 GGUF
  smollm2_hf  transformers fp32 on the same GGUF's dequantized weights (needs accelerate)
  moe      tiny Qwen3-MoE and Qwen2-MoE checkpoints + transformers fp32 references
  yarn     tiny Qwen2 / Qwen3 checkpoints with YaRN rope scaling + transformers fp32 references
  gemma3   tiny Gemma 3 checkpoint + transformers reference; llama.cpp on the real Gemma 3 270M
           GGUF (tools/get_models.sh installs it)
  swa      tiny Qwen2 / Mistral checkpoints with sliding-window attention + transformers references
  mlx_moe  tiny-qwen3-moe quantized by mlx_lm.convert (stacked experts, 8-bit router) + MLX
           reference (a venv with mlx and mlx-lm; run moe first)
  lora     PEFT LoRA adapters for tiny-llama / tiny-qwen2 + transformers+peft references (run
           hf first)
  gptoss   tiny gpt-oss as BF16 and MXFP4 Hugging Face checkpoints (transformers references) and
           as llama.cpp's MXFP4 GGUF (llama.cpp reference; needs llama-cpp-python's source tree
           in /work/sdist for the converter's nibble repacking)
  embed    sentence embeddings (mean / first / last token pooling) of four tiny checkpoints by
           transformers, and of the real SmolLM2 GGUF by llama.cpp

Afterwards tests/fixtures/models/MANIFEST.json records the sha256 of every fixture
file and of the generator sources (checked by tests/python/test_fixtures_fresh.py).

The gguf and mlx stages read tests/fixtures/models/tiny-llama and tiny-qwen2, so run
hf first (the default order does).
"""

import hashlib
import importlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures_common import MODELS_DIR, ROOT, SMOLLM2_DIR, dir_size  # noqa: E402

# In default order; stage S is made by build_all() of tools/fixtures_S.py.
STAGES = ["hf", "mlx", "gguf", "smollm2", "smollm2_hf", "moe", "yarn", "gemma3", "swa", "mlx_moe",
          "embed", "lora", "lora_gguf", "gptoss"]


def run_stage(stage):
    if stage not in STAGES:
        raise SystemExit(f"unknown stage {stage!r}; known: {' '.join(STAGES)}")
    importlib.import_module("fixtures_" + stage).build_all()


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_manifest():
    """tests/fixtures/models/MANIFEST.json: sha256 of every fixture file and of
    the generator sources, so tests/python/test_fixtures_fresh.py can tell a
    stale, partial or hand-edited fixture set."""
    files = {}
    for root in (MODELS_DIR, SMOLLM2_DIR):
        for p in sorted(root.rglob("*")):
            if p.is_file() and p.name != "MANIFEST.json":
                files[str(p.relative_to(ROOT))] = sha256(p)
    tools = [ROOT / "tools" / "make_fixtures.py"] + sorted((ROOT / "tools").glob("fixtures_*.py"))
    manifest = {
        "generator": {str(p.relative_to(ROOT)): sha256(p) for p in tools},
        "files": files,
    }
    (MODELS_DIR / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def print_sizes():
    total = 0
    for root in (MODELS_DIR, SMOLLM2_DIR):
        if not root.exists():
            continue
        for entry in sorted(root.iterdir()):
            size = dir_size(entry)
            total += size
            print(f"{size / 1e6:9.3f} MB  {entry.relative_to(root.parent.parent.parent)}")
    print(f"{total / 1e6:9.3f} MB  total")


def main(argv):
    stages = argv or STAGES
    for stage in stages:
        print(f"== stage {stage}", flush=True)
        run_stage(stage)
    write_manifest()
    print_sizes()


if __name__ == "__main__":
    main(sys.argv[1:])
