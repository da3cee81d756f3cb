"""``hermes-fed ab ...`` and ``hermes-fed model promote|rollback|history`` on a real coordinator dir."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from coordinator.logs.registry import AdapterRegistry
from hermes_fed.cli import build_parser, main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, (json.loads(out) if code == 0 and out.strip() else None), err


def _publish(root: Path) -> str:
    from hermes_fed.training.config import LoraTrainingConfig

    with AdapterRegistry.open(root) as registry:
        tensors = {"layers.0.q_proj.lora_A.weight": np.ones((2, 4), dtype=np.float32),
                   "layers.0.q_proj.lora_B.weight": np.zeros((4, 2), dtype=np.float32)}
        return registry.publish(tensors, parent=None, lineage={"round": 0},
                                training_config=LoraTrainingConfig(r=2)).version


def test_ab_create_status_conclude(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "coord")
    # Execute: create, then status of one test and of all
    code, created, _ = _run(capsys, "ab", "create", "--dir", root, "--control", "v1",
                            "--treatment", "v2", "--id", "ab-cli")
    assert code == 0 and created["traffic_split"] == 0.1 and created["looks"] == 0  # type: ignore[index]
    code, one, _ = _run(capsys, "ab", "status", "--dir", root, "ab-cli")
    code_all, every, _ = _run(capsys, "ab", "status", "--dir", root)
    assert code == code_all == 0 and one["concluded"] is None  # type: ignore[index]
    assert [t["ab_test_id"] for t in every] == ["ab-cli"]  # type: ignore[union-attr]
    # A test with no look cannot be concluded without a verdict
    code, _, err = _run(capsys, "ab", "conclude", "--dir", root, "ab-cli")
    assert code == 1 and "CONTINUE" in err
    code, body, _ = _run(capsys, "ab", "conclude", "--dir", root, "ab-cli", "--verdict",
                         "ROLLBACK", "--reason", "abandoned")
    assert code == 0 and body["concluded"]["decision"] == "ROLLBACK"  # type: ignore[index]
    assert body["rolled_back"] is None  # type: ignore[index]


def test_ab_create_refuses_bad_values(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "ab", "create", "--dir", str(tmp_path), "--control", "v1",
                        "--treatment", "v2", "--traffic-split", "2")
    assert code == 1 and "traffic_split must be in (0, 1), got 2.0" in err


def test_model_promote_rollback_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "coord"
    version = _publish(root)
    # Execute: candidate -> canary (5%) -> ab; production refused without SHIP
    for stage in ("candidate", "canary", "ab"):
        code, body, _ = _run(capsys, "model", "promote", "--dir", str(root), version,
                             "--canary-fraction", "0.05")
        assert code == 0 and body["stage"] == stage  # type: ignore[index]
    assert body["traffic"] == {version: 0.09, "base": pytest.approx(0.91)}  # type: ignore[index]
    code, _, err = _run(capsys, "model", "promote", "--dir", str(root), version)
    assert code == 1 and "SHIP" in err
    code, body, _ = _run(capsys, "model", "rollback", "--dir", str(root), version,
                         "--reason", "latency")
    assert code == 0 and body["type"] == "ModelRolledBack"  # type: ignore[index]
    code, history, _ = _run(capsys, "model", "history", "--dir", str(root))
    assert code == 0
    assert [h["type"] for h in history["history"]] == ["ModelPromoted"] * 3 + ["ModelRolledBack"]  # type: ignore[index]
    assert history["history"][1]["traffic_fraction"] == 0.05  # type: ignore[index]
    assert history["stages"] == {version: "rolled_back"}  # type: ignore[index]


def test_model_promote_refuses_an_unpublished_version(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _publish(tmp_path)  # a coordinator log that exists, without v-ghost
    code, _, err = _run(capsys, "model", "promote", "--dir", str(tmp_path), "v-ghost")
    assert code == 1 and "not in the registry" in err


@pytest.mark.parametrize("command", ["init-tiny", "train", "promote", "rollback", "history"])
def test_model_group_keeps_the_training_commands(command: str) -> None:
    parser = build_parser(["model"])
    choices = next(a for a in parser._subparsers._group_actions)  # type: ignore[union-attr]
    group = choices.choices["model"]  # type: ignore[index]
    sub = next(a for a in group._subparsers._group_actions)
    assert command in sub.choices


def test_ab_look_needs_a_serving_coordinator(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "ab", "look", "--dir", str(tmp_path))
    assert code == 1 and "coordinator serve" in err
