#!/bin/sh
# CTest wrapper of the Python server tests: ctest_run.sh SOURCE_DIR MODEL SCRIPT [ARGS...]
# runs SOURCE_DIR/.venv/bin/python SCRIPT ARGS in SOURCE_DIR, or exits 77 (the tests' SKIP
# code) when the venv (tools/install_deps.sh) or the model (tools/get_models.sh) is missing,
# so a developer build without them still passes; `make test` installs both first.
set -eu
src=$1 model=$2
shift 2
if [ ! -x "$src/.venv/bin/python" ]; then
  echo "SKIP: $src/.venv is missing (run tools/install_deps.sh or make deps)"
  exit 77
fi
if [ ! -f "$model" ]; then
  echo "SKIP: $model is missing (run tools/get_models.sh or make models)"
  exit 77
fi
cd "$src"
exec "$src/.venv/bin/python" "$@"
