#!/usr/bin/env bash
# Create or refresh .venv: torch's CPU build first (pinned; any other version pulls
# gigabytes of CUDA packages), then the project in editable mode with dev extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
.venv/bin/pip install -q "torch==2.13.0"
# The stamp skips the slow resolver run when pyproject.toml has not changed.
stamp=.venv/.hermes-fed-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi
