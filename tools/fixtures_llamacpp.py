"""llama.cpp (llama-cpp-python) work, run in its own process.

make_fixtures.py calls this file as a subprocess (it never imports torch),
so a llama.cpp crash cannot take the generator down silently and the two
libraries' thread pools (OpenMP) never share a process.

  python tools/fixtures_llamacpp.py quantize SRC DST FTYPE PURE(0|1)
  python tools/fixtures_llamacpp.py logits MODEL JSON_REQUEST
  python tools/fixtures_llamacpp.py embed MODEL < {"texts": [...], "pooling": 1}

JSON_REQUEST: {"input_ids": [...], "greedy_prompt": [...], "n_new": 32, "n_ctx": 256,
"lora": optional adapter GGUF applied at scale 1}.
Prints one JSON object on stdout: {"version", "n_vocab", "logits" (rows for
every input position), "greedy_tokens", "greedy_margins" (top-2 logit
margin before each generated token), "greedy_first_logits" (full logits at
the last prompt position)}.
"""

import ctypes
import json
import subprocess
import sys

import numpy as np


def quantize(src, dst, ftype, pure):
    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = 2
    params.pure = pure
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(),
                                        ctypes.byref(params))
    if rc != 0:
        raise RuntimeError(f"llama_model_quantize failed ({rc})")


def disable_extra_buffer_types():
    """Turns off llama.cpp's "extra buffer types" (AMX and repacked weight
    layouts). On this VM the CPU reports AMX_INT8 but ggml's AMX matmul
    segfaults, so every model is run with the plain ggml CPU kernels.
    llama-cpp-python has no keyword for it: wrap the default-params call
    that Llama.__init__ makes."""
    import llama_cpp.llama_cpp as lc
    if getattr(lc, "_jinx_patched", False):
        return
    original = lc.llama_model_default_params

    def params():
        p = original()
        p.use_extra_bufts = False
        return p

    lc.llama_model_default_params = params
    lc._jinx_patched = True


def open_model(path, n_ctx=256, lora=None):
    import llama_cpp
    disable_extra_buffer_types()
    # F32 KV cache and no flash attention: no extra rounding of K/V.
    extra = {"lora_path": str(lora), "lora_scale": 1.0} if lora else {}
    return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_batch=n_ctx,
                           n_threads=2, n_threads_batch=2, seed=1234,
                           logits_all=True, flash_attn=False, type_k=0,
                           type_v=0, verbose=False, **extra)


def last_logits(llm):
    return np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)


def run_logits(path, request):
    import llama_cpp
    llm = open_model(path, request.get("n_ctx", 256), request.get("lora"))
    out = {"version": llama_cpp.__version__, "n_vocab": llm.n_vocab()}
    ids = request.get("input_ids")
    if ids:
        llm.reset()
        llm.eval(ids)
        out["logits"] = np.array(llm.scores[:len(ids)], np.float32).tolist()
    # Greedy: argmax of the raw logits (no sampler, no penalties, no EOS stop).
    llm.reset()
    llm.eval(request["greedy_prompt"])
    out["greedy_first_logits"] = last_logits(llm).tolist()
    tokens, margins = [], []
    for _ in range(request["n_new"]):
        row = last_logits(llm)
        top = np.sort(row)
        margins.append(float(top[-1] - top[-2]))
        tokens.append(int(np.argmax(row)))
        llm.eval([tokens[-1]])
    out["greedy_tokens"] = tokens
    out["greedy_margins"] = margins
    out["greedy_text"] = llm.detokenize(tokens).decode("utf-8", errors="replace")
    return out


def run_embed(path, request):
    """llama.cpp's sentence embeddings (Llama.embed: its own tokenization with BOS rules,
    pooled by llama.cpp, not normalized) and the token ids it embedded."""
    import llama_cpp
    disable_extra_buffer_types()
    llm = llama_cpp.Llama(model_path=str(path), embedding=True, pooling_type=request["pooling"],
                          n_ctx=512, n_batch=512, n_ubatch=512, n_threads=2, n_threads_batch=2,
                          flash_attn=False, type_k=0, type_v=0, verbose=False)
    ids = [llm.tokenize(t.encode("utf-8")) for t in request["texts"]]
    vectors = llm.embed(request["texts"], normalize=False)
    return {"version": llama_cpp.__version__, "ids": ids, "embeddings": vectors}


def call(*args, stdin=None):
    """Runs this file in a fresh interpreter; returns its parsed stdout."""
    proc = subprocess.run([sys.executable, __file__, *map(str, args)],
                          input=stdin, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"fixtures_llamacpp {args[:2]} failed ({proc.returncode}):\n"
                           + proc.stderr[-4000:])
    return json.loads(proc.stdout) if proc.stdout.strip() else None


def main(argv):
    if argv[0] == "quantize":
        quantize(argv[1], argv[2], int(argv[3]), argv[4] == "1")
    elif argv[0] == "logits":
        request = json.loads(sys.stdin.read())
        print(json.dumps(run_logits(argv[1], request)))
    elif argv[0] == "tokenize":
        # argv: tokenize MODEL; stdin: {"texts": [...], "add_special": bool}
        import llama_cpp
        req = json.loads(sys.stdin.read())
        disable_extra_buffer_types()
        llm = llama_cpp.Llama(model_path=argv[1], n_ctx=64, vocab_only=True, verbose=False)
        ids = [llm.tokenize(t.encode("utf-8"), add_bos=req["add_special"], special=True)
               for t in req["texts"]]
        meta = dict(llm.metadata)
        print(json.dumps({"ids": ids, "metadata": meta, "version": llama_cpp.__version__}))
    elif argv[0] == "embed":
        # argv: embed MODEL; stdin: {"texts": [...], "pooling": 1 (mean) | 2 (cls) | 3 (last)}
        print(json.dumps(run_embed(argv[1], json.loads(sys.stdin.read()))))
    else:
        raise SystemExit(f"unknown command {argv[0]}")


if __name__ == "__main__":
    main(sys.argv[1:])
