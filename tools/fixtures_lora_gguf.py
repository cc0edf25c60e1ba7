"""A LoRA adapter in llama.cpp's GGUF format, and llama.cpp's logits with it.

Stage `lora_gguf` of tools/make_fixtures.py (after `lora` and `gguf`): converts the PEFT
adapter tests/fixtures/models/tiny-llama-lora (rank 4 on every projection, alpha 8) to the
GGUF that llama.cpp's convert_lora_to_gguf.py writes (written here with gguf-py, not copied):

  general.type = "adapter", general.architecture = "llama", adapter.type = "lora",
  adapter.lora.alpha = lora_alpha; tensors blk.N.<attn_q|attn_k|attn_v|attn_output|
  ffn_gate|ffn_up|ffn_down>.weight.lora_a (row-major [r, in]) and .lora_b ([out, r]), F32;
  q/k lora_b rows permuted as the converter permutes a Llama checkpoint's q/k rows
  (llama.cpp's interleaved RoPE).

then asks llama.cpp (tools/fixtures_llamacpp.py, its own process) for the logits of the base
tiny-llama-f32.gguf with that adapter. Writes tests/fixtures/models/tiny-llama-lora.gguf and
tiny-llama-lora-gguf.llamacpp.json ({"version", "input_ids", "logits", "greedy_prompt",
"greedy_tokens", "greedy_margins"}).
"""
import json
import os

import numpy as np

from fixtures_common import MODELS_DIR
import fixtures_llamacpp

PROJ = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
        "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down"}


def permute(w, n_head):
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (per head: the two halves of the
    rotary pairs interleaved)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def build_all():
    import gguf
    from safetensors.numpy import load_file
    src = os.path.join(str(MODELS_DIR), "tiny-llama-lora")
    with open(os.path.join(src, "adapter_config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(str(MODELS_DIR), "tiny-llama", "config.json")) as f:
        base = json.load(f)
    tensors = load_file(os.path.join(src, "adapter_model.safetensors"))
    out = os.path.join(str(MODELS_DIR), "tiny-llama-lora.gguf")
    w = gguf.GGUFWriter(out, "llama")
    w.add_type("adapter")
    w.add_string("adapter.type", "lora")
    w.add_float32("adapter.lora.alpha", float(cfg["lora_alpha"]))
    n = 0
    for name in sorted(tensors):
        if not name.endswith(".lora_A.weight"):
            continue
        stem = name[: -len(".lora_A.weight")]
        layer = int(stem.split(".layers.")[1].split(".")[0])
        proj = stem.rsplit(".", 1)[1]
        a = tensors[name].astype(np.float32)
        b = tensors[stem + ".lora_B.weight"].astype(np.float32)
        if proj == "q_proj":
            b = permute(b, base["num_attention_heads"])
        elif proj == "k_proj":
            b = permute(b, base.get("num_key_value_heads", base["num_attention_heads"]))
        key = f"blk.{layer}.{PROJ[proj]}.weight"
        w.add_tensor(key + ".lora_a", np.ascontiguousarray(a))
        w.add_tensor(key + ".lora_b", np.ascontiguousarray(b))
        n += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open(os.path.join(str(MODELS_DIR), "tiny-llama-f32.ref.json")) as f:
        ref = json.load(f)
    req = {"input_ids": ref["input_ids"], "greedy_prompt": ref["greedy_prompt"], "n_new": 16,
           "n_ctx": 256, "lora": out}
    res = fixtures_llamacpp.call("logits", os.path.join(str(MODELS_DIR), "tiny-llama-f32.gguf"),
                                 stdin=json.dumps(req))
    keep = {k: res[k] for k in ("version", "greedy_tokens", "greedy_margins")}
    keep["logits"] = [[float(f"{x:.6g}") for x in row] for row in res["logits"]]  # size
    keep.update({"input_ids": ref["input_ids"], "greedy_prompt": ref["greedy_prompt"],
                 "source": f"llama-cpp-python {res['version']}: tiny-llama-f32.gguf + "
                           f"tiny-llama-lora.gguf (scale 1)"})
    with open(os.path.join(str(MODELS_DIR), "tiny-llama-lora-gguf.llamacpp.json"), "w") as f:
        json.dump(keep, f)
    print(f"  tiny-llama-lora.gguf: {n} projections; llama.cpp logits for "
          f"{len(ref['input_ids'])} positions")
