"""PERSON / LOCATION / ORGANIZATION from a local transformers token-classification model.

Loaded offline (``local_files_only``) from a directory; the model's labels (``PER``,
``B-LOC``, ``ORG`` ...) are mapped to presidio's entity names. torch is imported only here,
and only when ``redaction.transformers_ner_dir`` is set.
"""

from __future__ import annotations

import os
from typing import Any

from hermes_fed.privacy.offline import import_presidio

import_presidio(need_transformers=True)

from presidio_analyzer import EntityRecognizer, RecognizerResult  # noqa: E402

LABELS: dict[str, str] = {
    "PER": "PERSON", "PERSON": "PERSON", "LOC": "LOCATION", "GPE": "LOCATION",
    "LOCATION": "LOCATION", "ORG": "ORGANIZATION", "ORGANIZATION": "ORGANIZATION",
}


class TransformersNerRecognizer(EntityRecognizer):
    """A presidio recognizer around ``transformers.pipeline("token-classification")``."""

    def __init__(self, model_dir: str, entities: list[str], min_score: float = 0.5) -> None:
        # presidio's EntityRecognizer.__init__ calls load(): set what load() needs first.
        self.label = "TransformersNerRecognizer"
        self.model_dir = model_dir
        self.min_score = min_score
        self._pipe: Any = None
        super().__init__(supported_entities=entities, name="TransformersNerRecognizer",
                         supported_language="en")

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import pipeline

        self._pipe = pipeline("token-classification", model=self.model_dir,
                              tokenizer=self.model_dir, aggregation_strategy="simple",
                              device=-1)

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None
                ) -> list[RecognizerResult]:
        if self._pipe is None:
            self.load()
        out = []
        for ent in self._pipe(text):
            label = str(ent.get("entity_group", ent.get("entity", ""))).split("-")[-1]
            entity = LABELS.get(label.upper())
            if entity is None or entity not in entities or float(ent["score"]) < self.min_score:
                continue
            out.append(RecognizerResult(
                entity, int(ent["start"]), int(ent["end"]), float(ent["score"]),
                recognition_metadata={RecognizerResult.RECOGNIZER_NAME_KEY: self.label},
            ))
        return out
