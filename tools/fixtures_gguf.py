"""tiny-llama as GGUF (F32, Q8_0, Q4_0, Q4_K, Q4_K_M, Q2_K, Q3_K_M, Q5_1, IQ4_NL, IQ4_XS) and
llama.cpp references.

The GGUF layout follows llama.cpp's convert_hf_to_gguf.py for LlamaForCausalLM:
  * Q and K projection rows are permuted (reshape(n_head, 2, head_dim/2, in)
    .swapaxes(1, 2)): HF stores rotate-half pairs (i, i + head_dim/2), GGUF
    stores them adjacent (2i, 2i+1), matching ggml's "normal" rope mode.
  * llama3 rope scaling becomes a rope_freqs.weight F32 tensor of
    head_dim/2 per-frequency divisors (no rope.scaling.* metadata).
Q8_0 and Q4_0 are quantized with gguf.quants; the rest with llama.cpp's own
llama_model_quantize on the F32 file:
  q4_k     LLAMA_FTYPE_MOSTLY_Q4_K_M with pure=True (every 2-D weight Q4_K)
and, with llama.cpp's normal per-tensor type mixes (pure=False, no importance matrix):
  q4_k_m   LLAMA_FTYPE_MOSTLY_Q4_K_M
  q2_k     LLAMA_FTYPE_MOSTLY_Q2_K
  q3_k_m   LLAMA_FTYPE_MOSTLY_Q3_K_M
  q5_1     LLAMA_FTYPE_MOSTLY_Q5_1
  iq4_nl   LLAMA_FTYPE_MOSTLY_IQ4_NL
  iq4_xs   LLAMA_FTYPE_MOSTLY_IQ4_XS
Each ref.json lists the file's tensor types.
"""

import json
import math

import numpy as np
import gguf
from importlib.metadata import version
import torch
from gguf import GGMLQuantizationType as QT
from transformers import LlamaConfig, LlamaForCausalLM

import fixtures_llamacpp
from fixtures_common import (GREEDY_PROMPT, INPUT_IDS, MODELS_DIR,
                             N_GREEDY_NEW, TINY, round7, rows7, write_json)
from fixtures_hf import TRANSFORMERS_SOURCE, forward_logits, greedy, load_fp32

HF_DIR = MODELS_DIR / "tiny-llama"
LLAMA_CPP_SOURCE = (f"llama.cpp (llama-cpp-python {version('llama_cpp_python')}), "
                    "F32 KV cache, flash attention off, n_threads 2")

# GGUF variant -> (ggml type for 2-D weights, llama_ftype for general.file_type)
VARIANTS = {
    "f32": (QT.F32, 0),
    "q8_0": (QT.Q8_0, 7),
    "q4_0": (QT.Q4_0, 2),
}
Q4_K_FTYPE = 15  # LLAMA_FTYPE_MOSTLY_Q4_K_M (with pure=True: every 2-D weight Q4_K)
# Variants quantized by llama.cpp from the F32 file with its normal mixes (pure=False):
# name -> llama_ftype (llama_cpp.LLAMA_FTYPE_MOSTLY_*).
LLAMACPP_MIXES = {
    "q2_k": 10,    # LLAMA_FTYPE_MOSTLY_Q2_K
    "q3_k_m": 12,  # LLAMA_FTYPE_MOSTLY_Q3_K_M
    "q5_1": 9,     # LLAMA_FTYPE_MOSTLY_Q5_1
    "iq4_nl": 25,  # LLAMA_FTYPE_MOSTLY_IQ4_NL
    "iq4_xs": 30,  # LLAMA_FTYPE_MOSTLY_IQ4_XS
}


def permute_qk(w, n_head):
    """convert_hf_to_gguf.py LlamaModel.permute (n_head = kv heads for K)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def unpermute_qk(w, n_head):
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def llama3_rope_factors(cfg):
    """Per-frequency divisors exactly as convert_hf_to_gguf.py computes them."""
    rope = cfg["rope_scaling"]
    base = cfg["rope_theta"]
    dim = cfg["head_dim"]
    freqs = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    factor = rope["factor"]
    low, high = rope["low_freq_factor"], rope["high_freq_factor"]
    old_ctx = rope["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            out.append(1)
        elif wavelen > low_wavelen:
            out.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(out, dtype=torch.float32).numpy()


def bytes_to_unicode():
    """GPT-2's byte -> printable unicode character map."""
    bs = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
          + list(range(ord("®"), ord("ÿ") + 1)))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def tiny_vocab(n_vocab):
    """Minimal GPT-2 style BPE vocab: 3 specials, 256 byte tokens, then merged
    pairs of common characters (each merge joins two single-byte tokens)."""
    b2u = bytes_to_unicode()
    tokens = ["<unk>", "<s>", "</s>"] + [b2u[b] for b in range(256)]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    types += [gguf.TokenType.NORMAL] * 256
    chars = "Ġetaoinsrhldcumf"
    merges = []
    for a in chars:
        for b in chars:
            if len(tokens) == n_vocab:
                break
            merges.append(f"{a} {b}")
            tokens.append(a + b)
            types.append(gguf.TokenType.NORMAL)
    if len(tokens) != n_vocab:
        raise RuntimeError("vocab size mismatch")
    return tokens, types, merges


def add_tiny_tokenizer(w, n_vocab):
    """tiny_vocab as a GPT-2 style GGUF tokenizer, with TINY's special ids."""
    tokens, types, merges = tiny_vocab(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(TINY["bos_token_id"])
    w.add_eos_token_id(TINY["eos_token_id"])
    w.add_unk_token_id(0)
    w.add_add_bos_token(False)


def hf_tensors(cfg):
    """(gguf name, float32 numpy array in HF [out, in] order) for tiny-llama."""
    from safetensors.numpy import load_file
    sd = load_file(str(HF_DIR / "model.safetensors"))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    out = [("token_embd.weight", sd["model.embed_tokens.weight"])]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        out += [
            (f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"]),
            (f"blk.{i}.attn_q.weight", permute_qk(sd[p + "self_attn.q_proj.weight"], n_head)),
            (f"blk.{i}.attn_k.weight", permute_qk(sd[p + "self_attn.k_proj.weight"], n_kv)),
            (f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"]),
            (f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"]),
            (f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"]),
            (f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"]),
            (f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"]),
            (f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"]),
        ]
    out += [("output_norm.weight", sd["model.norm.weight"]),
            ("output.weight", sd["lm_head.weight"]),
            ("rope_freqs.weight", llama3_rope_factors(cfg))]
    return [(n, np.ascontiguousarray(t, dtype=np.float32)) for n, t in out]


def write_gguf(path, cfg, qtype, ftype):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_custom_alignment(32)
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_head_count_kv(cfg["num_key_value_heads"])
    w.add_rope_freq_base(cfg["rope_theta"])
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_file_type(ftype)
    w.add_vocab_size(cfg["vocab_size"])
    w.add_rope_dimension_count(cfg["head_dim"])
    if qtype != QT.F32:
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    add_tiny_tokenizer(w, cfg["vocab_size"])
    for name, t in hf_tensors(cfg):
        if t.ndim == 2 and qtype != QT.F32:
            w.add_tensor(name, gguf.quants.quantize(t, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, t)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def llama_cpp_reference(path):
    request = {"input_ids": INPUT_IDS, "greedy_prompt": GREEDY_PROMPT,
               "n_new": N_GREEDY_NEW}
    out = fixtures_llamacpp.call("logits", path, stdin=json.dumps(request))
    if out["n_vocab"] != TINY["vocab_size"]:
        raise RuntimeError("llama.cpp vocab size mismatch")
    margins = [round7(m) for m in out["greedy_margins"]]
    return np.array(out["logits"], np.float32), out["greedy_tokens"], margins


def dequantized_hf_model(path, cfg):
    """transformers LlamaForCausalLM holding the GGUF's weights, dequantized
    with gguf.quants and Q/K rows un-permuted."""
    reader = gguf.GGUFReader(str(path))
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    t = {x.name: gguf.quants.dequantize(x.data, x.tensor_type).astype(np.float32)
         for x in reader.tensors}
    sd = {"model.embed_tokens.weight": t["token_embd.weight"],
          "model.norm.weight": t["output_norm.weight"],
          "lm_head.weight": t["output.weight"]}
    for i in range(cfg["num_hidden_layers"]):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        sd[p + "input_layernorm.weight"] = t[b + "attn_norm.weight"]
        sd[p + "self_attn.q_proj.weight"] = unpermute_qk(t[b + "attn_q.weight"], n_head)
        sd[p + "self_attn.k_proj.weight"] = unpermute_qk(t[b + "attn_k.weight"], n_kv)
        sd[p + "self_attn.v_proj.weight"] = t[b + "attn_v.weight"]
        sd[p + "self_attn.o_proj.weight"] = t[b + "attn_output.weight"]
        sd[p + "post_attention_layernorm.weight"] = t[b + "ffn_norm.weight"]
        sd[p + "mlp.gate_proj.weight"] = t[b + "ffn_gate.weight"]
        sd[p + "mlp.up_proj.weight"] = t[b + "ffn_up.weight"]
        sd[p + "mlp.down_proj.weight"] = t[b + "ffn_down.weight"]
    model = load_fp32(HF_DIR, LlamaForCausalLM)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in sd.items()})
    types = sorted({x.tensor_type.name for x in reader.tensors})
    return model, types


def build_reference(name, path, cfg, hf_model):
    logits, tokens, margins = llama_cpp_reference(path)
    deq_model, types = dequantized_hf_model(path, cfg)
    deq_logits = forward_logits(deq_model, INPUT_IDS)
    deq_tokens, deq_margins = greedy(deq_model, GREEDY_PROMPT, N_GREEDY_NEW)
    if name == "f32":
        # Un-permuting must give back the HF weights bit for bit.
        for k, v in hf_model.state_dict().items():
            if not torch.equal(v, deq_model.state_dict()[k]):
                raise RuntimeError(f"f32 GGUF round trip differs at {k}")
    ref = {
        "input_ids": INPUT_IDS,
        "logits": rows7(logits),
        "greedy_prompt": GREEDY_PROMPT,
        "greedy_tokens": tokens,
        "greedy_top2_margins": margins,
        "source": LLAMA_CPP_SOURCE,
        "tensor_types": types,
        "logits_transformers": rows7(deq_logits),
        "greedy_tokens_transformers": deq_tokens,
        "greedy_top2_margins_transformers": deq_margins,
        "source_transformers": TRANSFORMERS_SOURCE
        + " on the GGUF weights dequantized by gguf " + gguf_version(),
    }
    diff = np.abs(logits - deq_logits)
    print(f"tiny-llama-{name}.gguf {types}: llama.cpp vs transformers(dequant) "
          f"max |dlogit| {diff.max():.3g}, mean {diff.mean():.3g}; greedy agree "
          f"{sum(a == b for a, b in zip(tokens, deq_tokens))}/{N_GREEDY_NEW}; "
          f"min margin {min(margins):.4f}")
    write_json(MODELS_DIR / f"tiny-llama-{name}.ref.json", ref)


def gguf_version():
    return version("gguf")


def build_all():
    cfg = json.loads((HF_DIR / "config.json").read_text())
    hf_model = load_fp32(HF_DIR, LlamaForCausalLM)
    paths = {}
    for name, (qtype, ftype) in VARIANTS.items():
        paths[name] = MODELS_DIR / f"tiny-llama-{name}.gguf"
        write_gguf(paths[name], cfg, qtype, ftype)
    paths["q4_k"] = MODELS_DIR / "tiny-llama-q4_k.gguf"
    fixtures_llamacpp.call("quantize", paths["f32"], paths["q4_k"], Q4_K_FTYPE, 1)
    paths["q4_k_m"] = MODELS_DIR / "tiny-llama-q4_k_m.gguf"
    fixtures_llamacpp.call("quantize", paths["f32"], paths["q4_k_m"], Q4_K_FTYPE, 0)
    for name, ftype in LLAMACPP_MIXES.items():
        paths[name] = MODELS_DIR / f"tiny-llama-{name}.gguf"
        fixtures_llamacpp.call("quantize", paths["f32"], paths[name], ftype, 0)
    for name, path in paths.items():
        build_reference(name, path, cfg, hf_model)
