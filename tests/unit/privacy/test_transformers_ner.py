"""The transformers NER path with a real (tiny, locally built, offline) BERT token
classifier whose head labels every token B-PER: checks the wiring end to end - offline load
from a directory, label mapping, the report - not NER quality."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hermes_fed.privacy import RedactionConfig, Redactor

from .conftest import SECRET


@pytest.fixture(scope="module")
def ner_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("ner")
    (path / "vocab.txt").write_text(
        "\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "ada", "lovelace", "called"])
        + "\n")
    tokenizer = transformers.BertTokenizerFast(vocab_file=str(path / "vocab.txt"),
                                               do_lower_case=True)
    config = transformers.BertConfig(
        vocab_size=8, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
        intermediate_size=8, max_position_embeddings=32, num_labels=3,
        id2label={0: "O", 1: "B-PER", 2: "I-PER"}, label2id={"O": 0, "B-PER": 1, "I-PER": 2})
    model = transformers.BertForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))  # every token: B-PER
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_transformers_ner_dir_feeds_person_entities(ner_dir: Path) -> None:
    # Prepare
    redactor = Redactor(RedactionConfig(transformers_ner_dir=str(ner_dir)), tenant_secret=SECRET)
    # Execute
    data, metadata = redactor.redact_event("ErrorReported", {"reason": "ada lovelace called"},
                                           {}, session_key="tner")
    # Assert: the key survives (no NER on keys), every word became a PERSON placeholder
    assert set(data) == {"reason"}
    assert data["reason"] == "<PERSON_1> <PERSON_2> <PERSON_3>"
    report = metadata["redaction"]
    assert report["ner"] is True and report["ner_source"] == "transformers"
    assert report["matched_by"] == {"TransformersNerRecognizer": 3}
