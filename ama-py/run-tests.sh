#!/usr/bin/env bash
# Tests of the Python package `ama` (ama-py), as CI runs them; scripts/test
# calls this. It builds the package into a virtual environment at the
# repository root and runs:
#   1. pytest ama-py/tests               (the package's test suite; test_http.py
#      drives a real `ama serve` over TLS with `requests`, so the `ama`
#      binary is built first)
#   2. mypy --strict examples/python      (and the package's own sources)
#   3. python -m mypy.stubtest ama        (the .pyi stubs match the module)
# Exits non-zero on the first failure.
#
# The build is `maturin develop` in the dev profile: it reuses the
# workspace's dev build of ama-core and its dependencies (opt-level 2, see
# Cargo.toml), so after `cargo nextest run --workspace` only pyo3 and ama-py
# are compiled (~15 s). Set AMA_PY_PROFILE=release for an optimised build
# (throughput measurements; a cold release build takes minutes).
#
# Environment: PYTHON (interpreter for the venv, default python3 >= 3.9),
# AMA_PY_VENV (default .venv-py), AMA_CORPUS (default ../shared/corpus),
# AMA_PY_IMPORT_BENCH=1 to also measure the enron-inbox import.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
venv="${AMA_PY_VENV:-.venv-py}"
python="${PYTHON:-python3}"
profile="${AMA_PY_PROFILE:-dev}"

step() { printf '\n==> ama-py: %s\n' "$*"; }

step "virtual environment $venv"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "maturin==1.*" pytest mypy requests

step "build and install (maturin develop, $profile profile)"
release=()
if [ "$profile" = release ]; then release=(--release); fi
VIRTUAL_ENV="$root/$venv" PATH="$root/$venv/bin:$PATH" \
  "$venv/bin/maturin" develop --manifest-path ama-py/Cargo.toml "${release[@]}"

# Keep the mypy cache out of the working tree.
export MYPY_CACHE_DIR="$root/$venv/mypy-cache"

step "the ama binary for the HTTP tests (AMA_BIN, else cargo build -p ama-cli)"
# Given (scripts/test passes the one its test build made), or built here.
if [ -z "${AMA_BIN:-}" ] || [ ! -x "$AMA_BIN" ]; then
  cargo build --quiet -p ama-cli
  export AMA_BIN="$root/target/debug/ama"
fi
export AMA_BIN

step "pytest"
"$venv/bin/python" -m pytest -p no:cacheprovider -q ama-py/tests

step "mypy --strict examples/python ama-py/python"
"$venv/bin/python" -m mypy --strict examples/python ama-py/python/ama

step "stubtest"
# Run from inside the venv: stubtest writes .mypy_cache into the current directory.
(cd "$venv" && bin/python -m mypy.stubtest ama)

echo
echo "ama-py: all checks passed"
