"""A deployer's curated file trains; an uncurated import says why it will not (issue 21,
item 7), through the CLI as the README writes it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hermes_fed.cli import main

FIXTURE = Path(__file__).parents[1] / "fixtures" / "hermes_function_calling_v1.jsonl"
TOKEN = "node-token-0123456789abcdef"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _node(tmp_path: Path) -> str:
    config = tmp_path / "node.toml"
    config.write_text(f'tenant_id = "acme"\ntoken = "{TOKEN}"\n')
    return str(config)


def test_a_curated_import_is_selected_for_training(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Prepare
    config = _node(tmp_path)

    # Execute
    imported = run(capsys, "node", "import", str(FIXTURE), "--format", "hermes", "--config",
                   config, "--curated")
    selected = run(capsys, "quality", "select", "--config", config, "--target-n", "100",
                   "--json")

    # Assert
    assert imported[0] == 0, imported
    assert "5 imported" in imported[1] and "curated" in imported[1]
    assert selected[0] == 0, selected
    assert json.loads(selected[1])["n"] == 5


def test_an_uncurated_import_says_it_will_not_train_yet(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Prepare
    config = _node(tmp_path)

    # Execute
    imported = run(capsys, "node", "import", str(FIXTURE), "--format", "hermes", "--config",
                   config)
    selected = run(capsys, "quality", "select", "--config", config, "--target-n", "100",
                   "--json")

    # Assert
    assert imported[0] == 0
    assert "not selected for training until" in imported[1] and "--curated" in imported[1]
    assert json.loads(selected[1])["n"] == 0


def test_curated_with_an_explicit_score_out_of_range_is_refused(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Execute
    code, _, err = run(capsys, "node", "import", str(FIXTURE), "--format", "hermes",
                       "--config", _node(tmp_path), "--curated", "1.5")

    # Assert
    assert code == 1
    assert "--curated: curated score must be a number in [-1, 1], got 1.5" in err
    assert not (tmp_path / "var").exists()
