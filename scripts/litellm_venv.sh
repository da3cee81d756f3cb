#!/usr/bin/env bash
# Create or refresh the virtualenv of LiteLLM's proxy (default .venv-litellm at the repo root).
#
#   scripts/litellm_venv.sh            # .venv-litellm
#   scripts/litellm_venv.sh DIR        # another place (or LITELLM_VENV=DIR)
#
# Bench-only: LiteLLM's proxy is the comparison point of bench/gateway (the gateway's added
# latency and throughput beside a widely deployed one). It gets a virtualenv of its own so its
# dependency pins never move the project's. A stamp holding the pin makes a second run instant.
# 1.108.7 is the newest whose proxy extra resolves from the registry (2026-12): later ones pin
# companion releases it lacks (litellm-enterprise 0.1.79.post2+, litellm-proxy-extras
# 0.4.110.post1 / 0.4.113, and from 1.110.0 a litellm-proxy distribution).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-${LITELLM_VENV:-.venv-litellm}}
PY=${PYTHON:-python3}
PIN="litellm[proxy]==1.108.7"
stamp="$VENV/.hermes-fed-litellm-installed"

if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PIN" ]; then
  exit 0
fi
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
rm -f "$stamp"
echo "litellm_venv: installing $PIN into $VENV" >&2
# pip warns once per package about configured local index folders that lack it: noise.
"$VENV/bin/pip" install -q --disable-pip-version-check "$PIN" \
  2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
LITELLM_LOCAL_MODEL_COST_MAP=True "$VENV/bin/python" -c "import litellm.proxy.proxy_server"
echo "$PIN" > "$stamp"
echo "litellm_venv: ready in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1)" >&2
