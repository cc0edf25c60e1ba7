"""tiny-qwen2 quantized by mlx_lm.convert (4-bit affine, group 64) + MLX reference
(fixtures_mlx_common.py: the conversion on a copy with a throwaway tokenizer), cross-checked
against transformers on mx.dequantize'd weights.
"""

import mlx.core as mx
import numpy as np
import torch
from mlx.utils import tree_flatten
from transformers import Qwen2ForCausalLM

from fixtures_common import GREEDY_PROMPT, INPUT_IDS, MODELS_DIR, N_GREEDY_NEW, rows7, write_json
from fixtures_hf import TRANSFORMERS_SOURCE, forward_logits, greedy, load_fp32
from fixtures_mlx_common import MLX_SOURCE, convert_copy, mlx_greedy, mlx_logits
from fixtures_mlx_common import load_fp32 as load_fp32_mlx_dir

SRC = MODELS_DIR / "tiny-qwen2"
OUT = MODELS_DIR / "tiny-qwen2-mlx4"


def run_convert():
    convert_copy(SRC, OUT, 4, 64)


def load_fp32_mlx():
    model, q = load_fp32_mlx_dir(OUT)
    if q.get("bits") != 4 or q.get("group_size") != 64:
        raise RuntimeError(f"unexpected quantization config {q}")
    return model


def dequantized_hf(model):
    """transformers Qwen2 holding mx.dequantize'd weights (cross-check)."""
    params = dict(tree_flatten(model.parameters()))
    sd = {}
    for name, v in params.items():
        if name.endswith(".scales") or name.endswith(".biases"):
            continue
        if v.dtype == mx.uint32:
            base = name[: -len(".weight")]
            v = mx.dequantize(v, params[base + ".scales"], params[base + ".biases"],
                              group_size=64, bits=4)
        sd[name] = torch.from_numpy(np.array(v.astype(mx.float32)))
    hf = load_fp32(SRC, Qwen2ForCausalLM)
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    if unexpected or any(k != "lm_head.weight" for k in missing):
        raise RuntimeError(f"state dict mismatch: {missing} {unexpected}")
    return hf


def build_all():
    run_convert()
    model = load_fp32_mlx()
    logits = mlx_logits(model, INPUT_IDS)
    tokens, margins = mlx_greedy(model, GREEDY_PROMPT, N_GREEDY_NEW)
    hf = dequantized_hf(model)
    hf_logits = forward_logits(hf, INPUT_IDS)
    hf_tokens, _ = greedy(hf, GREEDY_PROMPT, N_GREEDY_NEW)
    diff = np.abs(logits - hf_logits).max()
    print(f"tiny-qwen2-mlx4: MLX vs transformers(mx.dequantize) max |dlogit| {diff:.3g}; "
          f"greedy agree {sum(a == b for a, b in zip(tokens, hf_tokens))}/{N_GREEDY_NEW}; "
          f"min margin {min(margins):.4f}; greedy {tokens[:12]}")
    if diff > 1e-3:
        raise RuntimeError("MLX and transformers disagree on the dequantized model")
    write_json(MODELS_DIR / "tiny-qwen2-mlx4.ref.json", {
        "input_ids": INPUT_IDS,
        "logits": rows7(logits),
        "greedy_prompt": GREEDY_PROMPT,
        "greedy_tokens": tokens,
        "greedy_top2_margins": margins,
        "source": MLX_SOURCE,
        "logits_transformers": rows7(hf_logits),
        "greedy_tokens_transformers": hf_tokens,
        "source_transformers": TRANSFORMERS_SOURCE + " on mx.dequantize'd weights",
    })
