"""tiny-qwen3-moe quantized by mlx_lm.convert (4-bit affine, group 32) + MLX reference.

As mlx-lm makes its MoE checkpoints (e.g. Qwen3-30B-A3B-4bit): the experts stacked per layer
into SwitchGLU tensors (mlp.switch_mlp.{gate,up,down}_proj, [experts, rows, packed]) and the
router (mlp.gate) quantized at 8 bits, group 64, by the model's quant_predicate, recorded per
module in config.json. Group 32 because the experts' down projection is 32 wide (mlx-lm leaves a
matrix unquantized when its width is not a multiple of the group). Runs in a venv with mlx and
mlx-lm (no torch needed); the conversion is fixtures_mlx_common.py's.
"""

import json

from fixtures_common import GREEDY_PROMPT, INPUT_IDS, MODELS_DIR, N_GREEDY_NEW, rows7, write_json
from fixtures_mlx_common import MLX_SOURCE, convert_copy, load_fp32, mlx_greedy, mlx_logits

SRC = MODELS_DIR / "tiny-qwen3-moe"
OUT = MODELS_DIR / "tiny-qwen3-moe-mlx4"


def published_layout(src):
    """tiny-qwen3-moe is in transformers 5's layout; mlx-lm reads the published one."""
    cfg = json.loads((src / "config.json").read_text())
    cfg["num_experts"] = cfg.pop("num_local_experts")
    cfg["rope_theta"] = cfg.pop("rope_parameters")["rope_theta"]
    cfg["torch_dtype"] = cfg.pop("dtype")
    (src / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True))


def load_fp32_mlx():
    model, q = load_fp32(OUT)
    if q.get("bits") != 4 or q.get("group_size") != 32:
        raise RuntimeError(f"unexpected quantization config {q}")
    routers = [k for k, v in q.items() if isinstance(v, dict)]
    if not routers or any(q[k].get("bits") != 8 for k in routers):
        raise RuntimeError(f"expected 8-bit routers in {q}")
    return model


def build_all():
    convert_copy(SRC, OUT, 4, 32, edit_source=published_layout)
    model = load_fp32_mlx()
    logits = mlx_logits(model, INPUT_IDS)
    tokens, margins = mlx_greedy(model, GREEDY_PROMPT, N_GREEDY_NEW)
    print(f"tiny-qwen3-moe-mlx4: min margin {min(margins):.4f}; greedy {tokens[:12]}")
    write_json(MODELS_DIR / "tiny-qwen3-moe-mlx4.ref.json", {
        "input_ids": INPUT_IDS,
        "logits": rows7(logits),
        "greedy_prompt": GREEDY_PROMPT,
        "greedy_tokens": tokens,
        "greedy_top2_margins": margins,
        "source": MLX_SOURCE,
    })
