"""`jinx serve --rag-db`: documents added over HTTP, searched, and used by chat requests with
"rag" (through the official openai client's extra_body). The retrieval itself is checked
against llama.cpp's embeddings and the labels in tests/rag/knowledge_base_test.cpp; here the
HTTP side: shapes, errors, streaming, and that a knowledge base indexed by `jinx rag index`
opens in the server.
"""
import json
import subprocess
import tempfile
from pathlib import Path

import httpx
import openai
import pytest

from conftest import BIN, MODEL, Server

DOCS = Path(__file__).resolve().parents[1] / "fixtures" / "rag" / "docs"


@pytest.fixture(scope="module")
def rag_server():
    tmp = tempfile.mkdtemp()
    db = str(Path(tmp) / "kb.sqlite")
    # Half of the documents through the CLI, the rest through the API.
    docs = sorted(DOCS.glob("*.md"))
    for d in docs[:6]:
        subprocess.run([str(BIN), "rag", "index", "--db", db, "-m", str(MODEL), str(d)],
                       check=True, capture_output=True)
    s = Server("rag", "--rag-db", db)
    for d in docs[6:]:
        r = httpx.post(s.url + "/v1/rag/documents", timeout=60,
                       json={"source": d.name, "text": d.read_text()})
        assert r.status_code == 200, r.text
        assert r.json()["added"] and r.json()["chunks"] == 1
    yield s
    alive = s.alive()
    s.stop()
    assert alive, "the server died during the tests"


def test_documents_and_search(rag_server):
    again = httpx.post(rag_server.url + "/v1/rag/documents", timeout=60,
                       json={"source": "tides.md", "text": (DOCS / "tides.md").read_text()})
    assert again.status_code == 200 and again.json()["documents"] == 12
    r = httpx.post(rag_server.url + "/v1/rag/search", timeout=60,
                   json={"query": "How do bees tell each other where the flowers are?", "k": 2})
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert len(data) == 2 and data[0]["source"].endswith("honeybees.md")
    assert data[0]["text"].startswith("# Honeybees") and data[0]["score"] >= data[1]["score"]
    kw = httpx.post(rag_server.url + "/v1/rag/search", timeout=60,
                    json={"query": "Sicilian", "k": 3, "mode": "keyword"}).json()["data"]
    assert [Path(p["source"]).name for p in kw] == ["chess.md"]


def test_chat_with_rag_cites_sources(rag_server):
    c = openai.OpenAI(base_url=rag_server.url + "/v1", api_key="x", max_retries=0, timeout=300)
    q = "What causes the green glow of the northern lights?"
    r = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": q}],
                                  max_tokens=24, temperature=0, extra_body={"rag": {"k": 2}})
    sources = r.model_extra["rag_sources"]
    assert len(sources) == 2 and Path(sources[0]["source"]).name == "aurora.md"
    assert r.choices[0].message.content
    # The prompt carried the passages: more prompt tokens than the question alone.
    plain = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": q}],
                                      max_tokens=1, temperature=0)
    assert r.usage.prompt_tokens > plain.usage.prompt_tokens + 100
    # Streaming: the sources come first, in a chunk without choices; the text equals the above.
    chunks = list(c.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": q}], max_tokens=24,
        temperature=0, stream=True, extra_body={"rag": True}))
    assert chunks[0].choices == [] and len(chunks[0].model_extra["rag_sources"]) == 4
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    r4 = c.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": q}],
                                   max_tokens=24, temperature=0, extra_body={"rag": True})
    assert text == r4.choices[0].message.content


@pytest.mark.parametrize("path,body", [
    ("/v1/rag/search", {}),
    ("/v1/rag/search", {"query": ""}),
    ("/v1/rag/search", {"query": "x", "k": 0}),
    ("/v1/rag/search", {"query": "x", "k": 101}),
    ("/v1/rag/search", {"query": "x", "mode": "fuzzy"}),
    ("/v1/rag/documents", {"source": "a.md"}),
    ("/v1/rag/documents", {"source": "", "text": "x"}),
    ("/v1/rag/documents", {"source": "a.md", "text": "   \n"}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "rag": 3}),
    ("/v1/chat/completions", {"messages": [{"role": "system", "content": "hi"}], "rag": True}),
])
def test_bad_rag_requests_are_400(rag_server, path, body):
    r = httpx.post(rag_server.url + path, json=body, timeout=60)
    assert r.status_code == 400, r.text


def test_without_a_knowledge_base_is_404(server):
    from conftest import API_KEY
    r = httpx.post(server.url + "/v1/rag/search", json={"query": "x"}, timeout=60,
                   headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 404
