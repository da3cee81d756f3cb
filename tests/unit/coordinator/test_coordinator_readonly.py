"""Coordinator commands that read (or change what is there) never create the coordinator's
log: a mistyped ``--dir`` is an error, not an empty registry that reads as success."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermes_fed.cli import main


@pytest.mark.parametrize("command", [
    ["coordinator", "versions"], ["coordinator", "versions", "--latest"],
    ["model", "history"], ["ab", "status"], ["ab", "status", "ab-1"],
    ["model", "promote", "v1-abc"], ["model", "rollback", "v1-abc", "--reason", "r"],
    ["ab", "conclude", "ab-1"],
])
def test_a_missing_coordinator_log_is_an_error_and_stays_missing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    # Prepare: a directory name one letter off the real one
    typo = tmp_path / "stat"

    # Execute
    code = main([*command, "--dir", str(typo)])

    # Assert
    err = capsys.readouterr().err
    assert code == 1
    assert f"no coordinator log at {typo / 'coordinator.db'}" in err
    assert not typo.exists()


def test_versions_latest_prints_the_newest_version_id_only(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: two published versions
    import numpy as np

    from coordinator.logs.registry import AdapterRegistry
    from hermes_fed.training.config import LoraTrainingConfig

    tensors = {"m.lora_A.weight": np.ones((2, 4), dtype=np.float32)}
    with AdapterRegistry.open(tmp_path) as registry:
        registry.publish(tensors, parent=None, lineage={"round": 0},
                         training_config=LoraTrainingConfig())
        newest = registry.publish({k: v * 2 for k, v in tensors.items()}, parent=None,
                                  lineage={"round": 1}, training_config=LoraTrainingConfig())

    # Execute
    code = main(["coordinator", "versions", "--dir", str(tmp_path), "--latest"])

    # Assert
    assert code == 0
    assert capsys.readouterr().out == f"{newest.version}\n"
