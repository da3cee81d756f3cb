"""Importing JSONL through the redaction gate into a real store; exporting the curated set."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hermes_fed.events import NewEvent
from hermes_fed.formats.importer import curated_trajectories, import_lines
from hermes_fed.formats.jsonl import dump_jsonl, parse_jsonl
from hermes_fed.privacy import RedactionConfig, Redactor
from hermes_fed.store import Keyring, SqlEventStore, open_store

from .conftest import SAMPLE

EMAIL = "jane.doe@example.com"


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor(RedactionConfig(), b"k" * 32)


@pytest.fixture
def store(tmp_path: Path, redactor: Redactor) -> Iterator[SqlEventStore]:
    keyring = Keyring.generate("acme")
    s = open_store(f"sqlite:///{tmp_path / 'acme.db'}", "acme", keyring=keyring,
                   gate=redactor.redact_new_events)
    yield s
    s.close()


def _openai_line(i: int, text: str) -> str:
    return json.dumps({"id": f"r{i}", "messages": [
        {"role": "user", "content": text}, {"role": "assistant", "content": f"answer {i}"}]})


def _lines() -> list[str]:
    return [
        _openai_line(1, f"write to {EMAIL}"),
        "{not json",
        _openai_line(3, "plain question"),
        "",
        json.dumps({"messages": [{"role": "robot", "content": "x"}]}),
        json.dumps({"messages": [{"role": "tool", "tool_call_id": "c1", "content": "x"}]}),
        _openai_line(7, "another question"),
    ]


def test_bad_lines_are_reported_by_number_and_good_ones_land(store: SqlEventStore) -> None:
    # Execute
    report = import_lines(_lines(), "openai", store.append, batch_size=2)

    # Assert
    assert (report.lines, report.imported, report.duplicates) == (7, 3, 0)
    assert [(b.line, b.problem.split(":")[0]) for b in report.bad_lines] == [
        (2, "not JSON (column 2)"), (5, "messages[0].role"), (6, "messages[0].tool_call_id")]
    stored = [e for e in store.read() if e.type == "TrajectoryRecorded"]
    assert sorted(e.data["trajectory_id"] for e in stored) == ["t-r1", "t-r3", "t-r7"]
    assert store.verify().ok


def test_every_record_goes_through_redaction(store: SqlEventStore, tmp_path: Path) -> None:
    # Execute
    import_lines(_lines(), "openai", store.append)

    # Assert: not in the decoded data, and not in the database file's bytes.
    texts = json.dumps([dict(e.data) for e in store.read()])
    assert EMAIL not in texts and "<EMAIL_ADDRESS_1>" in texts
    store.close()
    assert EMAIL.encode() not in (tmp_path / "acme.db").read_bytes()


def test_reimporting_a_file_appends_nothing(store: SqlEventStore) -> None:
    # Prepare
    import_lines(_lines(), "openai", store.append)
    head = store.head()

    # Execute
    again = import_lines(_lines(), "openai", store.append)

    # Assert
    assert (again.imported, again.duplicates) == (0, 3)
    assert store.head() == head


def test_a_repeated_record_in_one_batch_lands_once(store: SqlEventStore) -> None:
    # Execute
    report = import_lines([_openai_line(1, "q"), _openai_line(1, "q")], "openai", store.append)

    # Assert
    assert (report.imported, report.duplicates, report.bad_lines) == (1, 1, ())


def test_hermes_lines_import_with_tool_calls(store: SqlEventStore) -> None:
    # Prepare
    lines = list(dump_jsonl([SAMPLE], "hermes"))

    # Execute
    report = import_lines(lines, "hermes", store.append)

    # Assert
    assert report.imported == 1
    (recorded,) = [e for e in store.read() if e.type == "TrajectoryRecorded"]
    assert recorded.data["messages"][2]["tool_calls"][0]["arguments"] == {"expression": "2+3"}
    assert recorded.stream_id == "session-import-t-1"


def _select(store: SqlEventStore, items: list[dict[str, Any]], selection_id: str) -> None:
    store.append([NewEvent(stream_id="training-sel", type="TrainingDataSelected", data={
        "selection_id": selection_id, "target_n": len(items), "seed": 0,
        "manifest_sha256": "0" * 64, "n_by_tier": {}, "items": items})])


@pytest.mark.parametrize("fmt", ["hermes", "openai"])
def test_export_of_the_curated_set_round_trips(store: SqlEventStore, fmt: str) -> None:
    # Prepare
    import_lines(_lines(), "openai", store.append)
    _select(store, [{"trajectory_id": "t-r1", "tier": "gold", "weight": 2.0}], "old")
    _select(store, [{"trajectory_id": "t-r3", "tier": "platinum", "weight": 5.0},
                    {"trajectory_id": "t-r7", "tier": "silver", "weight": 1.0},
                    {"trajectory_id": "t-missing", "tier": "gold", "weight": 2.0}], "new")

    # Execute
    latest = list(curated_trajectories(store.read()))
    older = list(curated_trajectories(store.read(), "old"))
    lines = list(dump_jsonl([i.trajectory for i in latest], fmt))

    # Assert
    assert [(i.trajectory["trajectory_id"], i.tier) for i in latest] == [
        ("t-r3", "platinum"), ("t-r7", "silver")]
    assert [i.trajectory["trajectory_id"] for i in older] == ["t-r1"]
    back = [p.trajectory for p in parse_jsonl(lines, fmt)]  # type: ignore[union-attr]
    assert back == [dict(i.trajectory) for i in latest]


@pytest.mark.parametrize(("roles", "problem"), [
    (["user", "assistant"], None),
    (["system", "user", "assistant"], None),
    (["user", "assistant", "user"], "messages[2]: a user turn with no answer after it"),
    (["system", "user"], "messages[1]: a user turn with no answer after it"),
    (["user", "assistant", "user", "assistant"], None),
])
def test_an_unanswered_user_turn_is_a_bad_line(roles: list[str], problem: str | None) -> None:
    # Prepare
    record = {"messages": [{"role": r, "content": f"turn {i}"} for i, r in enumerate(roles)]}

    # Execute
    (parsed,) = parse_jsonl([json.dumps(record)], "openai")

    # Assert
    assert getattr(parsed, "problem", None) == problem


@pytest.mark.parametrize("depth", [70, 10_000])
def test_deeply_nested_lines_are_bad_lines_not_crashes(depth: int) -> None:
    # Prepare: arguments nested `depth` levels (json.loads gives up near 1,000)
    arguments = '{"a":' * depth + "1" + "}" * depth
    line = ('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", '
            '"content": null, "tool_calls": [{"id": "c1", "type": "function", "function": '
            '{"name": "f", "arguments": ' + json.dumps(arguments) + '}}]}]}')

    # Execute
    (parsed,) = parse_jsonl([line], "openai")

    # Assert
    assert "nested deeper than 64 levels" in getattr(parsed, "problem", ""), parsed
