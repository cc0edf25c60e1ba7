"""LoRA adapters served per request (`jinx serve --lora-modules NAME=DIR`), through the openai
client: the base model's replies are those of a server without adapters, an adapter's are
those of a server that applies it to every request (`--lora`, checked against peft in
tests/model/lora_test.cpp), concurrent requests to both do not disturb each other, and
unknown names get the OpenAI 404. Adapters loaded and unloaded at run time
(`--allow-runtime-lora`, vLLM's /v1/load_lora_adapter and /v1/unload_lora_adapter) answer as
those given at start.

The adapter is written here (random rank-2 updates of q_proj and v_proj, PEFT's file layout)
for the SmolLM2 model the server tests use.
"""
import asyncio
import json
import random
import struct

import httpx
import openai
import pytest

from conftest import API_KEY, Server

ADAPTER = "smol-style"


def write_adapter(path, layers=30, hidden=576, q=576, kv=192, rank=2):
    rng = random.Random(5)
    header, blobs, off = {}, [], 0
    for layer in range(layers):
        for proj, out in (("q_proj", q), ("v_proj", kv)):
            key = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            for part, shape in (("lora_A", (rank, hidden)), ("lora_B", (out, rank))):
                n = shape[0] * shape[1]
                data = struct.pack(f"<{n}f", *(rng.gauss(0, 0.05) for _ in range(n)))
                header[f"{key}.{part}.weight"] = {"dtype": "F32", "shape": list(shape),
                                                  "data_offsets": [off, off + len(data)]}
                blobs.append(data)
                off += len(data)
    h = json.dumps(header).encode()
    path.mkdir()
    (path / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(h)) + h +
                                                     b"".join(blobs))
    (path / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "r": rank, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"],
         "bias": "none"}))
    return path


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory):
    return write_adapter(tmp_path_factory.mktemp("lora") / "adapter")


def client_of(s):
    return openai.OpenAI(base_url=s.url + "/v1", api_key=API_KEY, max_retries=0, timeout=300)


def ask(c, model, content, **kw):
    r = c.chat.completions.create(model=model, messages=[{"role": "user", "content": content}],
                                  temperature=0, max_tokens=24, **kw)
    return r.model, r.choices[0].message.content


QUESTIONS = ["Name three colors.", "What is the capital of France?", "Count to five."]


def test_adapters_per_request(adapter_dir, client):
    multi = Server("lora-multi", "--api-key", API_KEY,
                   "--lora-modules", f"{ADAPTER}={adapter_dir}")
    single = Server("lora-single", "--api-key", API_KEY, "--lora", str(adapter_dir))
    try:
        mc, sc = client_of(multi), client_of(single)
        models = mc.models.list().data
        assert [m.id for m in models] == ["smollm2", ADAPTER]
        assert models[1].model_extra.get("parent") == "smollm2"
        for q in QUESTIONS:
            base = ask(client, "smollm2", q)       # the plain server
            want = ask(sc, "smollm2", q)            # the adapter on every request
            assert ask(mc, "smollm2", q) == base, q
            got = ask(mc, ADAPTER, q)
            assert got == (ADAPTER, want[1]), (q, got, want)
        assert any(ask(client, "smollm2", q)[1] != ask(sc, "smollm2", q)[1] for q in QUESTIONS)

        # Both at once, many times: each reply is what it was alone.
        alone = {(m, q): ask(mc, m, q) for m in ("smollm2", ADAPTER) for q in QUESTIONS}

        async def together():
            loop = asyncio.get_running_loop()
            keys = list(alone) * 3
            got = await asyncio.gather(*[loop.run_in_executor(None, ask, mc, m, q)
                                         for m, q in keys])
            return keys, got

        keys, got = asyncio.run(together())
        for k, g in zip(keys, got):
            assert g == alone[k], (k, g, alone[k])

        with pytest.raises(openai.NotFoundError) as e:
            ask(mc, "no-such-adapter", "hi")
        assert ADAPTER in str(e.value)
        r = httpx.post(multi.url + "/v1/embeddings", json={"model": ADAPTER, "input": "hi"},
                       headers={"Authorization": f"Bearer {API_KEY}"})
        assert r.status_code == 400, r.text
        # Runtime loading is off unless asked for: the paths do not exist.
        r = post(multi, "/v1/load_lora_adapter", {"lora_name": "x", "lora_path": str(adapter_dir)})
        assert r.status_code == 404, r.text
        check_runtime_loading(adapter_dir, alone)
    finally:
        multi.stop()
        single.stop()


def post(s, path, body):
    return httpx.post(s.url + path, json=body, headers={"Authorization": f"Bearer {API_KEY}"},
                      timeout=120)


def check_runtime_loading(adapter_dir, alone):
    """A server started bare takes the adapter at run time and answers as --lora-modules does."""
    rt = Server("lora-runtime", "--api-key", API_KEY, "--allow-runtime-lora")
    try:
        c = client_of(rt)
        base_before = ask(c, "smollm2", QUESTIONS[0])
        assert base_before == alone[("smollm2", QUESTIONS[0])]
        for body in ({"lora_name": ADAPTER}, {"lora_path": str(adapter_dir)},
                     {"lora_name": "", "lora_path": str(adapter_dir)}):
            r = post(rt, "/v1/load_lora_adapter", body)
            assert r.status_code == 400, (body, r.text)
        r = post(rt, "/v1/load_lora_adapter",
                 {"lora_name": ADAPTER, "lora_path": str(adapter_dir / "missing")})
        assert r.status_code == 400 and "missing" in r.json()["error"]["message"], r.text
        r = post(rt, "/v1/load_lora_adapter", {"lora_name": ADAPTER, "lora_path": str(adapter_dir)})
        assert r.status_code == 200 and "added successfully" in r.text, r.text
        r = post(rt, "/v1/load_lora_adapter", {"lora_name": ADAPTER, "lora_path": str(adapter_dir)})
        assert r.status_code == 400 and "already been loaded" in r.text, r.text
        assert [m.id for m in c.models.list().data] == ["smollm2", ADAPTER]
        for q in QUESTIONS:
            assert ask(c, ADAPTER, q) == alone[(ADAPTER, q)], q
            assert ask(c, "smollm2", q) == alone[("smollm2", q)], q
        r = post(rt, "/v1/unload_lora_adapter", {"lora_name": ADAPTER})
        assert r.status_code == 200 and "removed successfully" in r.text, r.text
        with pytest.raises(openai.NotFoundError):
            ask(c, ADAPTER, QUESTIONS[0])
        r = post(rt, "/v1/unload_lora_adapter", {"lora_name": ADAPTER})
        assert r.status_code == 404, r.text
        assert [m.id for m in c.models.list().data] == ["smollm2"]
        # Back under the same name (a new id inside): the same answers.
        r = post(rt, "/v1/load_lora_adapter", {"lora_name": ADAPTER, "lora_path": str(adapter_dir)})
        assert r.status_code == 200, r.text
        assert ask(c, ADAPTER, QUESTIONS[1]) == alone[(ADAPTER, QUESTIONS[1])]
        assert rt.alive()
    finally:
        rt.stop()


def test_bad_lora_modules_stop_the_server(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "adapter_config.json").write_text('{"r": 2, "lora_alpha": 4, '
                                                          '"target_modules": ["q_proj"], '
                                                          '"use_dora": true}')
    with pytest.raises(RuntimeError) as e:
        Server("lora-bad", "--lora-modules", f"x={tmp_path / 'bad'}")
    assert "use_dora" in str(e.value)
