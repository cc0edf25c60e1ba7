"""YaRN long-context RoPE (Qwen2.5 / Qwen3 `rope_scaling: {type: yarn}`): two narrow tiny models
and their transformers references. Narrow (hidden 64, one layer) for the fixtures' size budget;
the ramp, the divided frequencies and the attention factor all act from position 0, so the 40
positions of the reference runs check them."""

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

import fixtures_hf
from fixtures_common import NARROW, TINY

MODELS = {
    # Qwen2.5's documented form: type, factor, original context (here 32 of 256 positions).
    "tiny-qwen2-yarn": dict(
        cfg_cls=Qwen2Config, model_cls=Qwen2ForCausalLM,
        cfg=dict(TINY, **NARROW, num_hidden_layers=1, rope_theta=10000.0,
                 rms_norm_eps=1e-6,
                 tie_word_embeddings=False, use_sliding_window=False, sliding_window=None,
                 max_window_layers=1,
                 rope_scaling={"type": "yarn", "factor": 4.0,
                               "original_max_position_embeddings": 32}),
        dtype=torch.bfloat16, seed=7, style="legacy",
        init=dict(emb_std=0.1, bias_std=0.1, final_norm=2.0)),
    # transformers 5's rope_parameters: the original context defaults to max_position_embeddings
    # (256: a real ramp over 7 of the 16 frequencies), explicit betas and attention factor.
    "tiny-qwen3-yarn": dict(
        cfg_cls=Qwen3Config, model_cls=Qwen3ForCausalLM,
        cfg=dict(TINY, **NARROW, num_hidden_layers=1, rms_norm_eps=1e-6,
                 tie_word_embeddings=False,
                 use_sliding_window=False, sliding_window=None, max_window_layers=1,
                 attention_bias=False,
                 rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 2.0,
                                  "beta_fast": 16.0, "beta_slow": 1.0,
                                  "attention_factor": 1.2}),
        dtype=torch.bfloat16, seed=8, style="v5",
        init=dict(emb_std=0.1, final_norm=2.0)),
}


def build_all():
    for name, spec in MODELS.items():
        fixtures_hf.build_one(name, spec)
