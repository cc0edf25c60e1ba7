"""mlx_lm.convert run on a copy of a tiny checkpoint, and MLX's fp32 forward pass: shared by
fixtures_mlx.py and fixtures_mlx_moe.py. Imports no torch.

mlx_lm.convert needs a tokenizer to load the source directory, and the tiny models have none
(their 512-token vocabulary is synthetic). The source is therefore copied to a temporary
directory together with a throwaway WordLevel tokenizer; convert runs on that copy (local path:
no hub access, no upload) and the tokenizer files and model card it writes are left out of the
fixture. Everything else is byte-for-byte what mlx_lm.convert wrote.
"""

import shutil
import tempfile
from importlib.metadata import version
from pathlib import Path

import mlx.core as mx
import numpy as np
from mlx.utils import tree_map_with_path
from mlx_lm.convert import convert
from mlx_lm.utils import load_model

from fixtures_common import TINY, top2_margin

TOKENIZER_FILES = {"tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "chat_template.jinja", "README.md"}
MLX_SOURCE = (f"mlx {version('mlx')} / mlx-lm {version('mlx-lm')} float32 "
              "(scales, biases and norms cast to float32; CPU)")


def throwaway_tokenizer(dst):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    vocab = {f"t{i}": i for i in range(TINY["vocab_size"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0").save_pretrained(dst)


def convert_copy(src_dir, out_dir, bits, group_size, edit_source=None):
    """mlx_lm.convert of src_dir into out_dir (replaced); edit_source(path) may rewrite the
    temporary copy of the source first."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "src", Path(tmp) / "mlx"
        shutil.copytree(src_dir, src)
        if edit_source:
            edit_source(src)
        throwaway_tokenizer(src)
        convert(hf_path=str(src), mlx_path=str(dst), quantize=True, q_bits=bits,
                q_group_size=group_size, upload_repo=None)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.mkdir(parents=True)
        for f in sorted(dst.iterdir()):
            if f.name not in TOKENIZER_FILES:
                shutil.copy(f, out_dir / f.name)
    print(f"{out_dir.name} files:", sorted(p.name for p in out_dir.iterdir()))


def load_fp32(out_dir):
    """The converted model with its floating-point parameters cast to float32, and its
    quantization config."""
    model, config = load_model(out_dir)

    def to_f32(_, v):
        return v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v

    model.update(tree_map_with_path(to_f32, model.parameters()))
    mx.eval(model.parameters())
    return model, config.get("quantization", {})


def mlx_logits(model, ids):
    out = model(mx.array([ids], dtype=mx.int32))
    return np.array(out[0].astype(mx.float32))


def mlx_greedy(model, prompt, n_new):
    ids, margins = list(prompt), []
    for _ in range(n_new):
        last = mlx_logits(model, ids)[-1]
        margins.append(top2_margin(last))
        ids.append(int(np.argmax(last)))
    return ids[len(prompt):], margins
