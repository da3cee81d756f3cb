"""``hermes-fed node import|export|assign`` as real processes, and projections kept caught up
behind the daemon."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from hermes_fed.events import NewEvent
from hermes_fed.formats.jsonl import parse_jsonl

from .ingest_node import NodeProcess

pytestmark = pytest.mark.slow

PHONE = "+1 415 555 0100"


def hermes(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hermes_fed.cli", "node", *args],
                          capture_output=True, text=True, timeout=300)


def _write_input(path: Path) -> None:
    lines = [
        {"id": "a", "conversations": [
            {"from": "human", "value": f"call me on {PHONE}"},
            {"from": "gpt", "value": "<think>lookup</think><tool_call>{\"name\": \"dial\", "
                                     "\"arguments\": {\"n\": 1}}</tool_call>"},
            {"from": "tool", "value": "<tool_response>{\"name\": \"dial\", \"content\": "
                                      "\"ok\"}</tool_response>"},
            {"from": "gpt", "value": "calling"}]},
        "this line is not json",
        {"id": "b", "conversations": [{"from": "human", "value": "hi"},
                                      {"from": "gpt", "value": "hello"}]},
        {"id": "c", "conversations": [{"from": "alien", "value": "x"}]},
    ]
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")


def test_import_assign_export_through_the_cli(tmp_path: Path) -> None:
    # Prepare
    node = NodeProcess(tmp_path / "node", f"sqlite:///{tmp_path / 'acme.db'}")
    node.write_config()
    config = str(node.config_path)
    source = tmp_path / "chats.jsonl"
    _write_input(source)

    # Execute
    first = hermes(["import", str(source), "--format", "hermes", "--config", config])
    second = hermes(["import", str(source), "--format", "hermes", "--config", config])
    assign = [hermes(["assign", "--config", config, "--test", "ab-1", "--user", "u-9",
                      "--arms", "control=0.5,treatment=0.5"]) for _ in range(2)]
    with node.open_store() as store:
        store.append([NewEvent(stream_id="training-sel", type="TrainingDataSelected", data={
            "selection_id": "s1", "target_n": 2, "seed": 0, "manifest_sha256": "0" * 64,
            "n_by_tier": {"gold": 2}, "items": [
                {"trajectory_id": "t-a", "tier": "gold", "weight": 2.0},
                {"trajectory_id": "t-b", "tier": "gold", "weight": 2.0}]})])
        stored = [e for e in store.read() if e.type == "TrajectoryRecorded"]
        assert store.verify().ok
    exports = {fmt: tmp_path / f"out-{fmt}.jsonl" for fmt in ("hermes", "openai")}
    exported = [hermes(["export", "--format", fmt, "--config", config, "--out", str(out)])
                for fmt, out in exports.items()]

    # Assert: bad lines by number (exit 1: some lines were bad), good ones landed once,
    # redacted.
    assert first.returncode == 1, first.stderr
    assert f"{source}:line 2: not JSON" in first.stderr
    assert f"{source}:line 4: conversations[0].from" in first.stderr
    assert "2 imported, 0 already present, 2 bad of 4 lines (bad lines: 2, 4)" in first.stdout
    assert "0 imported, 2 already present, 2 bad of 4 lines" in second.stdout
    assert sorted(e.data["trajectory_id"] for e in stored) == ["t-a", "t-b"]
    assert PHONE not in json.dumps([dict(e.data) for e in stored])
    # Assignment: deterministic and recorded once.
    assert [a.returncode for a in assign] == [0, 0]
    assert assign[0].stdout.split("\t")[0] == assign[1].stdout.split("\t")[0]
    assert "(already recorded)" in assign[1].stdout
    # Export of the curated set in both formats parses back to the stored trajectories.
    assert all(e.returncode == 0 for e in exported), [e.stderr for e in exported]
    for fmt, out in exports.items():
        back = [p.trajectory for p in parse_jsonl(out.read_text().splitlines(), fmt)]
        assert back == [dict(e.data) for e in stored], fmt
        assert json.loads(out.read_text().splitlines()[0])["tier"] == "gold"


def test_serve_with_a_bad_config_exits_naming_the_key(tmp_path: Path) -> None:
    # Prepare
    config = tmp_path / "node.toml"
    config.write_text('tenant_id = "acme"\ntoken = "0123456789abcdef"\n'
                      'listen = "0.0.0.0:50999"\n')

    # Execute
    result = hermes(["serve", "--config", str(config)])

    # Assert
    assert result.returncode == 1
    assert "listen='0.0.0.0:50999' is beyond loopback" in result.stderr


def test_serve_on_a_taken_port_exits_with_a_clear_error(tmp_path: Path) -> None:
    # Prepare
    node = NodeProcess(tmp_path / "node", f"sqlite:///{tmp_path / 'acme.db'}")
    node.write_config()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", node.port))
        taken.listen()

        # Execute
        result = hermes(["serve", "--config", str(node.config_path)])

    # Assert
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{node.port}" in result.stderr


def test_import_of_a_missing_format_is_refused(tmp_path: Path) -> None:
    # Execute
    result = hermes(["import", str(tmp_path / "x.jsonl"), "--format", "csv", "--config", "n"])

    # Assert
    assert result.returncode == 2 and "invalid choice: 'csv'" in result.stderr


def test_projections_are_caught_up_behind_the_daemon(tmp_path: Path) -> None:
    # Prepare
    db = tmp_path / "acme.db"
    node = NodeProcess(tmp_path / "node", f"sqlite:///{db}",
                       projections=["hermes_fed.quality.projection:QualityProjection"],
                       projection_interval_s=0.05)
    node.start()
    try:
        client = node.client()
        session = client.session("u-1", "m1")
        tid = session.trajectory(task="q", messages=[{"role": "user", "content": "q"},
                                                     {"role": "assistant", "content": "a"}])
        session.accepted(tid)
        client.flush()
        engine = sa.create_engine(f"sqlite:///{db}")

        # Execute: poll the read model (the pump runs every 50 ms).
        deadline = time.monotonic() + 30
        row = None
        while row is None and time.monotonic() < deadline:
            with engine.connect() as conn:
                row = conn.execute(sa.text(
                    "SELECT accepted FROM quality_trajectories WHERE trajectory_id = :t"),
                    {"t": tid}).first()
            if row is None:
                time.sleep(0.05)

        # Assert
        assert row is not None and bool(row[0])

        # Execute: an import sent through this running daemon.
        source = tmp_path / "chats.jsonl"
        _write_input(source)
        result = hermes(["import", str(source), "--format", "hermes", "--config",
                         str(node.config_path), "--via-daemon"])

        # Assert
        assert "2 imported, 0 already present, 2 bad of 4 lines" in result.stdout, result.stderr
        ids = {e.data.get("trajectory_id") for e in node.client().read_log()
               if e.type == "TrajectoryRecorded"}
        assert {"t-a", "t-b"} <= ids
    finally:
        assert node.stop() == 0
