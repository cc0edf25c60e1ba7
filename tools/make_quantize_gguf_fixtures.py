#!/usr/bin/env python3
"""Fixtures for `jinx quantize IN OUT.gguf`, under tests/fixtures/quant/.

Run:  /work/refvenv/bin/python tools/make_quantize_gguf_fixtures.py [BUILD_DIR]

Writes:
  tiny-tokenizer/tokenizer.json, tokenizer_config.json
        a byte-level BPE tokenizer for the 512-token tiny models (3 specials, 256 byte tokens,
        253 merges; Qwen2's pre-tokenizer regex), made with the `tokenizers` library: the tiny
        Hugging Face fixtures have none, and a GGUF needs one
  gguf-<model>-<type>.llamacpp.json
        llama.cpp (llama-cpp-python) on the GGUF that `jinx quantize` writes from
        tests/fixtures/models/<model> + the tokenizer above: its tokenization of a few strings,
        its logits for a short prompt, the tensor types it found, the file size

The GGUFs are written by the jinx binary, built here (cmake + ninja, BUILD_DIR defaults to
build-fixtures), and are not kept: tests/model/quantize_gguf_test.cpp writes them again and
checks Jinx's reading of them against these references.
"""

import json
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fixtures_common import MODELS_DIR, ROOT, round7, write_json  # noqa: E402
from fixtures_gguf import tiny_vocab  # noqa: E402
import fixtures_llamacpp  # noqa: E402

OUT = ROOT / "tests" / "fixtures" / "quant"
TOK_DIR = OUT / "tiny-tokenizer"
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+"
                 r"[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
CASES = [("tiny-qwen2", "q8_0"), ("tiny-qwen2", "q4_k"), ("tiny-qwen3", "q4_k"),
         ("tiny-llama", "q4_k"), ("tiny-llama", "q4_0"), ("tiny-qwen2-yarn", "q8_0")]
TEXTS = ["Hello world", "the rain in Spain falls 123 times!", "  leading spaces\nand\ttabs",
         "caf\u00e9 \u2014 na\u00efve", "<s>special</s> tokens"]
PROMPT = [1, 45, 300, 7, 511, 260, 99, 300]
CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n"
                 "{% endfor %}{% if add_generation_prompt %}<s>assistant\n{% endif %}")


def build_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    tokens, _, merges = tiny_vocab(512)
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ")) for m in merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    from tokenizers import AddedToken
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in ("<unk>", "<s>", "</s>")])
    TOK_DIR.mkdir(parents=True, exist_ok=True)
    tok.save(str(TOK_DIR / "tokenizer.json"))
    write_json(TOK_DIR / "tokenizer_config.json", {
        "add_bos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "</s>", "chat_template": CHAT_TEMPLATE,
        "tokenizer_class": "PreTrainedTokenizerFast"})
    ids = [tok.encode(t, add_special_tokens=False).ids for t in TEXTS]
    return ids


def build_jinx(build_dir):
    if not (build_dir / "build.ninja").exists():
        subprocess.run(["cmake", "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja",
                        "-DCMAKE_BUILD_TYPE=Release"], check=True)
    subprocess.run(["ninja", "-C", str(build_dir), "-j2", "jinx"], check=True)
    exe = build_dir / "bin" / "jinx"
    if not exe.exists():
        raise RuntimeError(f"no jinx binary at {exe}")
    return exe


def model_with_tokenizer(model, tmp):
    d = Path(tmp) / (model + "-src")
    if d.exists():
        return d
    shutil.copytree(MODELS_DIR / model, d)
    for f in TOK_DIR.iterdir():
        shutil.copy(f, d / f.name)
    return d


def gguf_types(path):
    import gguf
    return sorted({f"{t.name.split('.')[-2] if t.name.startswith('blk.') else t.name}:"
                   f"{t.tensor_type.name}" for t in gguf.GGUFReader(str(path)).tensors})


def llama_cpp_tokenize(path):
    req = json.dumps({"texts": TEXTS, "add_special": True})
    return fixtures_llamacpp.call("tokenize", path, stdin=req)["ids"]


def main():
    build_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "build-fixtures"
    hf_ids = build_tokenizer()
    exe = build_jinx(build_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for model, qtype in CASES:
            src = model_with_tokenizer(model, tmp)
            out = Path(tmp) / f"{model}-{qtype}.gguf"
            subprocess.run([str(exe), "quantize", str(src), str(out), "--type", qtype,
                            "--threads", "2"], check=True)
            req = {"input_ids": PROMPT, "greedy_prompt": PROMPT, "n_new": 8}
            lc = fixtures_llamacpp.call("logits", out, stdin=json.dumps(req))
            ids = llama_cpp_tokenize(out)
            if ids != hf_ids:
                raise RuntimeError(f"{model}: llama.cpp tokenization {ids} differs from "
                                   f"tokenizers' {hf_ids}")
            ref = {
                "model": model, "type": qtype, "file_size": out.stat().st_size,
                "tensor_types": gguf_types(out),
                "texts": TEXTS, "token_ids": ids,
                "prompt": PROMPT,
                "logits": [[round7(v) for v in row] for row in lc["logits"]],
                "greedy_tokens": lc["greedy_tokens"],
                "source": f"llama.cpp (llama-cpp-python {version('llama_cpp_python')}), F32 KV "
                          "cache, flash attention off, 2 threads, on the GGUF written by "
                          f"jinx quantize --type {qtype}; tokenization also equals "
                          f"tokenizers {version('tokenizers')} on tokenizer.json",
            }
            write_json(OUT / f"gguf-{model}-{qtype}.llamacpp.json", ref)
            print(f"{model} {qtype}: {out.stat().st_size} bytes, greedy {lc['greedy_tokens']}")


if __name__ == "__main__":
    main()
