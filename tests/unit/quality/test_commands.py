"""``hermes-fed quality`` end to end on a SQLite log with a key ring file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hermes_fed.cli import main
from hermes_fed.store import Keyring, open_store

from .conftest import ev, feedback, started, trajectory


@pytest.fixture
def log(tmp_path: Path) -> list[str]:
    keyring = Keyring.generate("acme")
    keyring.save(tmp_path / "keys.json")
    url = f"sqlite:///{tmp_path / 'acme.db'}"
    store = open_store(url, "acme", keyring=keyring)
    batch = []
    for i in range(8):
        s = f"s{i}"
        batch += [started(s), ev(trajectory(f"t{i}", i, 10 + i,
                                            answer=0 if i % 4 == 0 else None), s),
                  feedback("retry" if i % 4 == 0 else "accept", f"t{i}", s)]
    batch.append(feedback("accept", "ghost", "s0"))
    store.append(batch)
    store.close()
    return ["--store", url, "--tenant", "acme", "--keyring", str(tmp_path / "keys.json")]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().out


def test_report_judge_explain_select_trigger(log: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    # Execute + Assert, command by command
    code, out = run(["quality", "report", *log, "--json"], capsys)
    report = json.loads(out)
    assert code == 0 and report["velocity"]["trajectories"] == 8
    assert report["velocity"]["orphans"] == 1
    assert report["trigger"]["rule"] == "wait"

    code, out = run(["quality", "judge", *log, "--json"], capsys)
    assert code == 0 and json.loads(out)["judged"] == 16

    code, out = run(["quality", "explain", "t0", *log], capsys)
    assert code == 0
    assert "not_accepted -0.300" in out and "agreement" in out and "fused" in out

    code, out = run(["quality", "select", *log, "--target-n", "10", "--seed", "3",
                     "--record", "--json"], capsys)
    selected = json.loads(out)
    # the two retried (wrong) answers are bronze: never selected
    assert code == 0 and selected["n"] == 6 and selected["recorded_at_position"] > 0

    code, out = run(["quality", "trigger", *log, "--now", "2030-01-01T00:00:00+00:00"],
                    capsys)
    assert code == 0 and out.startswith("wait [")

    code, out = run(["quality", "rebuild", *log], capsys)
    assert code == 0 and "rebuilt from" in out


def test_bad_input_is_a_clear_error(log: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["quality", "trigger", *log, "--now", "yesterday"]) == 1
    assert "--now must be an ISO 8601 time" in capsys.readouterr().err
    assert main(["quality", "judge", *log, "--judges", "oracle"]) == 1
    assert "unknown judge 'oracle'" in capsys.readouterr().err
    assert main(["quality", "explain", "nope", *log]) == 1
