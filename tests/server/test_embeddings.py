"""POST /v1/embeddings through the official openai client, against llama.cpp's embeddings of
the same texts on the same SmolLM2 GGUF (tests/fixtures/smollm2/embeddings.llamacpp.json, made
by tools/make_fixtures.py embed; mean pooling, the server's default for a model that declares
none).
"""
import base64
import json
import math
import struct
from pathlib import Path

import httpx
import pytest

from conftest import API_KEY

MODEL = "smollm2"
HDR = {"Authorization": f"Bearer {API_KEY}"}
REF = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "smollm2" /
                  "embeddings.llamacpp.json").read_text())


def cosine(a, b):
    ab = sum(x * y for x, y in zip(a, b))
    return ab / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def norm(v):
    return math.sqrt(sum(x * x for x in v))


def test_texts_match_llama_cpp(client):
    r = client.embeddings.create(model=MODEL, input=REF["texts"], encoding_format="float")
    assert [d.index for d in r.data] == [0, 1, 2]
    assert r.usage.prompt_tokens == sum(len(ids) for ids in REF["ids"])
    for d, want in zip(r.data, REF["mean"]):
        assert len(d.embedding) == 576
        assert abs(norm(d.embedding) - 1) < 1e-5
        assert cosine(d.embedding, want) > 0.999
    # Each text is nearest to its own llama.cpp vector.
    for i, d in enumerate(r.data):
        sims = [cosine(d.embedding, w) for w in REF["mean"]]
        assert max(range(3), key=lambda k: sims[k]) == i


def test_base64_token_ids_and_dimensions(server, client):
    # The openai client asks for base64 by default and decodes it.
    plain = client.embeddings.create(model=MODEL, input=REF["texts"][0])
    raw = httpx.post(server.url + "/v1/embeddings", headers=HDR, timeout=60,
                     json={"model": MODEL, "input": REF["texts"][0],
                           "encoding_format": "base64"}).json()
    blob = base64.b64decode(raw["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(blob) // 4}f", blob)
    assert list(decoded) == pytest.approx(plain.data[0].embedding, abs=0)
    by_ids = client.embeddings.create(model=MODEL, input=[REF["ids"][0]], encoding_format="float")
    assert by_ids.data[0].embedding == pytest.approx(plain.data[0].embedding, abs=1e-7)
    short = client.embeddings.create(model=MODEL, input="hello", dimensions=64,
                                     encoding_format="float")
    assert len(short.data[0].embedding) == 64 and abs(norm(short.data[0].embedding) - 1) < 1e-5


@pytest.mark.parametrize("body", [
    {"model": MODEL},
    {"model": MODEL, "input": ""},
    {"model": MODEL, "input": []},
    {"model": MODEL, "input": [[]]},
    {"model": MODEL, "input": [1, -3]},
    {"model": MODEL, "input": [[1, 2], [49152]]},
    {"model": MODEL, "input": [{"text": "x"}]},
    {"model": MODEL, "input": ["x"] * 2049},
    {"model": MODEL, "input": "x", "encoding_format": "int8"},
    {"model": MODEL, "input": "x", "dimensions": 0},
    {"model": MODEL, "input": "x", "dimensions": 577},
    {"model": MODEL, "input": "word " * 9000},
])
def test_bad_embedding_requests_are_400(server, body):
    r = httpx.post(server.url + "/v1/embeddings", headers=HDR, json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_embeddings_and_generation_together(server, client):
    # A chat reply streams while a batch of embeddings is computed between its steps.
    import concurrent.futures as cf
    with cf.ThreadPoolExecutor(4) as ex:
        chats = [ex.submit(client.chat.completions.create, model=MODEL, max_tokens=16,
                           messages=[{"role": "user", "content": "Count to five."}],
                           temperature=0) for _ in range(2)]
        embs = [ex.submit(client.embeddings.create, model=MODEL, encoding_format="float",
                          input=[t * 20 for t in REF["texts"]]) for _ in range(2)]
        replies = [f.result().choices[0].message.content for f in chats]
        vectors = [f.result() for f in embs]
    assert replies[0] == replies[1]
    assert vectors[0].data[2].embedding == vectors[1].data[2].embedding
