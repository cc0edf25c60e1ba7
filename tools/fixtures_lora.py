"""LoRA adapters (PEFT format: adapter_config.json + adapter_model.safetensors) for two tiny
checkpoints, with random A and B (PEFT starts B at zero, which would test nothing), and the
references of transformers + peft with the adapter applied, not merged.

  tiny-llama-lora   every projection (q k v o gate up down), r 4, alpha 8 (scale 2)
  tiny-qwen2-lora   q and v only (Qwen2 has q/k/v biases), r 8, alpha 4, rsLoRA (scale
                    alpha / sqrt(r))
"""

import json
import shutil

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaForCausalLM, Qwen2ForCausalLM

import fixtures_hf
from fixtures_common import MODELS_DIR, write_json

ADAPTERS = {
    "tiny-llama-lora": dict(
        base="tiny-llama", model_cls=LlamaForCausalLM, seed=31,
        config=dict(r=4, lora_alpha=8,
                    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                    "up_proj", "down_proj"])),
    "tiny-qwen2-lora": dict(
        base="tiny-qwen2", model_cls=Qwen2ForCausalLM, seed=32,
        config=dict(r=8, lora_alpha=4, use_rslora=True, target_modules=["q_proj", "v_proj"])),
}


def build_one(name, spec):
    out_dir = MODELS_DIR / name
    if out_dir.exists():
        shutil.rmtree(out_dir)
    base = fixtures_hf.load_fp32(MODELS_DIR / spec["base"], spec["model_cls"])
    before = fixtures_hf.forward_logits(base, fixtures_hf.INPUT_IDS)
    model = get_peft_model(base, LoraConfig(lora_dropout=0.0, bias="none",
                                            init_lora_weights=False, **spec["config"]))
    gen = torch.Generator().manual_seed(spec["seed"])
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "lora_A" in pname or "lora_B" in pname:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    (out_dir / "README.md").unlink(missing_ok=True)  # PEFT's model-card template
    config_path = out_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = spec["base"]  # not this machine's absolute path
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    ref = fixtures_hf.reference(model, f"{fixtures_hf.TRANSFORMERS_SOURCE} + peft, adapter "
                                       f"applied unmerged on {spec['base']}")
    ref["seed"] = spec["seed"]
    ref["base"] = spec["base"]
    moved = float(np.max(np.abs(np.array(ref["logits"]) - before)))
    if moved < 0.05:
        raise RuntimeError(f"{name}: the adapter hardly changes the logits ({moved})")
    write_json(MODELS_DIR / f"{name}.ref.json", ref)
    print(f"{name}: logits moved by up to {moved:.3f}, greedy {ref['greedy_tokens'][:12]}..., "
          f"min margin {min(ref['greedy_top2_margins']):.4f}")


def build_all():
    for name, spec in ADAPTERS.items():
        build_one(name, spec)
