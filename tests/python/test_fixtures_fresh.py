"""Light checks of the model fixtures written by tools/make_fixtures.py.

Run: /work/refvenv/bin/python -m pytest tests/python/test_fixtures_fresh.py -q
No torch, transformers, MLX or llama.cpp import: only json, hashlib, numpy,
gguf and jinja2 (the latter two are skipped when missing).
"""

import hashlib
import json
import math
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "tests" / "fixtures" / "models"
SMOLLM2 = ROOT / "tests" / "fixtures" / "smollm2"

HF_DIRS = {
    # name -> dtype of the stored float tensors
    "tiny-llama": "F32",
    "tiny-qwen2": "BF16",
    "tiny-qwen3": "BF16",
    "tiny-llama-linear": "BF16",
    "tiny-qwen2-mlx4": "BF16",
    "tiny-qwen3-moe": "BF16",
    "tiny-qwen2-moe": "BF16",
}
GGUF_VARIANTS = {
    # variant -> ggml types of the 2-D weights
    "f32": {"F32"},
    "q8_0": {"Q8_0"},
    "q4_0": {"Q4_0"},
    "q4_k": {"Q4_K"},
    "q4_k_m": {"Q4_K", "Q6_K"},
    # llama.cpp's own mixes (tools/fixtures_gguf.py LLAMACPP_MIXES): output.weight Q6_K
    "q2_k": {"Q2_K", "Q3_K", "Q6_K"},
    "q3_k_m": {"Q3_K", "Q4_K", "Q5_K", "Q6_K"},
    "q5_1": {"Q5_1", "Q6_K"},
    "iq4_nl": {"IQ4_NL", "Q6_K"},
    "iq4_xs": {"IQ4_XS", "Q6_K"},
}
REF_NAMES = (list(HF_DIRS) + [f"tiny-llama-{v}" for v in GGUF_VARIANTS]
             + ["tiny-qwen2-moe-q8_0"])
VOCAB = 512


def load_json(path):
    return json.loads(Path(path).read_text())


def safetensors_header(path):
    data = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    assert 8 + n <= len(data)
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    body = len(data) - 8 - n
    spans = sorted(tuple(v["data_offsets"]) for v in header.values())
    pos = 0
    for begin, end in spans:  # contiguous, in bounds
        assert begin == pos and end >= begin
        pos = end
    assert pos == body
    return header


@pytest.mark.parametrize("name", list(HF_DIRS))
def test_hf_dir_files(name):
    d = MODELS / name
    for f in ("config.json", "model.safetensors", "generation_config.json"):
        assert (d / f).is_file(), f"{d / f} missing"
    assert not (d / "tokenizer.json").exists()
    assert (MODELS / f"{name}.ref.json").is_file()


@pytest.mark.parametrize("name", list(HF_DIRS))
def test_hf_safetensors_dtypes(name):
    header = safetensors_header(MODELS / name / "model.safetensors")
    config = load_json(MODELS / name / "config.json")
    floats = {v["dtype"] for v in header.values() if v["dtype"] != "U32"}
    assert floats == {HF_DIRS[name]}
    assert header["model.embed_tokens.weight"]["shape"][0] == VOCAB
    assert ("lm_head.weight" in header) == (not config["tie_word_embeddings"])
    n_layers = config["num_hidden_layers"]
    last = f"model.layers.{n_layers - 1}.mlp."
    assert last + "down_proj.weight" in header or last + "experts.0.down_proj.weight" in header
    assert f"model.layers.{n_layers}.mlp.down_proj.weight" not in header


def test_llama_config_is_legacy_llama3():
    c = load_json(MODELS / "tiny-llama" / "config.json")
    assert c["rope_theta"] == 10000.0
    assert c["rope_scaling"]["rope_type"] == "llama3"
    assert c["rope_scaling"]["original_max_position_embeddings"] == 64
    assert c["torch_dtype"] == "float32" and "rope_parameters" not in c


def test_qwen3_config_is_transformers5_style():
    c = load_json(MODELS / "tiny-qwen3" / "config.json")
    assert c["rope_parameters"]["rope_theta"] == 1000000.0
    assert "rope_theta" not in c and c["dtype"] == "bfloat16"
    h = safetensors_header(MODELS / "tiny-qwen3" / "model.safetensors")
    assert h["model.layers.0.self_attn.q_norm.weight"]["shape"] == [64]


def test_qwen2_has_attention_biases():
    h = safetensors_header(MODELS / "tiny-qwen2" / "model.safetensors")
    for p in ("q_proj", "k_proj", "v_proj"):
        assert f"model.layers.0.self_attn.{p}.bias" in h
    assert "model.layers.0.self_attn.o_proj.bias" not in h


def test_mlx4_layout():
    c = load_json(MODELS / "tiny-qwen2-mlx4" / "config.json")
    assert c["quantization"]["bits"] == 4 and c["quantization"]["group_size"] == 64
    h = safetensors_header(MODELS / "tiny-qwen2-mlx4" / "model.safetensors")
    w = h["model.layers.0.mlp.down_proj.weight"]
    assert w["dtype"] == "U32" and w["shape"] == [256, 512 * 4 // 32]
    assert h["model.layers.0.mlp.down_proj.scales"]["shape"] == [256, 512 // 64]
    assert h["model.layers.0.mlp.down_proj.biases"]["shape"] == [256, 512 // 64]
    assert h["model.embed_tokens.weight"]["dtype"] == "U32"
    assert h["model.layers.0.self_attn.q_proj.bias"]["shape"] == [256]


@pytest.mark.parametrize("name", REF_NAMES)
def test_reference_schema(name):
    ref = load_json(MODELS / f"{name}.ref.json")
    assert len(ref["input_ids"]) == 12
    assert len(ref["logits"]) == 12
    assert all(len(row) == VOCAB for row in ref["logits"])
    assert all(math.isfinite(x) for row in ref["logits"] for x in row)
    assert len(ref["greedy_prompt"]) == 8
    assert len(ref["greedy_tokens"]) == 32
    assert len(ref["greedy_top2_margins"]) == 32
    assert all(0 <= t < VOCAB for t in ref["greedy_tokens"])
    assert len(set(ref["greedy_tokens"])) >= 4, "degenerate greedy run"
    assert isinstance(ref["source"], str) and ref["source"]


@pytest.mark.parametrize("variant", list(GGUF_VARIANTS))
def test_gguf_tensors(variant):
    gguf = pytest.importorskip("gguf")
    path = MODELS / f"tiny-llama-{variant}.gguf"
    assert path.read_bytes()[:4] == b"GGUF"
    r = gguf.GGUFReader(str(path))
    for key in ("llama.context_length", "llama.embedding_length", "llama.block_count",
                "llama.feed_forward_length", "llama.attention.head_count",
                "llama.attention.head_count_kv", "llama.rope.freq_base",
                "llama.attention.layer_norm_rms_epsilon", "llama.rope.dimension_count",
                "llama.vocab_size", "general.alignment", "tokenizer.ggml.tokens"):
        assert key in r.fields, key
    tensors = {t.name: t for t in r.tensors}
    assert len(tensors) == 2 * 9 + 4
    two_d = {t.tensor_type.name for t in r.tensors if len(t.shape) == 2}
    one_d = {t.tensor_type.name for t in r.tensors if len(t.shape) == 1}
    assert two_d == GGUF_VARIANTS[variant] and one_d == {"F32"}
    assert list(tensors["rope_freqs.weight"].shape) == [32]


def test_gguf_f32_matches_transformers():
    np = pytest.importorskip("numpy")
    ref = load_json(MODELS / "tiny-llama-f32.ref.json")
    a, b = np.array(ref["logits"]), np.array(ref["logits_transformers"])
    assert np.abs(a - b).max() < 1e-3
    assert ref["greedy_tokens"] == ref["greedy_tokens_transformers"]
    hf = load_json(MODELS / "tiny-llama.ref.json")
    assert np.abs(np.array(hf["logits"]) - b).max() < 1e-5


def test_smollm2_greedy():
    ref = load_json(SMOLLM2 / "greedy.json")
    assert ref["llama_cpp_python_version"]
    prompts = ref["prompts"]
    assert len(prompts) == 5
    assert [p["kind"] for p in prompts].count("chat") == 1
    for p in prompts:
        assert p["prompt_ids"] and len(p["greedy_tokens"]) == 32
        assert len(p["greedy_top2_margins"]) == 32
        assert len(p["last_prompt_top_ids"]) == 20
        logits = p["last_prompt_top_logits"]
        assert logits == sorted(logits, reverse=True)
        # the first greedy token is the top logit at the last prompt position
        assert p["greedy_tokens"][0] == p["last_prompt_top_ids"][0]


def test_smollm2_chat_prompt_renders_from_template():
    jinja2 = pytest.importorskip("jinja2")
    ref = load_json(SMOLLM2 / "greedy.json")
    chat = next(p for p in ref["prompts"] if p["kind"] == "chat")
    env = jinja2.Environment(keep_trailing_newline=True)
    text = env.from_string(ref["chat_template"]).render(
        messages=chat["messages"], add_generation_prompt=True)
    assert text == chat["text"]
    assert text.endswith("<|im_start|>assistant\n")


def test_manifest_is_current():
    """Fixtures match what the current generator wrote (no stale or edited file)."""
    manifest = load_json(MODELS / "MANIFEST.json")
    for rel, digest in manifest["generator"].items():
        assert hashlib.sha256((ROOT / rel).read_bytes()).hexdigest() == digest, (
            f"{rel} changed since the fixtures were generated: rerun tools/make_fixtures.py")
    for rel, digest in manifest["files"].items():
        assert hashlib.sha256((ROOT / rel).read_bytes()).hexdigest() == digest, rel
    on_disk = {str(p.relative_to(ROOT)) for d in (MODELS, SMOLLM2)
               for p in d.rglob("*") if p.is_file() and p.name != "MANIFEST.json"}
    assert on_disk == set(manifest["files"])


def test_total_size_budget():
    # 26 MB until the MoE models (2.7 MB: two checkpoints at half the dense width, one GGUF);
    # 28 MB until the YaRN models (0.54 MB: two one-layer checkpoints of width 64); 28.5 MB
    # until tiny Gemma 3 and the sliding-window Qwen2 / Mistral (1 MB, width 64 too); 29.5 MB
    # until the MLX 4-bit tiny-qwen3-moe (0.44 MB); 30 MB until llama.cpp's GGUF form of the
    # tiny-llama LoRA adapter and llama.cpp's logits with it (0.2 MB); 30.5 MB until tiny-llama
    # quantized by llama.cpp to Q2_K, Q3_K_M, Q5_1, IQ4_NL and IQ4_XS with references (4.75 MB);
    # 35 MB until tiny gpt-oss as BF16 and MXFP4 checkpoints and llama.cpp's MXFP4 GGUF (1.4 MB).
    total = sum(p.stat().st_size for d in (MODELS, SMOLLM2) for p in d.rglob("*") if p.is_file())
    assert total < 36_500_000
