#!/usr/bin/env python3
"""A random-weight GGUF of the exact Qwen2-0.5B shape, for throughput benchmarks.

Writes architecture "qwen2" with llama.cpp's standard metadata keys and tensor names
(token_embd, blk.N.attn_q/k/v (+ .bias), attn_output, attn_norm, ffn_norm, ffn_gate/up/down,
output_norm; tied embeddings, so no output.weight). Matrices are N(0, 0.02) quantized with
gguf.quants.quantize to Q8_0, Q4_0 or MXFP4, or stored F16 (token_embd too: it is also the
output head), norms are ones and biases N(0, 0.02), both F32. The other types (q2_k, q3_k_m, q4_k_s,
q4_k_m, q5_k_m, q5_1, iq4_nl, iq4_xs) are llama.cpp's own per-tensor mixes: the F16 file is
written first and quantized by llama_model_quantize (no importance matrix). The vocabulary is a stand-in that llama.cpp accepts
(tokenizer.ggml.model "gpt2": the 256 byte tokens in GPT-2's byte-to-unicode spelling, filler
tokens, Qwen2's three control tokens at their real ids, [PAD] tokens up to 151936, a few
merges); it is for loading only, the benchmarks feed token ids.

  /work/refvenv/bin/python tools/make_random_gguf.py --type q8_0
  /work/refvenv/bin/python tools/make_random_gguf.py --type q4_0 --check
  /work/refvenv/bin/python tools/make_random_gguf.py --shape q1024 --type q4_k_m
  /work/refvenv/bin/python tools/make_random_gguf.py --shape q1024 --type iq4_xs --check
  /work/refvenv/bin/python tools/make_random_gguf.py --shape moe --type q8_0 --check
  /work/refvenv/bin/python tools/make_random_gguf.py --shape gpt-oss --type mxfp4 --check

writes models/random/<shape>-random-<type>.gguf (models/ is gitignored). --check loads the
file with llama-cpp-python afterwards and decodes a few tokens.
"""
import argparse
import os
import sys
import time

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SHAPE_NAME = "qwen2-0.5b"
# Qwen2-0.5B (Qwen/Qwen2-0.5B config.json); --shape replaces these
HIDDEN = 896
INTERMEDIATE = 4864
LAYERS = 24
HEADS = 14
KV_HEADS = 2
HEAD_DIM = 64
VOCAB = 151936
CONTEXT = 32768
ROPE_THETA = 1e6
RMS_EPS = 1e-6
# Qwen2's real special-token ids
ENDOFTEXT, IM_START, IM_END = 151643, 151644, 151645

# --shape q1024: Qwen3-0.6B's sizes (hidden 1024, 3072 wide MLP, 28 layers, 16 / 8 heads) on the
# qwen2 architecture, so that every matrix row is a whole number of 256-value k-quant blocks
# (Qwen2-0.5B's 896 is not: llama.cpp then falls back to Q5_0 / Q8_0 for most of a Q4_K file).
SHAPES = {
    "qwen2-0.5b": dict(HIDDEN=896, INTERMEDIATE=4864, LAYERS=24, HEADS=14, KV_HEADS=2,
                       HEAD_DIM=64),
    "q1024": dict(HIDDEN=1024, INTERMEDIATE=3072, LAYERS=28, HEADS=16, KV_HEADS=8, HEAD_DIM=64),
    # --shape moe: a Qwen3-MoE (architecture qwen3moe) at about half Qwen3-30B-A3B's width and a
    # third of its depth: 64 experts of 512, 8 per token (1.6 B expert parameters, ~0.35 B read
    # per token with the tied 151936-row head); q/k norms, no biases, every layer MoE.
    "moe": dict(ARCH="qwen3moe", HIDDEN=1024, INTERMEDIATE=3072, LAYERS=16, HEADS=16,
                KV_HEADS=4, HEAD_DIM=64, EXPERTS=64, EXPERTS_USED=8, EXPERT_FF=512),
    # --shape gpt-oss: gpt-oss (architecture gpt-oss) at about a third of gpt-oss-20b's width and
    # half its depth: 32 experts of 1024, 4 per token, q/k/v/o biases, sinks, a router bias, expert
    # biases, even layers in a 128-token sliding window, YaRN (factor 32 over 4096). With
    # --type mxfp4 the experts are MXFP4 and the other matrices Q8_0 (llama.cpp's MXFP4_MOE);
    # the head is untied, as in gpt-oss.
    "gpt-oss": dict(ARCH="gpt-oss", HIDDEN=1024, INTERMEDIATE=1024, LAYERS=12, HEADS=16,
                    KV_HEADS=4, HEAD_DIM=64, EXPERTS=32, EXPERTS_USED=4, EXPERT_FF=1024),
}
ARCH = "qwen2"
EXPERTS = EXPERTS_USED = EXPERT_FF = 0

# type -> (ggml type the script writes, file type); with None the file is made from an F16 file
# by llama.cpp's own quantizer (llama_model_quantize, its standard per-tensor mix for the file
# type: e.g. Q6_K for the tied token_embd / output head, and fallbacks such as Q5_0 / Q8_0 /
# IQ4_NL for rows that are not whole 256-value blocks).
TYPES = {"q8_0": (Q.Q8_0, gguf.LlamaFileType.MOSTLY_Q8_0),
         "q4_0": (Q.Q4_0, gguf.LlamaFileType.MOSTLY_Q4_0),
         "mxfp4": (Q.MXFP4, gguf.LlamaFileType.MOSTLY_MXFP4_MOE),
         "f16": (Q.F16, gguf.LlamaFileType.MOSTLY_F16),
         "q4_k_m": (None, gguf.LlamaFileType.MOSTLY_Q4_K_M),
         "q4_k_s": (None, gguf.LlamaFileType.MOSTLY_Q4_K_S),
         "q2_k": (None, gguf.LlamaFileType.MOSTLY_Q2_K),
         "q3_k_m": (None, gguf.LlamaFileType.MOSTLY_Q3_K_M),
         "q5_k_m": (None, gguf.LlamaFileType.MOSTLY_Q5_K_M),
         "q5_1": (None, gguf.LlamaFileType.MOSTLY_Q5_1),
         "iq4_nl": (None, gguf.LlamaFileType.MOSTLY_IQ4_NL),
         "iq4_xs": (None, gguf.LlamaFileType.MOSTLY_IQ4_XS)}


def gpt2_byte_chars():
    """GPT-2's byte-to-unicode table: printable bytes map to themselves, the rest to 256+n."""
    keep = (list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) +
            list(range(0xAE, 0xFF + 1)))
    out, n = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + n)
            n += 1
    return [out[b] for b in range(256)]


def vocabulary():
    """(tokens, token types, merges) of a VOCAB-entry stand-in Qwen2 vocabulary."""
    T = gguf.TokenType
    tokens = gpt2_byte_chars()
    types = [T.NORMAL] * 256
    sp = "\u0120"  # GPT-2's spelling of a space
    merges = [f"{sp} t", f"{sp} a", "i n", "h e", "r e", "o n", f"{sp}t he", "e r"]
    for m in merges:  # the merged tokens exist in the vocabulary, as llama.cpp expects
        tokens.append(m.replace(" ", ""))
        types.append(T.NORMAL)
    while len(tokens) < ENDOFTEXT:
        tokens.append(f"<filler{len(tokens)}>")
        types.append(T.NORMAL)
    for s in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        tokens.append(s)
        types.append(T.CONTROL)
    while len(tokens) < VOCAB:
        tokens.append(f"[PAD{len(tokens)}]")
        types.append(T.UNUSED)
    assert len(tokens) == VOCAB and len(set(tokens)) == VOCAB
    return tokens, types, merges


def add_metadata(w, ftype, name):
    w.add_name(name)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(HIDDEN)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(INTERMEDIATE)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(ROPE_THETA)
    w.add_layer_norm_rms_eps(RMS_EPS)
    if ARCH == "gpt-oss":
        w.add_sliding_window(128)
        w.add_rope_scaling_type(gguf.RopeScalingType.YARN)
        w.add_rope_scaling_factor(32.0)
        w.add_rope_scaling_orig_ctx_len(4096)
    if EXPERTS:
        w.add_key_length(HEAD_DIM)
        w.add_value_length(HEAD_DIM)
        w.add_expert_count(EXPERTS)
        w.add_expert_used_count(EXPERTS_USED)
        w.add_expert_feed_forward_length(EXPERT_FF)
    w.add_file_type(ftype)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tokens, types, merges = vocabulary()
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(ENDOFTEXT)
    w.add_eos_token_id(IM_END)
    w.add_pad_token_id(ENDOFTEXT)
    w.add_add_bos_token(False)


def tensor_shapes():
    """(name, shape as numpy (rows, cols) or (n,), quantized?) in llama.cpp's order."""
    q_out, kv_out = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    yield "token_embd.weight", (VOCAB, HIDDEN), True
    moe = ARCH == "qwen3moe"
    if ARCH == "gpt-oss":
        yield from gpt_oss_tensor_shapes()
        return
    for i in range(LAYERS):
        b = f"blk.{i}."
        yield b + "attn_norm.weight", (HIDDEN,), False
        for name, rows in (("attn_q", q_out), ("attn_k", kv_out), ("attn_v", kv_out)):
            yield b + name + ".weight", (rows, HIDDEN), True
            if not moe:
                yield b + name + ".bias", (rows,), False
        yield b + "attn_output.weight", (HIDDEN, q_out), True
        if moe:
            yield b + "attn_q_norm.weight", (HEAD_DIM,), False
            yield b + "attn_k_norm.weight", (HEAD_DIM,), False
        yield b + "ffn_norm.weight", (HIDDEN,), False
        if moe:  # the router stays F32, as convert_hf_to_gguf.py leaves it
            yield b + "ffn_gate_inp.weight", (EXPERTS, HIDDEN), False
            yield b + "ffn_gate_exps.weight", (EXPERTS, EXPERT_FF, HIDDEN), True
            yield b + "ffn_up_exps.weight", (EXPERTS, EXPERT_FF, HIDDEN), True
            yield b + "ffn_down_exps.weight", (EXPERTS, HIDDEN, EXPERT_FF), True
            continue
        yield b + "ffn_gate.weight", (INTERMEDIATE, HIDDEN), True
        yield b + "ffn_up.weight", (INTERMEDIATE, HIDDEN), True
        yield b + "ffn_down.weight", (HIDDEN, INTERMEDIATE), True
    yield "output_norm.weight", (HIDDEN,), False


def gpt_oss_tensor_shapes():
    """The layers, final norm and head of llama.cpp's gpt-oss layout; quantized is "expert" for
    the expert matrices (MXFP4 with --type mxfp4), True for the other matrices."""
    q_out, kv_out = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    for i in range(LAYERS):
        b = f"blk.{i}."
        yield b + "attn_norm.weight", (HIDDEN,), False
        for name, rows, cols in (("attn_q", q_out, HIDDEN), ("attn_k", kv_out, HIDDEN),
                                 ("attn_v", kv_out, HIDDEN), ("attn_output", HIDDEN, q_out)):
            yield b + name + ".weight", (rows, cols), True
            yield b + name + ".bias", (rows,), False
        yield b + "attn_sinks.weight", (HEADS,), False
        yield b + "post_attention_norm.weight", (HIDDEN,), False
        yield b + "ffn_gate_inp.weight", (EXPERTS, HIDDEN), False
        yield b + "ffn_gate_inp.bias", (EXPERTS,), False
        for name, rows, cols in (("ffn_gate_exps", EXPERT_FF, HIDDEN),
                                 ("ffn_up_exps", EXPERT_FF, HIDDEN),
                                 ("ffn_down_exps", HIDDEN, EXPERT_FF)):
            yield b + name + ".weight", (EXPERTS, rows, cols), "expert"
            yield b + name + ".bias", (EXPERTS, rows), False
    yield "output_norm.weight", (HIDDEN,), False
    yield "output.weight", (VOCAB, HIDDEN), True


def write(path, qtype, ftype, seed):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, ARCH)
    add_metadata(w, ftype, f"{SHAPE_NAME}-random-{qtype.name.lower()}")
    n_params = 0
    for name, shape, quantized in tensor_shapes():
        n_params += int(np.prod(shape))
        if name.endswith("norm.weight"):
            w.add_tensor(name, np.ones(shape, dtype=np.float32))
            continue
        x = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        if ARCH == "gpt-oss" and qtype == Q.MXFP4 and quantized is True:
            w.add_tensor(name, gguf.quants.quantize(x, Q.Q8_0), raw_dtype=Q.Q8_0)
        elif quantized and qtype == Q.F16:
            w.add_tensor(name, x.astype(np.float16))
        elif quantized:
            w.add_tensor(name, gguf.quants.quantize(x, qtype), raw_dtype=qtype)
        else:
            w.add_tensor(name, x)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return n_params


def check_llamacpp(path):
    """Loads the file with llama-cpp-python (extra buffer types off: this VM's AMX path crashes)
    and greedily decodes a few tokens."""
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from compare_llamacpp import disable_extra_buffer_types
    disable_extra_buffer_types()
    from llama_cpp import Llama
    import llama_cpp
    llm = Llama(model_path=path, n_ctx=64, n_threads=2, n_batch=64, verbose=False)
    assert llm.n_vocab() == VOCAB, llm.n_vocab()
    llm.eval([1, 2, 3, 1000, 20000])
    out = []
    for _ in range(4):
        # llm.scores stays zero in llama-cpp-python 0.3.36 without logits_all: read the context
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1),
                                       shape=(VOCAB,))
        assert np.isfinite(logits).all() and np.abs(logits).max() > 0
        tok = int(logits.argmax())
        out.append(tok)
        llm.eval([tok])
    print(f"llama.cpp loaded {path}: n_vocab {llm.n_vocab()}, "
          f"context {llm.metadata.get(ARCH + '.context_length')}, "
          f"greedy after [1,2,3,1000,20000]: {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--type", choices=sorted(TYPES), default="q8_0")
    ap.add_argument("--shape", choices=sorted(SHAPES), default="qwen2-0.5b")
    ap.add_argument("--out", help="output file (default models/random/SHAPE-random-TYPE.gguf)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check", action="store_true", help="load it with llama-cpp-python after")
    a = ap.parse_args()
    global SHAPE_NAME
    SHAPE_NAME = a.shape
    globals().update(SHAPES[a.shape])
    qtype, ftype = TYPES[a.type]
    path = a.out or os.path.join(ROOT, "models", "random", f"{a.shape}-random-{a.type}.gguf")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    t0 = time.perf_counter()
    if qtype is None:  # a llama.cpp mix: F16 first, then llama.cpp's quantizer
        f16 = path + ".f16.tmp"
        n = write(f16, Q.F16, gguf.LlamaFileType.MOSTLY_F16, a.seed)
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from fixtures_llamacpp import disable_extra_buffer_types, quantize
        disable_extra_buffer_types()
        quantize(f16, path, int(ftype), pure=False)
        os.remove(f16)
    else:
        n = write(path, qtype, ftype, a.seed)
    print(f"wrote {path}: {n / 1e6:.1f} M parameters, {os.path.getsize(path) / 2**20:.0f} MiB, "
          f"{time.perf_counter() - t0:.0f} s")
    if a.check:
        check_llamacpp(path)


if __name__ == "__main__":
    main()
