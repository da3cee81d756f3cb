#!/usr/bin/env bash
# The whole suite: lint, strict typing of every package, then every test (with real vLLM).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS="" \
       FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1 OMP_WAIT_POLICY=PASSIVE
echo "== ruff"; .venv/bin/ruff check .
echo "== mypy --strict (every package: pyproject [tool.mypy] packages)"; .venv/bin/mypy --strict
echo "== vLLM (CPU build) virtualenv for the tests that drive real vLLM"; ./scripts/vllm_venv.sh
echo "== pytest"
set +e
# Two workers (HERMES_FED_TEST_WORKERS to change), each taking whole files, the files
# with slow tests first (tests/conftest.py): a file's module fixtures run once.
.venv/bin/pytest -q -p no:cacheprovider -n "${HERMES_FED_TEST_WORKERS:-2}" --dist loadfile \
  --no-loadscope-reorder "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit "$rc"
