"""tiny-qwen3-moe quantized by mlx_lm.convert (4-bit affine, group 32) + MLX reference.

As mlx-lm makes its MoE checkpoints (e.g. Qwen3-30B-A3B-4bit): the experts stacked per layer
into SwitchGLU tensors (mlp.switch_mlp.{gate,up,down}_proj, [experts, rows, packed]) and the
router (mlp.gate) quantized at 8 bits, group 64, by the model's quant_predicate, recorded per
module in config.json. Group 32 because the experts' down projection is 32 wide (mlx-lm leaves a
matrix unquantized when its width is not a multiple of the group). Runs in a venv with mlx and
mlx-lm (no torch needed); the source is copied with a throwaway tokenizer as in fixtures_mlx.py.
"""

import json
import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_map_with_path
from mlx_lm.convert import convert
from mlx_lm.utils import load_model

from fixtures_common import (GREEDY_PROMPT, INPUT_IDS, MODELS_DIR, N_GREEDY_NEW, TINY, rows7,
                             top2_margin, write_json)

SRC = MODELS_DIR / "tiny-qwen3-moe"
OUT = MODELS_DIR / "tiny-qwen3-moe-mlx4"
TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "chat_template.jinja", "README.md"}
MLX_SOURCE = (f"mlx {version('mlx')} / mlx-lm {version('mlx-lm')} float32 "
              "(scales, biases and norms cast to float32; CPU)")


def throwaway_tokenizer(dst):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {f"t{i}": i for i in range(TINY["vocab_size"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0").save_pretrained(dst)


def run_convert():
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "src", Path(tmp) / "mlx"
        shutil.copytree(SRC, src)
        # tiny-qwen3-moe is in transformers 5's layout; mlx-lm reads the published one.
        cfg = json.loads((src / "config.json").read_text())
        cfg["num_experts"] = cfg.pop("num_local_experts")
        cfg["rope_theta"] = cfg.pop("rope_parameters")["rope_theta"]
        cfg["torch_dtype"] = cfg.pop("dtype")
        (src / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))
        throwaway_tokenizer(src)
        convert(hf_path=str(src), mlx_path=str(dst), quantize=True, q_bits=4, q_group_size=32,
                upload_repo=None)
        if OUT.exists():
            shutil.rmtree(OUT)
        OUT.mkdir(parents=True)
        for f in sorted(dst.iterdir()):
            if f.name not in TOKENIZER_FILES:
                shutil.copy(f, OUT / f.name)


def load_fp32_mlx():
    model, config = load_model(OUT)
    q = config.get("quantization", {})
    if q.get("bits") != 4 or q.get("group_size") != 32:
        raise RuntimeError(f"unexpected quantization config {q}")
    routers = [k for k, v in q.items() if isinstance(v, dict)]
    if not routers or any(q[k].get("bits") != 8 for k in routers):
        raise RuntimeError(f"expected 8-bit routers in {q}")

    def to_f32(_, v):
        return v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v

    model.update(tree_map_with_path(to_f32, model.parameters()))
    mx.eval(model.parameters())
    return model


def mlx_logits(model, ids):
    out = model(mx.array([ids], dtype=mx.int32))
    return np.array(out[0].astype(mx.float32))


def build_all():
    run_convert()
    model = load_fp32_mlx()
    logits = mlx_logits(model, INPUT_IDS)
    ids, margins = list(GREEDY_PROMPT), []
    for _ in range(N_GREEDY_NEW):
        last = mlx_logits(model, ids)[-1]
        margins.append(top2_margin(last))
        ids.append(int(np.argmax(last)))
    tokens = ids[len(GREEDY_PROMPT):]
    print(f"tiny-qwen3-moe-mlx4: files {sorted(p.name for p in OUT.iterdir())}; min margin "
          f"{min(margins):.4f}; greedy {tokens[:12]}")
    write_json(MODELS_DIR / "tiny-qwen3-moe-mlx4.ref.json", {
        "input_ids": INPUT_IDS,
        "logits": rows7(logits),
        "greedy_prompt": GREEDY_PROMPT,
        "greedy_tokens": tokens,
        "greedy_top2_margins": margins,
        "source": MLX_SOURCE,
    })
