"""NER wiring with a real (tiny, locally built) spaCy pipeline, the loud no-NER warning, and
the offline start-up: no torch/transformers import, no public-suffix download."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from hermes_fed.privacy import RedactionConfig, Redactor

from .conftest import SECRET


@pytest.fixture(scope="module")
def spacy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([
        {"label": "PERSON", "pattern": [{"LOWER": "ada"}, {"LOWER": "lovelace"}]},
        {"label": "GPE", "pattern": "Paris"},
        {"label": "ORG", "pattern": "Globex"},
    ])
    path = tmp_path_factory.mktemp("spacy") / "ner"
    nlp.to_disk(path)
    return path


def test_ner_from_configured_spacy_pipeline(spacy_dir: Path) -> None:
    # Prepare
    redactor = Redactor(RedactionConfig(spacy_model=str(spacy_dir)), tenant_secret=SECRET)
    # Execute
    data, metadata = redactor.redact_event(
        "ErrorReported", {"reason": "Ada Lovelace from Globex in Paris mailed ada@example.com"},
        {}, session_key="ner")
    # Assert
    assert data["reason"] == ("<PERSON_1> from <ORGANIZATION_1> in <LOCATION_1> mailed "
                              "<EMAIL_ADDRESS_1>")
    report = metadata["redaction"]
    assert report["ner"] is True and report["ner_source"] == "spacy"
    assert "SpacyRecognizer" in report["recognizers"]


def test_missing_ner_is_loud_and_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hermes_fed.privacy.detector"):
        redactor = Redactor(RedactionConfig(), tenant_secret=SECRET)
    assert any("NO NER MODEL" in r.getMessage() for r in caplog.records)
    _, metadata = redactor.redact_event("SessionEnded", {}, {}, session_key="x")
    assert metadata["redaction"]["ner"] is False


def test_unloadable_spacy_model_is_a_redaction_error(tmp_path: Path) -> None:
    from hermes_fed.errors import RedactionError

    with pytest.raises(RedactionError, match="cannot be loaded offline"):
        Redactor(RedactionConfig(spacy_model=str(tmp_path / "absent")), tenant_secret=SECRET)


def test_startup_is_offline_and_does_not_import_torch() -> None:
    # A fresh interpreter with the network-fetching default of tldextract left on (no env
    # var): the redactor must still not import torch/transformers nor fetch anything.
    code = (
        "import os, sys, socket\n"
        "os.environ.pop('TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS', None)\n"
        "calls = []\n"
        "def no_net(*a, **k):\n"
        "    calls.append(a)\n"
        "    raise OSError('offline')\n"
        "socket.socket.connect = no_net\n"
        "socket.getaddrinfo = no_net\n"
        "from hermes_fed.privacy import Redactor, RedactionConfig\n"
        "r = Redactor(RedactionConfig(), tenant_secret=b'k' * 32)\n"
        "assert r.redact_text('bob@example.com', session_key='s') == '<EMAIL_ADDRESS_1>'\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules\n"
        "assert not calls, calls\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
