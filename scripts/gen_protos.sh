#!/usr/bin/env bash
# Regenerate the Python modules of protos/hermes_fed/v1/*.proto.
#
#   scripts/gen_protos.sh            # writes protos/hermes_fed/v1/*_pb2{,_grpc}.py{,i} (committed)
#   scripts/gen_protos.sh OUT_DIR    # writes OUT_DIR/hermes_fed/v1/... (the staleness test)
#
# protoc names imports after the .proto path ("from hermes_fed.v1 import events_pb2"), which
# would collide with the hermes_fed package; the modules live in the `protos` package of the
# editable install, so the imports are rewritten to "from protos.hermes_fed.v1 import ...".
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/protos}"
python="${PYTHON:-$root/.venv/bin/python}"
mkdir -p "$out/hermes_fed/v1"
include="$("$python" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
cd "$root/protos"
"$python" -m grpc_tools.protoc -I . -I "$include" \
  --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  hermes_fed/v1/*.proto
for f in "$out"/hermes_fed/v1/*_pb2*.py "$out"/hermes_fed/v1/*_pb2*.pyi; do
  sed -i -e 's/^from hermes_fed\.v1 import /from protos.hermes_fed.v1 import /' "$f"
done
