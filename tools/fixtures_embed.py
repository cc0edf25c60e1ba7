"""Sentence-embedding references (Model::embed, /v1/embeddings, jinx rag).

transformers: the base model (AutoModel, fp32, eager attention) of tiny-llama, tiny-qwen3,
tiny-gemma3 and tiny-qwen2-swa on three id sequences (one longer than the sliding window of
8); its last_hidden_state (after the final norm) pooled by mean, first token and last token,
not normalized. Writes tests/fixtures/models/embeddings.transformers.json.

llama.cpp: Llama.embed on the real SmolLM2-135M-Instruct Q4_1 GGUF, mean and last pooling,
with the ids it embedded. Writes tests/fixtures/smollm2/embeddings.llamacpp.json.
"""

import json

import numpy as np
import torch
from transformers import AutoModel

import fixtures_llamacpp
from fixtures_common import MODELS_DIR, SMOLLM2_DIR, fixed_ids, round7, write_json
from fixtures_hf import TRANSFORMERS_SOURCE
from fixtures_smollm2 import MODEL as SMOLLM2, MODEL_REL as SMOLLM2_REL

HF_MODELS = ["tiny-llama", "tiny-qwen3", "tiny-gemma3", "tiny-qwen2-swa"]
INPUTS = [fixed_ids(20261127, 1), fixed_ids(20261128, 6), fixed_ids(20261129, 19)]
TEXTS = [
    "The Eiffel Tower is in Paris, the capital of France.",
    "def add(a, b):\n    return a + b\n",
    "Photosynthesis turns sunlight, water and carbon dioxide into sugar and oxygen. 🌱",
]


def pooled(hidden):
    return {"mean": hidden.mean(axis=0), "cls": hidden[0], "last": hidden[-1]}


def hf_reference(name):
    model = AutoModel.from_pretrained(MODELS_DIR / name, dtype=torch.float32,
                                      attn_implementation="eager")
    model.eval()
    out = {"mean": [], "cls": [], "last": []}
    for ids in INPUTS:
        with torch.no_grad():
            h = model(torch.tensor([ids], dtype=torch.long)).last_hidden_state[0]
        for kind, v in pooled(h.double().numpy()).items():
            out[kind].append([round7(x) for x in v])
    return out


def llamacpp_reference():
    out = {"model": SMOLLM2_REL, "texts": TEXTS}
    for name, code in (("mean", 1), ("last", 3)):
        r = fixtures_llamacpp.call("embed", SMOLLM2, stdin=json.dumps(
            {"texts": TEXTS, "pooling": code}))
        out["source"] = f"llama-cpp-python {r['version']} Llama.embed (F32 KV, no flash attention)"
        if "ids" in out and out["ids"] != r["ids"]:
            raise RuntimeError("llama.cpp tokenized the texts differently between runs")
        out["ids"] = r["ids"]
        out[name] = [[round7(x) for x in v] for v in r["embeddings"]]
    return out


def build_all():
    ref = {"source": TRANSFORMERS_SOURCE + ", AutoModel last_hidden_state, not normalized",
           "inputs": INPUTS, "models": {name: hf_reference(name) for name in HF_MODELS}}
    write_json(MODELS_DIR / "embeddings.transformers.json", ref)
    if not SMOLLM2.exists():
        raise SystemExit(f"missing {SMOLLM2}: tools/get_models.sh")
    write_json(SMOLLM2_DIR / "embeddings.llamacpp.json", llamacpp_reference())
    print("embeddings: transformers on", ", ".join(HF_MODELS), "; llama.cpp on SmolLM2")
