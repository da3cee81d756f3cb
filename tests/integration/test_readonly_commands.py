"""Read-only commands never create a store, and say so when there is nothing to read
(issue 21, item 11); ``log`` and ``quality`` take the node's ``--config`` (item 13).

Each command runs through ``hermes_fed.cli.main`` in this process, against a real SQLite
log written by ``node import`` and a real PostgreSQL server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from hermes_fed.cli import main

FIXTURE = Path(__file__).parents[1] / "fixtures" / "hermes_function_calling_v1.jsonl"
TOKEN = "node-token-0123456789abcdef"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node directory (node.toml, var/events.db, var/keyring.json) holding 5 imports."""
    directory = tmp_path_factory.mktemp("node")
    (directory / "node.toml").write_text(
        f'tenant_id = "acme"\ntoken = "{TOKEN}"\nmetrics_port = 0\n'
        '[quality.tiers]\nsilver_from = 0.25\n')
    assert main(["node", "import", str(FIXTURE), "--format", "hermes", "--config",
                 str(directory / "node.toml")]) == 0
    return directory


def _store_args(node_dir: Path, tenant: str = "acme") -> list[str]:
    return ["--store", f"sqlite:///{node_dir / 'var' / 'events.db'}", "--tenant", tenant,
            "--keyring", str(node_dir / "var" / "keyring.json")]


READ_ONLY = [
    ["log", "verify"], ["log", "tail"], ["log", "stats"],
    ["quality", "report"], ["quality", "explain", "t-x"], ["quality", "select", "--target-n", "5"],
    ["quality", "trigger"],
]


@pytest.mark.parametrize("command", READ_ONLY, ids=[" ".join(c) for c in READ_ONLY])
def test_a_read_only_command_on_a_missing_store_fails_and_creates_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]) -> None:
    # Prepare: a mistyped path
    missing = tmp_path / "typo" / "events.db"

    # Execute
    code, out, err = run(capsys, *command, "--store", f"sqlite:///{missing}", "--tenant", "acme")

    # Assert
    assert code == 1
    assert f"no event log at {missing}" in err, err
    assert "ok" not in out
    assert not missing.exists() and not missing.parent.exists()


@pytest.mark.parametrize("command", READ_ONLY, ids=[" ".join(c) for c in READ_ONLY])
def test_a_read_only_command_for_a_tenant_without_events_says_so(
        capsys: pytest.CaptureFixture[str], node_dir: Path, command: list[str]) -> None:
    # Execute: the right log, a wrong tenant
    code, out, err = run(capsys, *command, *_store_args(node_dir, tenant="acmee")[:4])

    # Assert
    assert code == 1
    assert "tenant 'acmee' has no events in this log (tenants with events: acme)" in err, err
    assert "ok:" not in out


@pytest.mark.parametrize("command", [["export", "--format", "openai"], ["status"]])
def test_node_read_commands_on_a_missing_store_fail_and_create_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, command: list[str]) -> None:
    # Prepare: a node config whose data directory does not exist yet
    config = tmp_path / "node.toml"
    config.write_text(f'tenant_id = "acme"\ntoken = "{TOKEN}"\ndata_dir = "data"\n')

    # Execute
    code, _, err = run(capsys, "node", *command, "--config", str(config))

    # Assert: no database, no key ring, no directory
    assert code == 1
    assert f"no event log at {tmp_path / 'data' / 'events.db'}" in err, err
    assert not (tmp_path / "data").exists()


def test_log_verify_of_a_postgres_schema_that_does_not_exist_fails_and_creates_nothing(
        capsys: pytest.CaptureFixture[str], pg_url: str, pg_schema: str) -> None:
    # Execute
    code, _, err = run(capsys, "log", "verify", "--store", pg_url, "--schema", pg_schema,
                         "--tenant", "acme")

    # Assert
    assert code == 1
    assert f"no event log in schema {pg_schema!r}" in err, err
    engine = sa.create_engine(pg_url)
    try:
        assert pg_schema not in sa.inspect(engine).get_schema_names()
    finally:
        engine.dispose()


def test_a_missing_keyring_file_is_one_clear_line(
        capsys: pytest.CaptureFixture[str], node_dir: Path, tmp_path: Path) -> None:
    # Execute
    code, _, err = run(capsys, "log", "stats", *_store_args(node_dir)[:4], "--keyring",
                       str(tmp_path / "nope.json"))

    # Assert
    assert code == 1
    assert err.startswith("hermes-fed: error: cannot read key ring"), err


def test_log_and_quality_take_the_node_config(
        capsys: pytest.CaptureFixture[str], node_dir: Path) -> None:
    # Prepare
    config = str(node_dir / "node.toml")

    # Execute
    by_config = run(capsys, "log", "verify", "--config", config)
    by_flags = run(capsys, "log", "verify", *_store_args(node_dir))
    stats = run(capsys, "log", "stats", "--config", config)
    tail = run(capsys, "log", "tail", "--config", config, "-n", "2", "--data")
    report = run(capsys, "quality", "report", "--config", config, "--json")

    # Assert: the same log either way, decrypted with the node's key ring
    assert by_config[0] == 0 and by_config[1] == by_flags[1]
    assert by_config[1].startswith("ok: 10 events"), by_config
    assert "TrajectoryRecorded           5" in stats[1]
    assert tail[0] == 0 and '"final_response"' in tail[1]
    assert report[0] == 0
    # [quality.tiers] silver_from = 0.25 of node.toml applies: 4 of the 5 unrated imports
    # score 0.30 (not accepted, no retry), silver under this config, bronze under the
    # defaults; the fifth's last tool result is an error (card_declined): 0.10, bronze.
    assert json.loads(report[1])["velocity"]["tier_histogram"]["silver"] == 4


def test_explicit_flags_override_the_node_config(
        capsys: pytest.CaptureFixture[str], node_dir: Path) -> None:
    # Execute
    code, _, err = run(capsys, "log", "stats", "--config", str(node_dir / "node.toml"),
                       "--tenant", "globex")

    # Assert
    assert code == 1
    assert "tenant 'globex' has no events in this log" in err


def test_a_quality_only_toml_still_configures_quality(
        capsys: pytest.CaptureFixture[str], node_dir: Path, tmp_path: Path) -> None:
    # Prepare: the older use of quality --config: a TOML with only a [quality] section
    quality = tmp_path / "quality.toml"
    quality.write_text("[quality.tiers]\nsilver_from = 0.25\n")

    # Execute
    code, out, _ = run(capsys, "quality", "report", "--json", "--config", str(quality),
                       *_store_args(node_dir))

    # Assert
    assert code == 0
    assert json.loads(out)["velocity"]["tier_histogram"]["silver"] == 4


def test_node_status_scores_under_the_nodes_quality_table(
        capsys: pytest.CaptureFixture[str], node_dir: Path) -> None:
    # Execute
    code, out, err = run(capsys, "node", "status", "--config", str(node_dir / "node.toml"),
                         "--json")

    # Assert: silver_from = 0.25 of node.toml, as in quality report above
    assert code == 0, err
    assert json.loads(out)["velocity"]["tier_histogram"]["silver"] == 4
