"""``hermes-fed redact``: the CLI group through the real ``main`` entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hermes_fed.cli import main


def test_redact_text_prints_the_redacted_text(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["redact", "text", "mail bob@example.com, key AKIAIOSFODNN7EXAMPLE"])
    assert rc == 0
    assert capsys.readouterr().out.strip() == "mail <EMAIL_ADDRESS_1>, key <AWS_ACCESS_KEY_ID_1>"


def test_redact_text_explain_lists_spans(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["redact", "text", "--explain", "password: hunter2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["findings"] == [{"entity_type": "PASSWORD", "start": 10, "end": 17,
                                "score": 0.8, "recognizers": ["CredentialAssignment"]}]


def test_redact_jsonl_file_value_by_value(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text('{"phone": "555 0100", "note": "call bob@example.com"}\n')
    assert main(["redact", "file", str(path)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "phone": "<PHONE_NUMBER_1>", "note": "call <EMAIL_ADDRESS_1>"}


def test_redact_missing_file_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["redact", "file", "/nonexistent/x.txt"]) == 1
    assert "no such file" in capsys.readouterr().err
