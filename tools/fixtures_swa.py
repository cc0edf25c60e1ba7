"""Sliding-window attention in the Llama-family layouts: a tiny Qwen2 with use_sliding_window
(window 8 on the layers from max_window_layers = 1 on, as published Qwen2 configs state it:
no layer_types) and a tiny Mistral (window 8 on every layer), with transformers references.
The 12- and 40-position reference runs cross the window."""

import torch
from transformers import MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM

import fixtures_hf
from fixtures_common import NARROW, TINY

MODELS = {
    "tiny-qwen2-swa": dict(
        cfg_cls=Qwen2Config, model_cls=Qwen2ForCausalLM,
        cfg=dict(TINY, **NARROW, num_hidden_layers=2, rope_theta=10000.0, rms_norm_eps=1e-6,
                 tie_word_embeddings=False, use_sliding_window=True, sliding_window=8,
                 max_window_layers=1),
        dtype=torch.bfloat16, seed=10, style="legacy", drop_keys=["layer_types"],
        init=dict(emb_std=0.1, bias_std=0.1, final_norm=2.0)),
    "tiny-mistral-swa": dict(
        cfg_cls=MistralConfig, model_cls=MistralForCausalLM,
        cfg=dict(TINY, **NARROW, num_hidden_layers=2, rope_theta=10000.0, rms_norm_eps=1e-5,
                 tie_word_embeddings=False, sliding_window=8),
        dtype=torch.bfloat16, seed=11, style="legacy",
        init=dict(emb_std=0.1, final_norm=2.0)),
}


def build_all():
    for name, spec in MODELS.items():
        fixtures_hf.build_one(name, spec)
