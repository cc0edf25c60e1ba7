#!/usr/bin/env python3
"""Reference rankings for the RAG retrieval test (tests/rag/pipeline_test.cpp).

llama.cpp (llama-cpp-python's Llama.embed, mean pooling) embeds each document of
tests/fixtures/rag/docs (whole, whitespace-stripped: each fits in one chunk) and each question
of tests/fixtures/rag/questions.json and paraphrases.json with the real SmolLM2-135M-Instruct
Q4_1 GGUF; documents
are ranked by cosine similarity. Writes tests/fixtures/rag/llamacpp_ranking.json.

Run: /work/refvenv/bin/python tools/make_rag_fixtures.py   (after tools/get_models.sh)
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fixtures_llamacpp  # noqa: E402
from fixtures_common import ROOT, round7, write_json  # noqa: E402
from fixtures_smollm2 import MODEL, MODEL_REL  # noqa: E402

RAG = ROOT / "tests" / "fixtures" / "rag"


def main():
    docs = sorted(p.name for p in (RAG / "docs").glob("*.md"))
    texts = [(RAG / "docs" / d).read_text().strip() for d in docs]
    # questions.json shares words with its documents; paraphrases.json asks the same things in
    # other words (where keyword search fails and the vectors must carry retrieval).
    questions = (json.loads((RAG / "questions.json").read_text()) +
                 json.loads((RAG / "paraphrases.json").read_text()))
    r = fixtures_llamacpp.call("embed", MODEL, stdin=json.dumps(
        {"texts": texts + [q["question"] for q in questions], "pooling": 1}))
    e = np.array(r["embeddings"], np.float64)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    d, q = e[:len(docs)], e[len(docs):]
    sims = q @ d.T
    out = {"source": f"llama-cpp-python {r['version']} Llama.embed, mean pooling, cosine",
           "model": MODEL_REL, "docs": docs, "questions": []}
    for qi, row in enumerate(sims):
        order = np.argsort(-row, kind="stable")
        out["questions"].append({"question": questions[qi]["question"],
                                 "ranking": [docs[i] for i in order],
                                 "similarity": [round7(row[i]) for i in order]})
        print(f"{questions[qi]['doc']:>20} -> {docs[order[0]]:>20} "
              f"({row[order[0]]:.4f} vs {row[order[1]]:.4f})")
    write_json(RAG / "llamacpp_ranking.json", out)


if __name__ == "__main__":
    main()
