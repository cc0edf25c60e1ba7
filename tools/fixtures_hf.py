"""Tiny Hugging Face checkpoints (random weights) and their transformers references."""

import json
import shutil

import numpy as np
import torch
import transformers
from transformers import (GenerationConfig, LlamaConfig, LlamaForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM, Qwen3Config,
                          Qwen3ForCausalLM)

from fixtures_common import (GREEDY_PROMPT, INPUT_IDS, MODELS_DIR,
                             N_GREEDY_NEW, TINY, check_greedy_quality, rows7,
                             top2_margin, write_json)

TRANSFORMERS_SOURCE = f"transformers {transformers.__version__} float32 (torch {torch.__version__}, eager attention)"

LLAMA3_ROPE = {
    "factor": 8.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 64,
    "rope_type": "llama3",
}

# name -> (config class, model class, config kwargs, dtype on disk, init scales,
#          config.json style). "legacy" rewrites config.json to the
#          rope_theta/rope_scaling/torch_dtype layout that published
#          checkpoints use; "v5" keeps what transformers 5 writes
#          (rope_parameters, dtype).
MODELS = {
    "tiny-llama": dict(
        cfg_cls=LlamaConfig, model_cls=LlamaForCausalLM,
        cfg=dict(TINY, rope_theta=10000.0, rms_norm_eps=1e-5,
                 tie_word_embeddings=False, rope_scaling=dict(LLAMA3_ROPE)),
        dtype=torch.float32, seed=1, style="legacy",
        init=dict(emb_std=0.1, final_norm=2.0)),
    "tiny-qwen2": dict(
        cfg_cls=Qwen2Config, model_cls=Qwen2ForCausalLM,
        cfg=dict(TINY, rope_theta=1000000.0, rms_norm_eps=1e-6,
                 tie_word_embeddings=True, use_sliding_window=False,
                 sliding_window=None, max_window_layers=2),
        dtype=torch.bfloat16, seed=2, style="legacy",
        init=dict(emb_std=0.03, bias_std=0.1, final_norm=3.0)),
    "tiny-qwen3": dict(
        cfg_cls=Qwen3Config, model_cls=Qwen3ForCausalLM,
        cfg=dict(TINY, rope_theta=1000000.0, rms_norm_eps=1e-6,
                 tie_word_embeddings=False, use_sliding_window=False,
                 sliding_window=None, max_window_layers=2,
                 attention_bias=False),
        dtype=torch.bfloat16, seed=3, style="v5",
        init=dict(emb_std=0.1, final_norm=2.0)),
    "tiny-llama-linear": dict(
        cfg_cls=LlamaConfig, model_cls=LlamaForCausalLM,
        cfg=dict(TINY, num_hidden_layers=1, rope_theta=10000.0,
                 rms_norm_eps=1e-5, tie_word_embeddings=False,
                 rope_scaling={"type": "linear", "factor": 2.0}),
        dtype=torch.bfloat16, seed=4, style="legacy",
        init=dict(emb_std=0.1, final_norm=2.0)),
}


def init_weights(model, seed, emb_std, head_std=0.12, bias_std=0.3,
                 final_norm=1.0):
    """Random weights with realistic activation scales: linear weights
    N(0, 0.05), lm_head N(0, head_std), embeddings N(0, emb_std), norms
    1 + N(0, 0.1) (q/k norms 1 + N(0, 0.2), final norm scaled by
    final_norm), attention biases N(0, bias_std)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith(("q_norm.weight", "k_norm.weight")):
                value = 1.0 + 0.2 * noise
            elif name == "model.norm.weight":
                value = final_norm * (1.0 + 0.1 * noise)
            elif name.endswith("norm.weight"):
                value = 1.0 + 0.1 * noise
            elif name.endswith(".bias"):
                value = bias_std * noise
            elif "embed_tokens" in name:
                value = emb_std * noise
            elif name.startswith("lm_head"):
                value = head_std * noise
            else:
                value = 0.05 * noise
            p.copy_(value.to(p.dtype))


def to_legacy_config(path, cfg):
    """Rewrites config.json in the layout of published checkpoints
    (rope_theta + rope_scaling, torch_dtype)."""
    config = json.loads(path.read_text())
    params = config.pop("rope_parameters", None) or {}
    config["rope_theta"] = cfg["rope_theta"]
    config["rope_scaling"] = cfg.get("rope_scaling")
    if params.get("rope_theta") not in (None, cfg["rope_theta"]):
        raise RuntimeError("rope_theta mismatch")
    if "dtype" in config:
        config["torch_dtype"] = config.pop("dtype")
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def load_fp32(out_dir, model_cls):
    model = model_cls.from_pretrained(out_dir, dtype=torch.float32,
                                      attn_implementation="eager")
    model.eval()
    return model


def forward_logits(model, ids):
    with torch.no_grad():
        out = model(torch.tensor([ids], dtype=torch.long))
    return out.logits[0].float().numpy()


def greedy(model, prompt, n_new):
    """Plain greedy loop (full recompute, no sampling, no penalties, no EOS stop)."""
    ids = list(prompt)
    margins = []
    for _ in range(n_new):
        last = forward_logits(model, ids)[-1]
        margins.append(top2_margin(last))
        ids.append(int(np.argmax(last)))
    return ids[len(prompt):], margins


def reference(model, source):
    logits = forward_logits(model, INPUT_IDS)
    tokens, margins = greedy(model, GREEDY_PROMPT, N_GREEDY_NEW)
    return {
        "input_ids": INPUT_IDS,
        "logits": rows7(logits),
        "greedy_prompt": GREEDY_PROMPT,
        "greedy_tokens": tokens,
        "greedy_top2_margins": margins,
        "source": source,
    }


def make_model(spec, seed):
    """fp32 model whose parameters are rounded to the storage dtype, so it
    computes exactly what the saved checkpoint holds."""
    torch.manual_seed(seed)
    config = spec["cfg_cls"](**spec["cfg"])
    config._attn_implementation = "eager"
    model = spec["model_cls"](config).to(torch.float32).eval()
    init_weights(model, seed, **spec["init"])
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(spec["dtype"]).to(torch.float32))
    return model


def pick_seed(name, spec):
    """First seed (from spec["seed"], step 1000) whose greedy run is not
    degenerate and has no near-ties."""
    for attempt in range(30):
        seed = spec["seed"] + 1000 * attempt
        model = make_model(spec, seed)
        tokens, margins = greedy(model, GREEDY_PROMPT, N_GREEDY_NEW)
        try:
            check_greedy_quality(tokens, margins, name)
        except RuntimeError as e:
            print(f"  seed {seed} rejected: {e}")
            continue
        return seed, model
    raise RuntimeError(f"{name}: no usable seed")


def build_one(name, spec):
    out_dir = MODELS_DIR / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    seed, model = pick_seed(name, spec)
    before = forward_logits(model, INPUT_IDS)
    model.config.dtype = spec["dtype"]
    model = model.to(spec["dtype"])
    model.generation_config = GenerationConfig(
        bos_token_id=TINY["bos_token_id"], eos_token_id=TINY["eos_token_id"],
        do_sample=False)
    model.save_pretrained(out_dir, safe_serialization=True)
    if spec["style"] == "legacy":
        to_legacy_config(out_dir / "config.json", spec["cfg"])
    if spec.get("drop_keys"):  # keys published configs lack (transformers derives them again)
        config = json.loads((out_dir / "config.json").read_text())
        for key in spec["drop_keys"]:
            config.pop(key, None)
        (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    reloaded = load_fp32(out_dir, spec["model_cls"])
    ref = reference(reloaded, TRANSFORMERS_SOURCE)
    ref["seed"] = seed
    # The (possibly rewritten) config must describe the same model.
    diff = float(np.max(np.abs(np.array(ref["logits"]) - before)))
    if diff > 1e-4:
        raise RuntimeError(f"{name}: reloaded checkpoint differs ({diff})")
    check_greedy_quality(ref["greedy_tokens"], ref["greedy_top2_margins"], name)
    write_json(MODELS_DIR / f"{name}.ref.json", ref)
    print(f"{name}: seed {seed}, greedy {ref['greedy_tokens'][:12]}... min margin "
          f"{min(ref['greedy_top2_margins']):.4f}, logit std {np.std(before):.3f}")
    return reloaded


def build_all():
    for name, spec in MODELS.items():
        build_one(name, spec)
