"""A tiny gpt-oss (GptOssForCausalLM) in the three layouts it is published in, with references.

One random model, written as
  tiny-gpt-oss/            Hugging Face, BF16 (the experts as transformers keeps them: gate_up_proj
                           [E, H, 2 ff] with gate and up interleaved, down_proj [E, ff, H]);
                           transformers fp32 reference.
  tiny-gpt-oss-mxfp4/      Hugging Face as OpenAI publishes gpt-oss: the experts as MXFP4
                           blocks and scales (quantization_config quant_method mxfp4);
                           transformers' reference (it dequantizes them on a machine without a GPU).
  tiny-gpt-oss-mxfp4.gguf  llama.cpp's gpt-oss layout (gate / up split, MXFP4 experts repacked by
                           the converter's own transform_nibble_layout, the rest F32, sinks as
                           blk.N.attn_sinks.weight); llama.cpp's reference (tiny-gpt-oss-gguf
                           .ref.json; llama.cpp truncates YaRN's ramp ends as transformers does
                           not for gpt-oss, so its logits differ a little from transformers').

Every expert weight is an MXFP4 value (an E2M1 code times a power of two per 32 weights), so the
three hold the same numbers. 2 layers (layer 0 sliding, window 4; layer 1 full), 4 heads of 32
over 2 KV heads, q/k/v/o biases, a learned sink per head, 4 experts of width 64, 2 per token,
a router with bias, YaRN as gpt-oss ships it (factor 32 over 4096 positions, truncate false).
Expert gate/up weights are large enough that the SwiGLU clamp at 7 is reached.
"""

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from transformers import GenerationConfig, GptOssConfig, GptOssForCausalLM

import fixtures_hf
from fixtures_common import (GREEDY_PROMPT, INPUT_IDS, MODELS_DIR, N_GREEDY_NEW, TINY,
                             check_greedy_quality, round7, rows7, write_json)

NAME = "tiny-gpt-oss"
CFG = dict(vocab_size=TINY["vocab_size"], hidden_size=64, intermediate_size=64,
           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
           num_local_experts=4, num_experts_per_tok=2, sliding_window=4,
           max_position_embeddings=4096, rms_norm_eps=1e-5, attention_bias=True,
           tie_word_embeddings=False, bos_token_id=TINY["bos_token_id"],
           eos_token_id=TINY["eos_token_id"],
           layer_types=["sliding_attention", "full_attention"],
           rope_parameters={"rope_type": "yarn", "rope_theta": 150000.0, "factor": 32.0,
                            "beta_fast": 32.0, "beta_slow": 1.0, "truncate": False,
                            "original_max_position_embeddings": 4096})
SEED = 11
ROUTER_MARGIN = 2e-3
# E2M1 magnitudes (codes 0-7; 8-15 are their negatives).
FP4 = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], np.float32)


def mxfp4_tensor(gen, rows_shape, cols, exp_base):
    """Random MXFP4 data for a [*rows_shape, cols] matrix: blocks uint8 [..., cols/32, 16]
    (two codes a byte, element 2j in the low nibble), scales uint8 [..., cols/32] (exponent +
    127), and the float32 values they stand for."""
    nb = cols // 32
    codes = gen.integers(0, 16, size=(*rows_shape, nb, 32), dtype=np.uint8)
    exps = exp_base + gen.integers(-1, 2, size=(*rows_shape, nb))
    mags = FP4[codes & 7] * np.where(codes & 8, -1.0, 1.0).astype(np.float32)
    values = (mags * np.exp2(exps.astype(np.float32))[..., None]).astype(np.float32)
    blocks = (codes[..., 0::2] | (codes[..., 1::2] << 4)).astype(np.uint8)
    scales = (exps + 127).astype(np.uint8)
    return blocks, scales, values.reshape(*rows_shape, cols)


def make_model(seed):
    """The fp32 model (every weight bf16-exact) and the experts' MXFP4 data."""
    torch.manual_seed(seed)
    config = GptOssConfig(**CFG)
    config._attn_implementation = "eager"
    model = GptOssForCausalLM(config).to(torch.float32).eval()
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    E, H, ff = CFG["num_local_experts"], CFG["hidden_size"], CFG["intermediate_size"]
    mx = {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("norm.weight"):
                value = (2.0 if name == "model.norm.weight" else 1.0) * (1.0 + 0.1 * noise)
            elif name.endswith("sinks"):
                value = 1.5 * noise
            elif name.endswith("router.weight"):
                value = 0.15 * noise
            elif name.endswith(("router.bias", "proj_bias")) or name.endswith(".bias"):
                value = 0.2 * noise
            elif "embed_tokens" in name:
                value = 0.1 * noise
            elif name.startswith("lm_head"):
                value = 0.12 * noise
            elif name.endswith("experts.gate_up_proj"):
                # [E, H, 2 ff]: rows of the [2 ff, H] matrix are blocked along H.
                blocks, scales, values = mxfp4_tensor(rng, (E, 2 * ff), H, -2)
                mx[name] = (blocks, scales)
                value = torch.from_numpy(values).transpose(1, 2)
            elif name.endswith("experts.down_proj"):
                blocks, scales, values = mxfp4_tensor(rng, (E, H), ff, -6)
                mx[name] = (blocks, scales)
                value = torch.from_numpy(values).transpose(1, 2)
            else:
                value = 0.05 * noise
            p.copy_(value.to(torch.bfloat16).to(torch.float32))
    return model, mx


def router_margin(model, ids_list):
    k = CFG["num_experts_per_tok"]
    gaps = []

    def hook(module, inputs, _output):
        x = inputs[0].reshape(-1, inputs[0].shape[-1])
        logits = torch.nn.functional.linear(x, module.weight, module.bias)
        top = torch.sort(logits.float(), dim=-1, descending=True).values
        gaps.append(float((top[:, k - 1] - top[:, k]).min()))

    handles = [m.register_forward_hook(hook) for n, m in model.named_modules()
               if n.endswith("mlp.router")]
    with torch.no_grad():
        for ids in ids_list:
            model(torch.tensor([ids], dtype=torch.long))
    for h in handles:
        h.remove()
    return min(gaps)


def clamp_fraction(model):
    """Share of expert gate values above the SwiGLU limit over the logits prompt."""
    fractions, originals = [], {}
    for n, m in model.named_modules():
        if n.endswith("mlp.experts"):
            originals[n] = m._apply_gate

            def wrapped(gate_up, m=m, orig=m._apply_gate):
                fractions.append(float((gate_up[..., ::2] > m.limit).float().mean()))
                return orig(gate_up)
            m._apply_gate = wrapped
    with torch.no_grad():
        model(torch.tensor([INPUT_IDS], dtype=torch.long))
    for n, m in model.named_modules():
        if n in originals:
            del m._apply_gate  # the class's method again
    return float(np.mean(fractions)) if fractions else 0.0


def pick_seed():
    for attempt in range(40):
        seed = SEED + 1000 * attempt
        model, mx = make_model(seed)
        tokens, margins = fixtures_hf.greedy(model, GREEDY_PROMPT, N_GREEDY_NEW)
        try:
            check_greedy_quality(tokens, margins, NAME)
        except RuntimeError as e:
            print(f"  seed {seed} rejected: {e}")
            continue
        seqs = [INPUT_IDS] + [GREEDY_PROMPT + tokens[:i] for i in range(len(tokens) + 1)]
        gap = router_margin(model, seqs)
        if gap < ROUTER_MARGIN:
            print(f"  seed {seed} rejected: router near-tie ({gap:.2e})")
            continue
        return seed, model, mx, gap
    raise RuntimeError(f"{NAME}: no usable seed")


def save_hf(model, out_dir):
    if out_dir.exists():
        shutil.rmtree(out_dir)
    m = model.to(torch.bfloat16)
    m.config.dtype = torch.bfloat16
    m.generation_config = GenerationConfig(bos_token_id=TINY["bos_token_id"],
                                           eos_token_id=TINY["eos_token_id"], do_sample=False)
    m.save_pretrained(out_dir, safe_serialization=True)
    model.to(torch.float32)


def save_mxfp4(dense_dir, out_dir, mx):
    """The BF16 checkpoint with its experts replaced by MXFP4 blocks and scales, as in
    openai/gpt-oss-20b (blocks [E, rows, cols/32, 16], scales [E, rows, cols/32])."""
    from safetensors.torch import load_file, save_file
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    sd = load_file(str(dense_dir / "model.safetensors"))
    for name, (blocks, scales) in mx.items():
        del sd[name]
        sd[name + "_blocks"] = torch.from_numpy(blocks)
        sd[name + "_scales"] = torch.from_numpy(scales)
    save_file(sd, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((dense_dir / "config.json").read_text())
    config["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": ["model.layers.*.self_attn", "model.layers.*.mlp.router",
                                   "model.embed_tokens", "lm_head"]}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    shutil.copy(dense_dir / "generation_config.json", out_dir / "generation_config.json")


def converter_module():
    """llama.cpp's gpt-oss converter class from the llama-cpp-python source tree (its
    transform_nibble_layout is what turns the checkpoint's nibbles into GGML's MXFP4)."""
    import glob
    roots = sorted(glob.glob("/work/sdist/llama_cpp_python-*/vendor/llama.cpp"))
    if not roots:
        raise SystemExit("needs llama-cpp-python's source: pip download --no-binary :all: "
                         "--no-deps llama-cpp-python into /work/sdist and unpack it")
    sys.path.insert(0, roots[-1])
    sys.path.insert(0, roots[-1] + "/gguf-py")
    from conversion.gpt_oss import GptOssModel
    return GptOssModel


def write_gguf(path, model, mx):
    import gguf
    from gguf import GGMLQuantizationType as QT
    from fixtures_gguf import add_tiny_tokenizer
    Conv = converter_module()
    sd = {k: v.float().numpy() for k, v in model.state_dict().items()}
    c = CFG
    w = gguf.GGUFWriter(str(path), "gpt-oss")
    w.add_name(NAME)
    w.add_custom_alignment(32)
    w.add_context_length(c["max_position_embeddings"])
    w.add_embedding_length(c["hidden_size"])
    w.add_block_count(c["num_hidden_layers"])
    w.add_feed_forward_length(c["intermediate_size"])
    w.add_head_count(c["num_attention_heads"])
    w.add_head_count_kv(c["num_key_value_heads"])
    w.add_key_length(c["head_dim"])
    w.add_value_length(c["head_dim"])
    w.add_rope_freq_base(c["rope_parameters"]["rope_theta"])
    w.add_layer_norm_rms_eps(c["rms_norm_eps"])
    w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
    w.add_rope_scaling_factor(c["rope_parameters"]["factor"])
    w.add_rope_scaling_orig_ctx_len(c["rope_parameters"]["original_max_position_embeddings"])
    w.add_expert_count(c["num_local_experts"])
    w.add_expert_used_count(c["num_experts_per_tok"])
    w.add_expert_feed_forward_length(c["intermediate_size"])
    w.add_sliding_window(c["sliding_window"])
    w.add_file_type(38)  # LLAMA_FTYPE_MOSTLY_MXFP4_MOE
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(c["vocab_size"])
    add_tiny_tokenizer(w, c["vocab_size"])

    def mxfp4(blocks, scales):
        b = Conv.transform_nibble_layout(None, torch.from_numpy(blocks))
        data = torch.concat((torch.from_numpy(scales).unsqueeze(-1), b), dim=-1)
        return data.reshape(data.shape[0], data.shape[1], -1).numpy()

    f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    w.add_tensor("token_embd.weight", f32(sd["model.embed_tokens.weight"]))
    for i in range(c["num_hidden_layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", f32(sd[p + "input_layernorm.weight"]))
        w.add_tensor(b + "post_attention_norm.weight",
                     f32(sd[p + "post_attention_layernorm.weight"]))
        for hf, gg in (("q_proj", "attn_q"), ("k_proj", "attn_k"), ("v_proj", "attn_v"),
                       ("o_proj", "attn_output")):
            w.add_tensor(b + gg + ".weight", f32(sd[p + f"self_attn.{hf}.weight"]))
            w.add_tensor(b + gg + ".bias", f32(sd[p + f"self_attn.{hf}.bias"]))
        w.add_tensor(b + "attn_sinks.weight", f32(sd[p + "self_attn.sinks"]))
        w.add_tensor(b + "ffn_gate_inp.weight", f32(sd[p + "mlp.router.weight"]))
        w.add_tensor(b + "ffn_gate_inp.bias", f32(sd[p + "mlp.router.bias"]))
        gu_blocks, gu_scales = mx[p + "mlp.experts.gate_up_proj"]
        w.add_tensor(b + "ffn_gate_exps.weight", mxfp4(gu_blocks[:, 0::2], gu_scales[:, 0::2]),
                     raw_dtype=QT.MXFP4)
        w.add_tensor(b + "ffn_up_exps.weight", mxfp4(gu_blocks[:, 1::2], gu_scales[:, 1::2]),
                     raw_dtype=QT.MXFP4)
        dn_blocks, dn_scales = mx[p + "mlp.experts.down_proj"]
        w.add_tensor(b + "ffn_down_exps.weight", mxfp4(dn_blocks, dn_scales), raw_dtype=QT.MXFP4)
        gu_bias = sd[p + "mlp.experts.gate_up_proj_bias"]
        w.add_tensor(b + "ffn_gate_exps.bias", f32(gu_bias[:, 0::2]))
        w.add_tensor(b + "ffn_up_exps.bias", f32(gu_bias[:, 1::2]))
        w.add_tensor(b + "ffn_down_exps.bias", f32(sd[p + "mlp.experts.down_proj_bias"]))
    w.add_tensor("output_norm.weight", f32(sd["model.norm.weight"]))
    w.add_tensor("output.weight", f32(sd["lm_head.weight"]))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    # gguf-py reads the experts back as the model's values.
    reader = gguf.GGUFReader(str(path))
    t = {x.name: x for x in reader.tensors}
    for i in range(c["num_hidden_layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        gate = gguf.quants.dequantize(t[b + "ffn_gate_exps.weight"].data, QT.MXFP4)
        want = sd[p + "mlp.experts.gate_up_proj"].transpose(0, 2, 1)[:, 0::2]
        if not np.array_equal(gate.reshape(want.shape), want):
            raise RuntimeError("gguf-py's MXFP4 reading differs from the checkpoint's values")


def build_all():
    import fixtures_llamacpp
    from importlib.metadata import version
    seed, model, mx, gap = pick_seed()
    frac = clamp_fraction(model)
    print(f"{NAME}: seed {seed}, min router gap {gap:.4f}, gate values over the limit {frac:.3f}")
    if frac < 0.01:
        raise RuntimeError("the SwiGLU clamp is not exercised")
    dense_dir, mx_dir = MODELS_DIR / NAME, MODELS_DIR / (NAME + "-mxfp4")
    ref = fixtures_hf.reference(model, fixtures_hf.TRANSFORMERS_SOURCE)
    save_hf(model, dense_dir)
    reloaded = fixtures_hf.load_fp32(dense_dir, GptOssForCausalLM)
    ref2 = fixtures_hf.reference(reloaded, fixtures_hf.TRANSFORMERS_SOURCE)
    if np.max(np.abs(np.array(ref["logits"]) - np.array(ref2["logits"]))) > 1e-4:
        raise RuntimeError("the saved checkpoint differs from the model")
    ref2.update(seed=seed, min_router_gap=round7(gap), clamp_fraction=round7(frac))
    check_greedy_quality(ref2["greedy_tokens"], ref2["greedy_top2_margins"], NAME)
    write_json(MODELS_DIR / f"{NAME}.ref.json", ref2)

    save_mxfp4(dense_dir, mx_dir, mx)
    mx_model = GptOssForCausalLM.from_pretrained(mx_dir, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    ref3 = fixtures_hf.reference(mx_model, fixtures_hf.TRANSFORMERS_SOURCE +
                                 ", MXFP4 experts dequantized by transformers")
    diff = np.max(np.abs(np.array(ref3["logits"]) - np.array(ref2["logits"])))
    print(f"{NAME}-mxfp4: transformers on the MXFP4 checkpoint vs BF16 max |dlogit| {diff:.3g}")
    if diff > 1e-4:
        raise RuntimeError("transformers reads the MXFP4 experts as other values")
    write_json(MODELS_DIR / f"{NAME}-mxfp4.ref.json", ref3)

    path = MODELS_DIR / f"{NAME}-mxfp4.gguf"
    write_gguf(path, model, mx)
    request = {"input_ids": INPUT_IDS, "greedy_prompt": GREEDY_PROMPT, "n_new": N_GREEDY_NEW}
    out = fixtures_llamacpp.call("logits", path, stdin=json.dumps(request))
    logits = np.array(out["logits"], np.float32)
    diff = np.abs(logits - np.array(ref2["logits"]))
    agree = sum(a == b for a, b in zip(out["greedy_tokens"], ref2["greedy_tokens"]))
    print(f"{NAME}-mxfp4.gguf: llama.cpp vs transformers max |dlogit| {diff.max():.3g}; "
          f"greedy agree {agree}/{N_GREEDY_NEW}")
    write_json(MODELS_DIR / f"{NAME}-gguf.ref.json", {
        "input_ids": INPUT_IDS,
        "logits": rows7(logits),
        "greedy_prompt": GREEDY_PROMPT,
        "greedy_tokens": out["greedy_tokens"],
        "greedy_top2_margins": [round7(m) for m in out["greedy_margins"]],
        "source": f"llama.cpp (llama-cpp-python {version('llama_cpp_python')}), F32 KV cache, "
                  "flash attention off, n_threads 2",
    })
