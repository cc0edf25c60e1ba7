#!/usr/bin/env python3
"""Bounded soak test of `jinx serve` (loopback only): a mix of valid, streaming, cancelled,
oversized, malformed and invalid requests at --concurrency for --duration seconds. Then the
server must still answer, hold no KV blocks (/metrics), have nothing running or waiting, and
its resident memory must be back near the level it had after a warm-up round of the same mix
(no leak). The KV pool is kept small (4096 tokens, bf16) so that the warm-up touches all of its
pages (they stay resident once used) and requests get preempted along the way.

  python bench/soak_test.py --duration 120 --concurrency 32

Each request's expected outcome is checked: 200 for the valid ones, 413 for the oversized body,
400 for malformed JSON and invalid parameters (OpenAI-shaped error bodies); a cancelled stream
is one the client drops after a few chunks. A 5xx, a connection error or a wrong status fails
the run. Exits 0 when every check passes, 1 otherwise, 2 on setup errors. Starts its own server
(--bin, --model) with --max-body-bytes 65536; needs aiohttp. Linux only (reads /proc for RSS).
"""
import argparse
import asyncio
import collections
import json
import random
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load_test  # noqa: E402  (server start/stop helpers, prompt mix)

MAX_BODY = 65536
KINDS = [  # (kind, weight)
    ("chat", 30), ("stream", 20), ("cancel", 12), ("completion", 8), ("oversized", 6),
    ("malformed", 8), ("bad_param", 8), ("bad_role", 4), ("too_long", 4),
]


def rss_mib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def request_for(kind, rng, prompts, model):
    """(path, body bytes, expected status, stream?) for one request of this kind."""
    msgs = rng.choice(prompts)
    base = {"model": model, "messages": msgs, "max_tokens": rng.randint(4, 24),
            "temperature": 0.8, "seed": rng.randint(0, 1 << 30)}
    if kind == "chat":
        return "/v1/chat/completions", json.dumps(base).encode(), 200, False
    if kind in ("stream", "cancel"):
        base["stream"] = True
        base["max_tokens"] = 48 if kind == "cancel" else base["max_tokens"]
        return "/v1/chat/completions", json.dumps(base).encode(), 200, True
    if kind == "completion":
        body = {"model": model, "prompt": msgs[-1]["content"], "max_tokens": 12}
        return "/v1/completions", json.dumps(body).encode(), 200, False
    if kind == "oversized":
        base["messages"] = [{"role": "user", "content": "x" * (MAX_BODY + 1000)}]
        return "/v1/chat/completions", json.dumps(base).encode(), 413, False
    if kind == "malformed":
        text = json.dumps(base)
        cut = rng.choice([text[: len(text) // 2], text.replace("}", "", 1), "{\"model\": ",
                          "\xff\xfe not json", "[1, 2, 3"])
        return "/v1/chat/completions", cut.encode("utf-8", "surrogateescape"), 400, False
    if kind == "bad_param":
        key, val = rng.choice([("temperature", 5), ("top_p", -1), ("max_tokens", -3),
                               ("n", 0), ("logprobs", "yes"), ("stop", 7)])
        base[key] = val
        return "/v1/chat/completions", json.dumps(base).encode(), 400, False
    if kind == "bad_role":
        base["messages"] = [{"role": "wizard", "content": "hi"}]
        return "/v1/chat/completions", json.dumps(base).encode(), 400, False
    # too_long: a prompt plus max_tokens beyond the context the server runs (we start it with
    # --max-model-len 512)
    base["messages"] = [{"role": "user", "content": "lighthouse " * 600}]
    return "/v1/chat/completions", json.dumps(base).encode(), 400, False


async def one(session, url, kind, rng, prompts, model, stats):
    path, body, want, stream = request_for(kind, rng, prompts, model)
    try:
        async with session.post(url + path, data=body,
                                headers={"Content-Type": "application/json"}) as r:
            if r.status != want:
                text = (await r.text())[:200]
                stats["fail"].append(f"{kind}: status {r.status}, wanted {want}: {text}")
                return
            if want != 200:
                err = await r.json(content_type=None)
                if "error" not in err or "message" not in err["error"]:
                    stats["fail"].append(f"{kind}: error body not OpenAI-shaped: {err}")
                    return
            elif stream:
                chunks = 0
                async for line in r.content:
                    if line.startswith(b"data: "):
                        chunks += 1
                        if kind == "cancel" and chunks >= 3:
                            break  # leaving the block closes the connection mid-stream
                        if line.strip() == b"data: [DONE]":
                            break
            else:
                await r.read()
            stats["ok"][kind] += 1
    except (aiohttp.ClientError, asyncio.TimeoutError) as e:
        stats["fail"].append(f"{kind}: {type(e).__name__}: {e}")


async def soak(args, prompts, model, duration, seed):
    rng = random.Random(seed)
    kinds, weights = zip(*KINDS)
    stats = {"ok": collections.Counter(), "fail": []}
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    deadline = time.monotonic() + duration
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async def worker(i):
            wrng = random.Random(rng.random())
            while time.monotonic() < deadline:
                kind = wrng.choices(kinds, weights)[0]
                await one(session, args.url, kind, wrng, prompts, model, stats)
        await asyncio.gather(*(worker(i) for i in range(args.concurrency)))
    return stats


def metrics(url):
    import urllib.request
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("jinx:") and "{" in line:
            name, rest = line.split("{", 1)
            out.setdefault(name, float(rest.rsplit(" ", 1)[1]))
        elif line.startswith("jinx:"):
            name, val = line.rsplit(" ", 1)
            out[name] = float(val)
    return out


async def settle(url, seconds=60):
    """Waits until nothing runs or waits; returns the last metrics."""
    end = time.monotonic() + seconds
    m = metrics(url)
    while time.monotonic() < end:
        m = metrics(url)
        if m.get("jinx:num_requests_running", 1) == 0 and m.get("jinx:num_requests_waiting", 1) == 0:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(1.0)  # cancellations resolve at the next step
    return metrics(url)


async def warm_up(args, prompts, model):
    stats = {"ok": collections.Counter(), "fail": []}
    async with aiohttp.ClientSession() as session:
        rng = random.Random(1)
        await asyncio.gather(*(one(session, args.url, k, rng, prompts, model, stats)
                               for k in ["chat", "stream", "completion"] * 8))
    return stats


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=300.0, help="per request, seconds")
    p.add_argument("--warm-up", type=float, default=30.0, help="seconds of the warm-up round")
    p.add_argument("--rss-slack-mib", type=float, default=32.0,
                   help="allowed RSS growth over the level after the warm-up round")
    p.add_argument("--bin", default=str(load_test.ROOT / "build/bin/jinx"))
    p.add_argument("--model", default=str(load_test.DEFAULT_MODEL))
    p.add_argument("--server-log", default="")
    args = p.parse_args()
    ns = argparse.Namespace(bin=args.bin, model=args.model, api_key="", start_timeout=180.0,
                            server_log=args.server_log,
                            server_arg=[f"--max-body-bytes={MAX_BODY}", "--max-model-len=512",
                                        "--max-queue=512", "--served-model-name=soak",
                                        "--kv-cache-tokens=4096", "--kv-cache-dtype=bf16"])
    proc = load_test.start_server(ns)
    args.url = ns.url
    failures = []
    try:
        prompts = load_test.make_prompts(64, args.seed)
        warm = asyncio.run(soak(args, prompts, "soak", args.warm_up, args.seed + 1))
        failures += [f"warm-up: {f}" for f in warm["fail"]]
        asyncio.run(settle(args.url))
        rss0 = rss_mib(proc.pid)
        t0 = time.monotonic()
        stats = asyncio.run(soak(args, prompts, "soak", args.duration, args.seed))
        wall = time.monotonic() - t0
        m = asyncio.run(settle(args.url))
        rss1 = rss_mib(proc.pid)
        failures += stats["fail"]
        n_ok = sum(stats["ok"].values())
        print(f"soak: {wall:.0f} s at concurrency {args.concurrency}: {n_ok} requests as "
              f"expected, {len(stats['fail'])} not; by kind: {dict(stats['ok'])}")
        print(f"after: running {m.get('jinx:num_requests_running')}, waiting "
              f"{m.get('jinx:num_requests_waiting')}, KV blocks used "
              f"{m.get('jinx:kv_blocks_used')} of {m.get('jinx:kv_blocks_total')}; "
              f"RSS {rss0:.0f} MiB after the warm-up round, {rss1:.0f} MiB after the soak")
        if m.get("jinx:kv_blocks_used") != 0:
            failures.append(f"KV blocks still used: {m.get('jinx:kv_blocks_used')}")
        if m.get("jinx:num_requests_running") != 0 or m.get("jinx:num_requests_waiting") != 0:
            failures.append("requests still running or waiting after the soak")
        if m.get("jinx:engine_failed", 0) != 0:
            failures.append("the engine thread failed")
        if rss1 > rss0 + args.rss_slack_mib:
            failures.append(f"RSS grew from {rss0:.0f} to {rss1:.0f} MiB")
        after = asyncio.run(warm_up(args, prompts, "soak"))  # still serving?
        failures += [f"after the soak: {f}" for f in after["fail"]]
        if proc.poll() is not None:
            failures.append(f"the server exited with {proc.returncode}")
    finally:
        load_test.stop_server(proc)
    for f in failures[:20]:
        print("FAIL:", f)
    if len(failures) > 20:
        print(f"... and {len(failures) - 20} more")
    print("soak: PASS" if not failures else f"soak: {len(failures)} failures")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
