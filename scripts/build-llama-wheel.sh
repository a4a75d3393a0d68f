#!/usr/bin/env bash
# Builds llama-cpp-python once into a wheel cache outside the checkout, so every later install
# (a fresh clone, CI on the same machine) reuses it instead of compiling for ~10 minutes.
# GGML_NATIVE=OFF: a native build uses AMX, which these virtual machines report but cannot run.
set -euo pipefail
version="${LLAMA_CPP_VERSION:-0.3.36}"
cache="${SWITCHYARD_WHEEL_CACHE:-$HOME/.cache/switchyard/wheels}"
mkdir -p "$cache"
if ls "$cache"/llama_cpp_python-"$version"-*.whl >/dev/null 2>&1; then
  exit 0
fi
echo "building llama-cpp-python $version (one time, about 10 minutes on 2 cores)..." >&2
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" \
  python3 -m pip wheel --no-deps --no-cache-dir --wheel-dir "$tmp" "llama-cpp-python==$version" >&2
mv "$tmp"/llama_cpp_python-*.whl "$cache"/
