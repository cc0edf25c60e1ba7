"""Tiny mixture-of-experts checkpoints (random weights) and their transformers references.

tiny-qwen3-moe: Qwen3MoeForCausalLM, 3 layers (0 and 2 MoE: 8 experts, 2 per token, routing
weights renormalized; 1 dense through mlp_only_layers).
tiny-qwen2-moe: Qwen2MoeForCausalLM, 2 MoE layers (8 experts, 2 per token, not renormalized)
plus the sigmoid-gated shared expert, q/k/v biases; also as tiny-qwen2-moe-q8_0.gguf in
llama.cpp's qwen2moe layout, with llama.cpp's reference (build_gguf, needs llama-cpp-python).

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
    build_gguf()


# --- tiny-qwen2-moe as a Q8_0 GGUF (llama.cpp's qwen2moe layout) -------------------------
#
# Experts stacked per kind in 3-D tensors (ffn_gate_exps / ffn_up_exps [E, ff, H],
# ffn_down_exps [E, H, ff]), the shared expert as ffn_*_shexp with its gate
# ffn_gate_inp_shexp 1-D; the routers (ffn_gate_inp), the shared expert's gate, norms and
# biases F32 (as convert_hf_to_gguf.py leaves them), every other matrix Q8_0. References:
# llama.cpp on the file, and transformers fp32 on its weights dequantized by gguf-py.

GGUF_NAME = "tiny-qwen2-moe-q8_0"


def qwen2moe_gguf_tensors(sd, cfg):
    """(gguf name, float32 array, keep F32) for the tiny-qwen2-moe state dict."""
    E = cfg["num_experts"]
    out = [("token_embd.weight", sd["model.embed_tokens.weight"], False)]
    for i in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        out += [(b + "attn_norm.weight", sd[p + "input_layernorm.weight"], True),
                (b + "ffn_norm.weight", sd[p + "post_attention_layernorm.weight"], True)]
        for hf, gg in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v")):
            out += [(b + gg + ".weight", sd[p + f"self_attn.{hf}.weight"], False),
                    (b + gg + ".bias", sd[p + f"self_attn.{hf}.bias"], True)]
        out.append((b + "attn_output.weight", sd[p + "self_attn.o_proj.weight"], False))
        out.append((b + "ffn_gate_inp.weight", sd[p + "mlp.gate.weight"], True))
        for hf, gg in (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")):
            stacked = np.stack([sd[p + f"mlp.experts.{e}.{hf}.weight"] for e in range(E)])
            out.append((b + f"ffn_{gg}_exps.weight", stacked, False))
            out.append((b + f"ffn_{gg}_shexp.weight", sd[p + f"mlp.shared_expert.{hf}.weight"],
                        False))
        out.append((b + "ffn_gate_inp_shexp.weight", sd[p + "mlp.shared_expert_gate.weight"][0],
                    True))
    out += [("output_norm.weight", sd["model.norm.weight"], True),
            ("output.weight", sd["lm_head.weight"], False)]
    return [(n, np.ascontiguousarray(t, dtype=np.float32), keep) for n, t, keep in out]


def write_qwen2moe_gguf(path, sd, cfg):
    import gguf
    from gguf import GGMLQuantizationType as QT
    from fixtures_gguf import add_tiny_tokenizer
    w = gguf.GGUFWriter(str(path), "qwen2moe")
    w.add_name(GGUF_NAME)
    w.add_custom_alignment(32)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_expert_count(cfg["num_experts"])
    w.add_expert_used_count(cfg["num_experts_per_tok"])
    w.add_expert_feed_forward_length(cfg["moe_intermediate_size"])
    w.add_expert_shared_feed_forward_length(cfg["shared_expert_intermediate_size"])
    w.add_file_type(7)  # LLAMA_FTYPE_MOSTLY_Q8_0
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(cfg["vocab_size"])
    add_tiny_tokenizer(w, cfg["vocab_size"])
    for name, t, keep in qwen2moe_gguf_tensors(sd, cfg):
        if keep:
            w.add_tensor(name, t)
        else:
            w.add_tensor(name, gguf.quants.quantize(t, QT.Q8_0), raw_dtype=QT.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def dequantized_qwen2moe(path, hf_dir, cfg):
    """transformers Qwen2MoeForCausalLM holding the GGUF's weights (gguf-py dequantized)."""
    import gguf
    reader = gguf.GGUFReader(str(path))
    t = {x.name: gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float32)
         for x in reader.tensors}
    model = fixtures_hf.load_fp32(hf_dir, Qwen2MoeForCausalLM)
    sd = {k: v.clone() for k, v in model.state_dict().items()}

    def put(name, value):
        value = torch.from_numpy(np.ascontiguousarray(value)).reshape(sd[name].shape)
        sd[name] = value.to(sd[name].dtype)

    put("model.embed_tokens.weight", t["token_embd.weight"])
    put("model.norm.weight", t["output_norm.weight"])
    put("lm_head.weight", t["output.weight"])
    for i in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        put(p + "input_layernorm.weight", t[b + "attn_norm.weight"])
        put(p + "post_attention_layernorm.weight", t[b + "ffn_norm.weight"])
        for hf, gg in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v")):
            put(p + f"self_attn.{hf}.weight", t[b + gg + ".weight"])
            put(p + f"self_attn.{hf}.bias", t[b + gg + ".bias"])
        put(p + "self_attn.o_proj.weight", t[b + "attn_output.weight"])
        put(p + "mlp.gate.weight", t[b + "ffn_gate_inp.weight"])
        # transformers 5 keeps the experts fused: gate_up_proj [E, 2 ff, H], down_proj [E, H, ff].
        put(p + "mlp.experts.gate_up_proj",
            np.concatenate([t[b + "ffn_gate_exps.weight"], t[b + "ffn_up_exps.weight"]], axis=1))
        put(p + "mlp.experts.down_proj", t[b + "ffn_down_exps.weight"])
        for hf, gg in (("gate_proj", "gate"), ("up_proj", "up"), ("down_proj", "down")):
            put(p + f"mlp.shared_expert.{hf}.weight", t[b + f"ffn_{gg}_shexp.weight"])
        put(p + "mlp.shared_expert_gate.weight", t[b + "ffn_gate_inp_shexp.weight"])
    model.load_state_dict(sd)
    types = sorted({x.tensor_type.name for x in reader.tensors})
    return model, types


def build_gguf():
    import json
    from importlib.metadata import version
    from safetensors.torch import load_file
    import fixtures_llamacpp
    from fixtures_common import MODELS_DIR, round7, rows7, write_json
    hf_dir = MODELS_DIR / "tiny-qwen2-moe"
    cfg = json.loads((hf_dir / "config.json").read_text())
    sd = {k: v.float().numpy() for k, v in load_file(str(hf_dir / "model.safetensors")).items()}
    path = MODELS_DIR / f"{GGUF_NAME}.gguf"
    write_qwen2moe_gguf(path, sd, cfg)
    request = {"input_ids": INPUT_IDS, "greedy_prompt": GREEDY_PROMPT, "n_new": N_GREEDY_NEW}
    out = fixtures_llamacpp.call("logits", path, stdin=json.dumps(request))
    logits = np.array(out["logits"], np.float32)
    deq, types = dequantized_qwen2moe(path, hf_dir, cfg)
    deq_logits = fixtures_hf.forward_logits(deq, INPUT_IDS)
    deq_tokens, deq_margins = fixtures_hf.greedy(deq, GREEDY_PROMPT, N_GREEDY_NEW)
    k = cfg["num_experts_per_tok"]
    gap = router_margin(deq, k, [INPUT_IDS] + [GREEDY_PROMPT + deq_tokens[:i]
                                              for i in range(N_GREEDY_NEW + 1)])
    ref = {
        "input_ids": INPUT_IDS,
        "logits": rows7(logits),
        "greedy_prompt": GREEDY_PROMPT,
        "greedy_tokens": out["greedy_tokens"],
        "greedy_top2_margins": [round7(m) for m in out["greedy_margins"]],
        "source": f"llama.cpp (llama-cpp-python {version('llama_cpp_python')}), F32 KV cache, "
                  "flash attention off, n_threads 2",
        "tensor_types": types,
        "logits_transformers": rows7(deq_logits),
        "greedy_tokens_transformers": deq_tokens,
        "greedy_top2_margins_transformers": deq_margins,
        "source_transformers": fixtures_hf.TRANSFORMERS_SOURCE
        + f" on the GGUF weights dequantized by gguf {version('gguf')}",
        "min_router_gap_transformers": round7(gap),
    }
    diff = np.abs(logits - deq_logits)
    agree = sum(a == b for a, b in zip(out["greedy_tokens"], deq_tokens))
    print(f"{GGUF_NAME}.gguf {types}: llama.cpp vs transformers(dequant) max |dlogit| "
          f"{diff.max():.3g}; greedy agree {agree}/{N_GREEDY_NEW}; router gap {gap:.4f}")
    write_json(MODELS_DIR / f"{GGUF_NAME}.ref.json", ref)
