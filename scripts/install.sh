#!/usr/bin/env bash
# The one install step behind `make install`: the locked workspace into .venv, the local model runtime
# (llama-cpp-python, built once per machine with the flags these CPUs need), and the model files.
set -euo pipefail
cd "$(dirname "$0")/.."
UV="${UV:-uv}"
PYTHON="${PYTHON:-python3}"

"$UV" sync --frozen --inexact --compile-bytecode --python "$PYTHON"

if ! .venv/bin/python -c "import llama_cpp" >/dev/null 2>&1; then
  scripts/build-llama-wheel.sh
  cache="${SWITCHYARD_WHEEL_CACHE:-$HOME/.cache/switchyard/wheels}"
  "$UV" pip install --no-config --python .venv/bin/python --no-deps "$cache"/llama_cpp_python-0.3.36-*.whl
fi

.venv/bin/switchyard models build
