"""``hermes-fed node plan set|show``: TrafficPlanApplied through the node's redaction gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hermes_fed.cli import main
from hermes_fed.errors import ConfigError
from hermes_fed.serving.plan import PLAN_STREAM
from tenant_node.config import load_node_config
from tenant_node.gateway.plans import install_adapter
from tenant_node.ingest.runtime import open_node_store


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    path.write_text('tenant_id = "acme"\ntoken = "node-token-0123456789"\nmetrics_port = 0\n')
    return path


def _adapter(where: Path, weights: bytes = b"w1") -> Path:
    where.mkdir(parents=True)
    (where / "adapter_config.json").write_text('{"r": 8}')
    (where / "adapter_model.safetensors").write_bytes(weights)
    return where


def test_plan_set_records_traffic_plan_applied_and_show_prints_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a version name the secret detector would otherwise flag (hex, entropy)
    config = _config(tmp_path)
    version = "v3-9f86d081884c7d659a2feaa0c55ad015"
    source = _adapter(tmp_path / "trained")

    # Execute
    code = main(["node", "plan", "set", "--config", str(config), "--test", "ab-7",
                 "--arm", "control=base:0.9", "--arm", f"treatment={version}:0.1",
                 "--adapter", f"{version}={source}"])
    capsys.readouterr()
    shown = main(["node", "plan", "show", "--config", str(config)])
    out = json.loads(capsys.readouterr().out)

    # Assert
    assert (code, shown) == (0, 0)
    assert out["plan"] == {"test_id": "ab-7", "production": "control", "arms": [
        {"name": "control", "version": "base", "share": 0.9},
        {"name": "treatment", "version": version, "share": 0.1}]}
    node = load_node_config(config)
    assert (node.resolved_adapters_dir / version / "adapter_model.safetensors").read_bytes() == b"w1"
    store = open_node_store(node)
    try:
        events = store.read_stream(PLAN_STREAM)
    finally:
        store.close()
    assert [e.type for e in events] == ["TrafficPlanApplied"]
    assert events[0].data["arms"][1]["model_version"] == version  # untouched by redaction


def test_plan_set_refuses_a_version_without_an_adapter(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    code = main(["node", "plan", "set", "--config", str(config), "--test", "ab-1",
                 "--arm", "a=base:0.5", "--arm", "b=v9:0.5"])
    assert code == 1
    assert "no adapter on disk for ['v9']" in capsys.readouterr().err
    store = open_node_store(load_node_config(config))
    try:
        assert store.read_stream(PLAN_STREAM) == []  # nothing recorded
    finally:
        store.close()


def test_a_version_is_never_replaced_in_place(tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    install_adapter(adapters, "v2", _adapter(tmp_path / "a"))
    install_adapter(adapters, "v2", _adapter(tmp_path / "same"))  # same files: a no-op
    with pytest.raises(ConfigError, match="never replaced in place"):
        install_adapter(adapters, "v2", _adapter(tmp_path / "b", b"other"))
    assert (adapters / "v2" / "adapter_model.safetensors").read_bytes() == b"w1"


def test_plan_show_without_a_plan_exits_1(tmp_path: Path) -> None:
    assert main(["node", "plan", "show", "--config", str(_config(tmp_path))]) == 1
