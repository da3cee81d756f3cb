"""``hermes-fed node import`` when things go wrong (issue 21, item 10), as real processes.

A refusal that is not about one line (a wrong token) fails the import once, clearly, with a
non-zero exit; a partial failure exits non-zero with a summary naming the bad lines; a
missing file is one line of error, not a traceback, and creates nothing; a human turn
without an answer is refused and reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .ingest_node import NodeProcess

pytestmark = pytest.mark.slow

FIXTURE = Path(__file__).parents[1] / "fixtures" / "hermes_function_calling_v1.jsonl"


def hermes(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hermes_fed.cli", "node", *args],
                          capture_output=True, text=True, timeout=300)


def _pair(i: int) -> str:
    return json.dumps({"id": f"p{i}", "conversations": [
        {"from": "human", "value": f"question {i}"}, {"from": "gpt", "value": f"answer {i}"}]})


def test_a_wrong_token_fails_the_import_once_with_a_nonzero_exit(tmp_path: Path) -> None:
    # Prepare: a running node, and a copy of its config holding another token
    node = NodeProcess(tmp_path / "node", f"sqlite:///{tmp_path / 'acme.db'}")
    node.start()
    try:
        wrong = tmp_path / "wrong.toml"
        wrong.write_text(node.config_path.read_text().replace(
            'token = "node-token-0123456789abcdef"', 'token = "not-the-token-0123456789"'))
        source = tmp_path / "chats.jsonl"
        source.write_text("\n".join(_pair(i) for i in range(7)) + "\n")
        client = node.client()
        before = len(client.read_log())

        # Execute
        result = hermes("import", str(source), "--format", "hermes", "--config", str(wrong),
                        "--via-daemon")

        # Assert: one error, naming the cause; no line blamed; nothing written
        assert result.returncode == 1, result
        assert result.stderr.count("UNAUTHENTICATED") == 1, result.stderr
        assert "line " not in result.stderr.replace("at line 1", "")
        assert "Traceback" not in result.stderr
        assert len(client.read_log()) == before
        client.transport.close()
    finally:
        node.stop()


def test_a_line_the_node_refuses_is_a_bad_line_even_alone_in_its_batch(
        tmp_path: Path) -> None:
    # Prepare: a running node whose events are at most 64 KiB; one line is far larger
    node = NodeProcess(tmp_path / "node", f"sqlite:///{tmp_path / 'acme.db'}")
    node.start()
    try:
        huge = json.dumps({"id": "huge", "conversations": [
            {"from": "human", "value": "q"}, {"from": "gpt", "value": "a" * 100_000}]})
        source = tmp_path / "chats.jsonl"
        source.write_text("\n".join([_pair(1), huge, _pair(3)]) + "\n")

        # Execute
        result = hermes("import", str(source), "--format", "hermes", "--config",
                        str(node.config_path), "--via-daemon", "--batch-size", "1")

        # Assert: the line is named with the node's reason; its neighbours landed
        assert result.returncode == 1, result
        assert f"{source}:line 2: refused by the node: RESOURCE_EXHAUSTED" in result.stderr
        assert "2 imported, 0 already present, 1 bad of 3 lines (bad lines: 2)" in result.stdout
    finally:
        node.stop()


def test_a_partial_failure_exits_nonzero_with_a_summary(tmp_path: Path) -> None:
    # Prepare
    node = NodeProcess(tmp_path / "node", f"sqlite:///{tmp_path / 'acme.db'}")
    node.write_config()
    source = tmp_path / "chats.jsonl"
    source.write_text("\n".join([_pair(1), "{not json", _pair(3),
                                 json.dumps({"conversations": [{"from": "alien", "value": "x"}]}),
                                 _pair(5)]) + "\n")

    # Execute
    result = hermes("import", str(source), "--format", "hermes", "--config",
                    str(node.config_path))

    # Assert: the good lines landed, the bad ones are named, and the exit says so
    assert result.returncode == 1, result
    assert "3 imported, 0 already present, 2 bad of 5 lines (bad lines: 2, 4)" in result.stdout
    assert f"{source}:line 2: not JSON" in result.stderr
    with node.open_store() as store:
        assert sum(e.type == "TrajectoryRecorded" for e in store.read()) == 3


def test_bad_lines_within_max_bad_lines_exit_zero(tmp_path: Path) -> None:
    # Prepare
    node = NodeProcess(tmp_path / "node", f"sqlite:///{tmp_path / 'acme.db'}")
    node.write_config()
    source = tmp_path / "chats.jsonl"
    source.write_text("\n".join([_pair(1), "{not json"]) + "\n")

    # Execute
    result = hermes("import", str(source), "--format", "hermes", "--config",
                    str(node.config_path), "--max-bad-lines", "1")

    # Assert
    assert result.returncode == 0, result
    assert "1 imported, 0 already present, 1 bad of 2 lines (bad lines: 2)" in result.stdout


def test_a_missing_file_is_one_clear_line_and_creates_nothing(tmp_path: Path) -> None:
    # Prepare
    node = NodeProcess(tmp_path / "node", f"sqlite:///{tmp_path / 'data' / 'acme.db'}")
    node.write_config()
    missing = tmp_path / "no-such.jsonl"

    # Execute
    result = hermes("import", str(missing), "--format", "hermes", "--config",
                    str(node.config_path))

    # Assert
    assert result.returncode == 1, result
    assert result.stderr.strip() == f"hermes-fed: error: {missing}: no such file"
    assert not (tmp_path / "data").exists()
    assert not (node.workdir / "var").exists()


def test_a_human_turn_without_an_answer_is_refused_and_reported(tmp_path: Path) -> None:
    # Prepare: the canonical rows, plus one whose last human turn has no answer
    node = NodeProcess(tmp_path / "node", f"sqlite:///{tmp_path / 'acme.db'}")
    node.write_config()
    unanswered = json.loads(FIXTURE.read_text().splitlines()[1])
    unanswered["id"] = "unanswered"
    unanswered["conversations"].append({"from": "human", "value": "And a hotel?"})
    source = tmp_path / "chats.jsonl"
    source.write_text(FIXTURE.read_text() + json.dumps(unanswered) + "\n")

    # Execute
    result = hermes("import", str(source), "--format", "hermes", "--config",
                    str(node.config_path))

    # Assert
    assert result.returncode == 1, result
    assert f"{source}:line 6: messages[9]: a user turn with no answer after it" in result.stderr
    assert "5 imported, 0 already present, 1 bad of 6 lines (bad lines: 6)" in result.stdout
    with node.open_store() as store:
        ids = {e.data["trajectory_id"] for e in store.read() if e.type == "TrajectoryRecorded"}
    assert "t-unanswered" not in ids and len(ids) == 5
