"""``hermes-fed model train`` refuses bad input with one line and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermes_fed.cli import main


@pytest.mark.parametrize("lines, flags, words", [
    (['{"trajectory_id": "t1", "messages": []}'], ["--rank", "0"],
     "LoraTrainingConfig.r must be an integer >= 1, got 0"),
    (["{}"], [], "data.jsonl:1: a row must be an object with a trajectory_id"),
    (['{"trajectory_id": "t1"}', "not json"], [], "data.jsonl:2: not JSON"),
    (["", "  "], [], "data.jsonl: no trajectories"),
])
def test_bad_input_is_one_line_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], lines: list[str],
        flags: list[str], words: str) -> None:
    # Prepare
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"

    # Execute
    code = main(["model", "train", *flags, str(tmp_path / "base"), str(data), str(out)])

    # Assert
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("hermes-fed: error: ") and words in err and "Traceback" not in err
    assert not out.exists()


def test_a_missing_data_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["model", "train", str(tmp_path / "base"), str(tmp_path / "nope.jsonl"),
                 str(tmp_path / "run")])
    assert code == 1 and "cannot read" in capsys.readouterr().err
