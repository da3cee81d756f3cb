"""``flwr run`` builds from a staged copy of the app: the same FAB, without walking what
``.gitignore`` ignores (a checkout's virtualenvs)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from flwr.cli.build import build_fab_from_disk

from coordinator.deploy.app_stage import staged_app
from coordinator.deploy.superlink import run_app
from hermes_fed.errors import FederationError

REPO = Path(__file__).resolve().parents[3]


def _app(root: Path) -> Path:
    """A small Flower App beside what a checkout also holds."""
    root.mkdir()
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    shutil.copy(REPO / ".gitignore", root / ".gitignore")
    files = {
        "coordinator/apps/server_app.py": "app = None\n",
        "tenant_node/flower/client_app.py": "app = None\n",
        "examples/data/tasks.json": '{"tasks": []}\n',
        "README.md": "# app\n",
        ".venv/lib/python3.11/site-packages/big/module.py": "x = 1\n",
        ".venv-vllm/lib/other.py": "y = 2\n",
        "var/demo/report.json": "{}\n",
        "tenant_node/flower/__pycache__/client_app.cpython-311.pyc": "\x00",
        "bench/results/run.json": "{}\n",
        "weights.bin": "\x00" * 64,
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    os.symlink(root / "README.md", root / "linked.md")
    return root


def test_the_staged_copy_builds_the_same_fab_and_skips_ignored_trees(tmp_path: Path) -> None:
    app = _app(tmp_path / "app")
    stage = staged_app(app, tmp_path / "stages")
    staged = {p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file()}
    assert "coordinator/apps/server_app.py" in staged and "examples/data/tasks.json" in staged
    assert not any(s.startswith((".venv", "var/", "bench/results/")) or "__pycache__" in s
                   for s in staged)
    assert "linked.md" not in staged  # Flower skips symlinks too
    assert build_fab_from_disk(stage) == build_fab_from_disk(app)


def test_a_stage_is_reused_until_a_file_changes(tmp_path: Path) -> None:
    app = _app(tmp_path / "app")
    first = staged_app(app, tmp_path / "stages")
    assert staged_app(app, tmp_path / "stages") == first
    server = app / "coordinator/apps/server_app.py"
    server.write_text("app = 'changed'\n")
    os.utime(server, ns=(1, 1))  # a new mtime whatever the clock's resolution
    second = staged_app(app, tmp_path / "stages")
    assert second != first
    assert (second / "coordinator/apps/server_app.py").read_text() == "app = 'changed'\n"
    assert build_fab_from_disk(second) == build_fab_from_disk(app)


def test_a_directory_without_pyproject_is_refused_before_flower_runs(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    with pytest.raises(FederationError, match=r"no pyproject\.toml"):
        run_app(tmp_path / "app", tmp_path / "flwr-home", "local")
    assert not (tmp_path / "flwr-home" / "staged-apps").exists()
