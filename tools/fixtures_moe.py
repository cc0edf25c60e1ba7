"""Tiny mixture-of-experts checkpoints (random weights) and their transformers references.

tiny-qwen3-moe: Qwen3MoeForCausalLM, 3 layers (0 and 2 MoE: 8 experts, 2 per token, routing
weights renormalized; 1 dense through mlp_only_layers).
tiny-qwen2-moe: Qwen2MoeForCausalLM, 2 MoE layers (8 experts, 2 per token, not renormalized)
plus the sigmoid-gated shared expert, q/k/v biases.

Router weights get a larger scale than the other matrices so that routing is decisive, and a
seed is used only if, over every token the references run through (the logits prompt and each
step of the greedy loop), the k-th and (k+1)-th router scores (logits) differ by at least
ROUTER_MARGIN: a near-tie would let a correct implementation pick another expert.
"""

import numpy as np
import torch
from transformers import (Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen3MoeConfig,
                          Qwen3MoeForCausalLM)

import fixtures_hf
from fixtures_common import GREEDY_PROMPT, INPUT_IDS, N_GREEDY_NEW, TINY, check_greedy_quality

# Half the width of the dense tiny models (the fixtures' size budget).
SMALL = dict(hidden_size=128, intermediate_size=256, head_dim=32)
ROUTER_STD = 0.15
ROUTER_MARGIN = 2e-3

MODELS = {
    "tiny-qwen3-moe": dict(
        cfg_cls=Qwen3MoeConfig, model_cls=Qwen3MoeForCausalLM,
        cfg=dict(TINY, **SMALL, num_hidden_layers=3, rope_theta=1000000.0, rms_norm_eps=1e-6,
                 tie_word_embeddings=False, use_sliding_window=False, sliding_window=None,
                 max_window_layers=3, attention_bias=False, num_experts=8,
                 num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True,
                 decoder_sparse_step=1, mlp_only_layers=[1]),
        dtype=torch.bfloat16, seed=5, style="v5",
        init=dict(emb_std=0.1, final_norm=2.0)),
    "tiny-qwen2-moe": dict(
        cfg_cls=Qwen2MoeConfig, model_cls=Qwen2MoeForCausalLM,
        cfg=dict(TINY, **SMALL, rope_theta=1000000.0, rms_norm_eps=1e-6,
                 tie_word_embeddings=False,
                 use_sliding_window=False, sliding_window=None, max_window_layers=2,
                 num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32,
                 shared_expert_intermediate_size=64, norm_topk_prob=False,
                 decoder_sparse_step=1, mlp_only_layers=[]),
        dtype=torch.bfloat16, seed=6, style="legacy",
        init=dict(emb_std=0.1, bias_std=0.1, final_norm=2.0)),
}


def scale_routers(model, seed):
    gen = torch.Generator().manual_seed(seed + 7)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("mlp.gate.weight"):
                noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
                p.copy_((ROUTER_STD * noise).to(p.dtype))


def router_margin(model, k, ids_list):
    """Smallest gap between the k-th and (k+1)-th router score over all tokens and MoE layers
    of the forward passes over each id list."""
    gaps = []

    def hook(_module, inputs, _output):
        logits = torch.nn.functional.linear(inputs[0].reshape(-1, inputs[0].shape[-1]),
                                            _module.weight)
        top = torch.sort(logits.float(), dim=-1, descending=True).values
        gaps.append(float((top[:, k - 1] - top[:, k]).min()))

    handles = [m.register_forward_hook(hook) for n, m in model.named_modules()
               if n.endswith("mlp.gate") and hasattr(m, "weight")]
    with torch.no_grad():
        for ids in ids_list:
            model(torch.tensor([ids], dtype=torch.long))
    for h in handles:
        h.remove()
    return min(gaps)


def make_model(spec, seed):
    model = fixtures_hf.make_model(spec, seed)
    scale_routers(model, seed)
    with torch.no_grad():  # the stored dtype, as make_model does for the other weights
        for p in model.parameters():
            p.copy_(p.to(spec["dtype"]).to(torch.float32))
    return model


def pick_seed(name, spec):
    k = spec["cfg"]["num_experts_per_tok"]
    for attempt in range(40):
        seed = spec["seed"] + 1000 * attempt
        model = make_model(spec, seed)
        tokens, margins = fixtures_hf.greedy(model, GREEDY_PROMPT, N_GREEDY_NEW)
        try:
            check_greedy_quality(tokens, margins, name)
        except RuntimeError as e:
            print(f"  seed {seed} rejected: {e}")
            continue
        seqs = [INPUT_IDS] + [GREEDY_PROMPT + tokens[:i] for i in range(len(tokens) + 1)]
        gap = router_margin(model, k, seqs)
        if gap < ROUTER_MARGIN:
            print(f"  seed {seed} rejected: router near-tie ({gap:.2e})")
            continue
        print(f"  seed {seed}: min router gap {gap:.4f}")
        return seed, model
    raise RuntimeError(f"{name}: no usable seed")


def build_all():
    original = fixtures_hf.pick_seed
    fixtures_hf.pick_seed = pick_seed  # build_one's seed search, with the router check
    try:
        for name, spec in MODELS.items():
            reloaded = fixtures_hf.build_one(name, spec)
            n_params = sum(p.numel() for p in reloaded.parameters())
            print(f"{name}: {n_params} parameters")
    finally:
        fixtures_hf.pick_seed = original
