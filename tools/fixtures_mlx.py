"""tiny-qwen2 quantized by mlx_lm.convert (4-bit affine, group 64) + MLX reference.

mlx_lm.convert needs a tokenizer to load the source directory, and the tiny
models have none (their 512-token vocabulary is synthetic). The source is
therefore copied to a temporary directory together with a throwaway
WordLevel tokenizer; convert runs on that copy (local path: no hub access,
no upload) and the tokenizer files and model card it writes are left out of
the fixture. Everything else is byte-for-byte what mlx_lm.convert wrote.
"""

import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlx.core as mx
import numpy as np
import torch
from mlx.utils import tree_flatten, tree_map_with_path
from mlx_lm.convert import convert
from mlx_lm.utils import load_model
from transformers import PreTrainedTokenizerFast, Qwen2ForCausalLM

from fixtures_common import (GREEDY_PROMPT, INPUT_IDS, MODELS_DIR,
                             N_GREEDY_NEW, TINY, rows7, top2_margin,
                             write_json)
from fixtures_hf import TRANSFORMERS_SOURCE, forward_logits, greedy, load_fp32

SRC = MODELS_DIR / "tiny-qwen2"
OUT = MODELS_DIR / "tiny-qwen2-mlx4"
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "chat_template.jinja", "README.md"}
MLX_SOURCE = (f"mlx {version('mlx')} / mlx-lm {version('mlx-lm')} float32 "
              "(scales, biases and norms cast to float32; CPU)")


def throwaway_tokenizer(dst):
    from tokenizers import Tokenizer, models, pre_tokenizers
    vocab = {f"t{i}": i for i in range(TINY["vocab_size"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0").save_pretrained(dst)


def run_convert():
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "src", Path(tmp) / "mlx"
        shutil.copytree(SRC, src)
        throwaway_tokenizer(src)
        convert(hf_path=str(src), mlx_path=str(dst), quantize=True, q_bits=4,
                q_group_size=64, upload_repo=None)
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
        for f in sorted(dst.iterdir()):
            if f.name not in TOKENIZER_FILES:
                shutil.copy(f, OUT / f.name)
    print("tiny-qwen2-mlx4 files:", sorted(p.name for p in OUT.iterdir()))


def load_fp32_mlx():
    model, config = load_model(OUT)
    q = config.get("quantization", {})
    if q.get("bits") != 4 or q.get("group_size") != 64:
        raise RuntimeError(f"unexpected quantization config {q}")

    def to_f32(_, v):
        return v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v

    model.update(tree_map_with_path(to_f32, model.parameters()))
    mx.eval(model.parameters())
    return model


def mlx_logits(model, ids):
    out = model(mx.array([ids], dtype=mx.int32))
    return np.array(out[0].astype(mx.float32))


def mlx_greedy(model, prompt, n_new):
    ids, margins = list(prompt), []
    for _ in range(n_new):
        last = mlx_logits(model, ids)[-1]
        margins.append(top2_margin(last))
        ids.append(int(np.argmax(last)))
    return ids[len(prompt):], margins


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
