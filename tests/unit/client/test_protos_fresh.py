"""The committed generated modules match the .proto sources (DESIGN.md §2, protos/)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
GENERATED = ROOT / "protos" / "hermes_fed" / "v1"


def test_committed_generated_modules_are_fresh(tmp_path: Path) -> None:
    # Execute
    subprocess.run(["bash", str(ROOT / "scripts" / "gen_protos.sh"), str(tmp_path)],
                   check=True, env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})

    # Assert
    fresh = sorted(p.name for p in (tmp_path / "hermes_fed" / "v1").glob("*_pb2*"))
    committed = sorted(p.name for p in GENERATED.glob("*_pb2*"))
    assert fresh == committed and fresh, "run scripts/gen_protos.sh and commit the result"
    stale = [name for name in fresh
             if (tmp_path / "hermes_fed" / "v1" / name).read_bytes()
             != (GENERATED / name).read_bytes()]
    assert not stale, f"stale generated modules {stale}: run scripts/gen_protos.sh"


def test_every_proto_has_generated_modules() -> None:
    # Execute
    protos = sorted(p.stem for p in GENERATED.glob("*.proto"))

    # Assert
    assert protos == ["events", "ingest"]
    for stem in protos:
        assert (GENERATED / f"{stem}_pb2.py").is_file()
