"""Peer figure for the GPU decode benchmark: Hugging Face transformers (PyTorch, bf16, eager)
greedy batch-1 decode on the same checkpoint, timed the way `jinx bench` times it (tokens after
the first over their wall time). Run on the GPU machine next to `jinx bench --device cuda`:

    python3 bench/hf_decode_peer.py MODEL_DIR [--prompt-len 32] [--new-tokens 256]
"""
import argparse
import time

import torch
from transformers import AutoModelForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=256)
    a = ap.parse_args()
    model = AutoModelForCausalLM.from_pretrained(a.model, torch_dtype=torch.bfloat16).cuda().eval()
    ids = torch.randint(3, 1000, (1, a.prompt_len), device="cuda")
    with torch.no_grad():
        model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)  # warm-up
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(ids, max_new_tokens=1, min_new_tokens=1, do_sample=False)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        out = model.generate(ids, max_new_tokens=a.new_tokens, min_new_tokens=a.new_tokens,
                             do_sample=False)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
    n = out.shape[1] - a.prompt_len
    ttft = t1 - t0
    tpot = ((t2 - t1) - ttft) / max(1, n - 1)
    print(f"transformers {torch.__version__} on {torch.cuda.get_device_name()}: batch-1 greedy, "
          f"prompt {a.prompt_len}, {n} new tokens: TTFT {ttft*1e3:.1f} ms, "
          f"TPOT {tpot*1e3:.2f} ms = {1/tpot:.1f} tok/s")


if __name__ == "__main__":
    main()
