#!/usr/bin/env python3
"""Writes the seed inputs of fuzz/corpus/<target>/seed-* from the committed test fixtures.

Re-runnable: `/work/refvenv/bin/python fuzz/make_seeds.py` (or any Python 3 with numpy and the
`gguf` package; without `gguf` the two crafted GGUF seeds are skipped). Only seed-* files are
rewritten; crash-* regression inputs are kept.
"""
import base64
import glob
import json
import os
import random
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def out(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def read(*parts):
    with open(os.path.join(FIX, *parts), "rb") as f:
        return f.read()


def clear_seeds():
    for p in glob.glob(os.path.join(CORPUS, "*", "seed-*")):
        os.remove(p)


# GPT-2 byte -> printable character map (the byte-level alphabet).
def byte_alphabet():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tiny_bpe(text, n_merges):
    """A few greedy BPE merges over `text` (byte-level spelled): (vocab pieces, merges)."""
    alpha = byte_alphabet()
    words = [[alpha[b] for b in w.encode()] for w in text.replace(" ", " \x00").split("\x00")]
    vocab = [alpha[b] for b in range(256)]
    merges = []
    for _ in range(n_merges):
        counts = {}
        for w in words:
            for a, b in zip(w, w[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + 1
        if not counts:
            break
        (a, b), _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append(f"{a} {b}")
        vocab.append(a + b)
        new_words = []
        for w in words:
            nw, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and w[i] == a and w[i + 1] == b:
                    nw.append(a + b)
                    i += 2
                else:
                    nw.append(w[i])
                    i += 1
            new_words.append(nw)
        words = new_words
    return vocab, merges


TEXT = ("the quick brown fox jumps over the lazy dog; the dog sleeps. hello world, hello there! "
        "1234 5678 héllo wörld naïve café")
GPT2_RE = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_RE = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+"
             r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def tokenizer_json(pre, normalizer=None, post=None, merges_as_pairs=False, extra_added=()):
    vocab, merges = tiny_bpe(TEXT, 40)
    added = [{"id": len(vocab) + i, "content": c, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for i, c in enumerate(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])]
    for i, (c, special, lstrip, rstrip) in enumerate(extra_added):
        added.append({"id": len(vocab) + len(added), "content": c, "single_word": False,
                      "lstrip": lstrip, "rstrip": rstrip, "normalized": not special,
                      "special": special})
    j = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": normalizer, "pre_tokenizer": pre, "post_processor": post,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False,
                  "vocab": {p: i for i, p in enumerate(vocab)},
                  "merges": [m.split(" ") for m in merges] if merges_as_pairs else merges},
    }
    return json.dumps(j, ensure_ascii=False)


def tokenizer_seeds():
    bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    cfg = json.dumps({"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"},
                      "add_bos_token": True,
                      "chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"})
    out("tokenizer_load", "gpt2", tokenizer_json(dict(bl, use_regex=True)))
    out("tokenizer_load", "smollm2_style",
        tokenizer_json({"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True}, bl]},
            post={"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False}) +
        "\0" + cfg)
    out("tokenizer_load", "llama3_style",
        tokenizer_json({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_RE}, "behavior": "Isolated",
             "invert": False}, dict(bl, use_regex=False)]},
            post={"type": "TemplateProcessing",
                  "single": [{"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
                             {"Sequence": {"id": "A", "type_id": 0}}],
                  "pair": [], "special_tokens": {"<|im_start|>": {
                      "id": "<|im_start|>", "ids": [len(tiny_bpe(TEXT, 40)[0]) + 1],
                      "tokens": ["<|im_start|>"]}}},
            merges_as_pairs=True))
    out("tokenizer_load", "qwen2_style",
        tokenizer_json({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": GPT2_RE}, "behavior": "Isolated",
             "invert": False}, dict(bl, use_regex=False)]},
            normalizer={"type": "NFC"},
            extra_added=[("<think>", False, False, False), ("[MASK]", True, True, True)]) +
        "\0" + json.dumps({"bos_token": None, "eos_token": "<|endoftext|>",
                           "chat_template": [{"name": "default", "template": "x"}]}))
    out("tokenizer_load", "split_string",
        tokenizer_json({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": " "}, "behavior": "Removed",
             "invert": False}, dict(bl, add_prefix_space=False)]}))

    texts = [base64.b64decode(s) for s in
             json.load(open(os.path.join(FIX, "tokenizer", "corpus.json")))["strings_base64"]]
    rng = random.Random(7)
    picked = [t for t in texts if 0 < len(t) <= 200]
    picked = picked[:8] + rng.sample(picked[8:], min(32, len(picked) - 8))
    for i, t in enumerate(picked):
        out("tokenizer_encode", f"{i:02d}", t)
    out("tokenizer_encode", "specials", "<|im_start|>user\nHi<|im_end|>\n<|endoftext|> 12345")


def gguf_seeds():
    for p in ["align64_v3.gguf", "all_types_v2.gguf", "all_types_v3.gguf"]:
        out("gguf", p, read("gguf", p))
    for p in sorted(glob.glob(os.path.join(FIX, "tokenizer", "bad_gguf", "*.gguf"))):
        out("gguf", "tok_" + os.path.basename(p), open(p, "rb").read())
    try:
        import gguf
        import numpy as np
    except ImportError:
        print("gguf package missing: crafted GGUF seeds skipped")
        return
    vocab, merges = tiny_bpe(TEXT, 20)
    for arch in ["llama", "qwen2"]:
        path = os.path.join(CORPUS, "gguf", f"seed-tiny_{arch}.gguf")
        w = gguf.GGUFWriter(path, arch)
        w.add_context_length(64)
        w.add_embedding_length(32)
        w.add_block_count(1)
        w.add_feed_forward_length(64)
        w.add_head_count(2)
        w.add_head_count_kv(1)
        w.add_layer_norm_rms_eps(1e-5)
        w.add_rope_freq_base(10000.0)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("qwen2" if arch == "qwen2" else "llama-bpe")
        w.add_token_list(vocab + ["<s>", "</s>"])
        w.add_token_types([1] * len(vocab) + [3, 3])
        w.add_token_merges(merges)
        w.add_bos_token_id(len(vocab))
        w.add_eos_token_id(len(vocab) + 1)
        w.add_chat_template("{{ messages[0]['content'] }}")
        rng = np.random.default_rng(1)
        w.add_tensor("token_embd.weight", rng.standard_normal((len(vocab) + 2, 32)).astype(np.float32)[:4])
        w.add_tensor("blk.0.attn_q.weight", rng.integers(0, 255, (2, 34), dtype=np.uint8),
                     raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor("blk.0.ffn_up.weight", rng.integers(0, 255, (1, 144), dtype=np.uint8),
                     raw_dtype=gguf.GGMLQuantizationType.Q4_K)
        w.add_tensor("output_norm.weight", np.ones(32, dtype=np.float16))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    # A SentencePiece ("llama") vocabulary with byte-fallback tokens.
    path = os.path.join(CORPUS, "gguf", "seed-spm_vocab.gguf")
    w = gguf.GGUFWriter(path, "llama")
    toks = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + \
           ["\u2581", "\u2581the", "\u2581a", "e", "t", "h", "th", "he", "\u2581h"]
    w.add_tokenizer_model("llama")
    w.add_token_list(toks)
    w.add_token_scores([0.0] * 259 + [-float(i) for i in range(len(toks) - 259)])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * (len(toks) - 259))
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def safetensors_seeds():
    for p in ["single/model.safetensors", "mlx/model.safetensors",
              "sharded/model-00001-of-00002.safetensors",
              "sharded/model-00002-of-00002.safetensors"]:
        out("safetensors", p.replace("/", "_"), read("safetensors", *p.split("/")))
    header = json.dumps({"__metadata__": {"format": "pt"},
                         "a": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]},
                         "e": {"dtype": "I64", "shape": [0, 3], "data_offsets": [8, 8]},
                         "b": {"dtype": "BOOL", "shape": [], "data_offsets": [8, 9]}}).encode()
    out("safetensors", "mixed", struct.pack("<Q", len(header)) + header + bytes(range(9)))


def config_seeds():
    for d in sorted(glob.glob(os.path.join(FIX, "models", "tiny-*"))):
        if not os.path.isfile(os.path.join(d, "config.json")):  # LoRA adapters have none
            continue
        cfg = open(os.path.join(d, "config.json"), "rb").read()
        gen = os.path.join(d, "generation_config.json")
        name = os.path.basename(d)
        out("config", name, cfg + (b"\0" + open(gen, "rb").read() if os.path.exists(gen) else b""))
    llama3 = {"architectures": ["LlamaForCausalLM"], "vocab_size": 128, "hidden_size": 64,
              "intermediate_size": 128, "num_hidden_layers": 1, "num_attention_heads": 4,
              "num_key_value_heads": 2, "rope_theta": 500000.0, "eos_token_id": [1, 2],
              "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0,
                               "original_max_position_embeddings": 8192}}
    out("config", "llama3_rope", json.dumps(llama3))
    v5 = dict(llama3, architectures=["Qwen3ForCausalLM"], head_dim=16)
    del v5["rope_scaling"]
    v5["rope_parameters"] = {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    out("config", "transformers5", json.dumps(v5) + "\0" + json.dumps({"temperature": 0.7,
                                                                        "top_k": 20}))


def template_seeds():
    cases = json.load(open(os.path.join(FIX, "templates", "cases.json")))
    seen = {}
    for c in cases:
        key = c.get("template") or c["name"]
        seen.setdefault(key, [])
        if len(seen[key]) >= (3 if "template" in c else 1):
            continue
        seen[key].append(c)
        src = read("templates", c["template"]).decode() if "template" in c else c["source"]
        name = c["name"].replace("/", "_").replace("=", "-")
        out("template", name, src + "\0" + json.dumps(c["context"], ensure_ascii=False))


def sampler_seeds():
    rng = random.Random(3)
    for i in range(12):
        out("sampler", f"{i:02d}", bytes(rng.randrange(256) for _ in range(rng.choice([16, 64, 600]))))


def grammar_seeds():
    """GBNF grammars and regexes of the structured fixtures, each with one of its documents."""
    g = json.loads(read("structured", "grammar_verdicts.json"))
    for i, case in enumerate(g):
        doc = bytes.fromhex(case["docs"][i % len(case["docs"])]["hex"])
        out("grammar", f"gbnf-{i:02d}", b"g" + case["gbnf"].encode() + b"\0" + doc)
    r = json.loads(read("structured", "regex_verdicts.json"))["cases"]
    for i, case in enumerate(r):
        doc = bytes.fromhex(case["docs"][i % len(case["docs"])]["hex"])
        out("grammar", f"regex-{i:02d}", b"r" + case["regex"].encode() + b"\0" + doc)


if __name__ == "__main__":
    clear_seeds()
    tokenizer_seeds()
    gguf_seeds()
    safetensors_seeds()
    config_seeds()
    template_seeds()
    sampler_seeds()
    grammar_seeds()
    for t in sorted(os.listdir(CORPUS)):
        files = os.listdir(os.path.join(CORPUS, t))
        size = sum(os.path.getsize(os.path.join(CORPUS, t, f)) for f in files)
        print(f"{t}: {len(files)} files, {size} bytes")
