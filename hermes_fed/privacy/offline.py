"""Import presidio offline and fast, and build its NLP engine without a model download.

Two measured traps (FIELD_NOTES.md, "presidio offline"):

* ``presidio_analyzer``'s package import pulls in ``transformers`` and ``torch`` (through
  its Hugging Face pipeline glue and thinc), ~6 s of a 7.5 s import. A pattern-only
  redactor needs neither, so unless a transformers NER model is configured (or torch is
  already loaded) both names are masked *during that one import only*; presidio and thinc
  then record "transformers/torch unavailable", which only affects their own optional
  transformers paths.
* the e-mail recognizer validates top-level domains with ``tldextract``, which fetches the
  public suffix list unless ``TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS`` is empty; the bundled
  snapshot is used instead.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any

from hermes_fed.errors import RedactionError

log = logging.getLogger(__name__)
_LOCK = threading.Lock()
_MASKED = ("transformers", "torch")


def import_presidio(*, need_transformers: bool = False) -> None:
    """Import presidio_analyzer / presidio_anonymizer without touching the network.

    Parameters
    ----------
    need_transformers
        Import with ``transformers``/``torch`` visible (a transformers NER model is
        configured); slow (~7 s) but required for that path.
    """
    os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    with _LOCK:
        if "presidio_analyzer" in sys.modules:
            return
        masked: list[str] = []
        if not need_transformers:
            # Only mask what is not loaded yet: a process that already has torch pays nothing.
            masked = [m for m in _MASKED if m not in sys.modules]
            for name in masked:
                sys.modules[name] = None  # type: ignore[assignment]
        try:
            import presidio_analyzer  # noqa: F401
            import presidio_anonymizer  # noqa: F401
        except ImportError as exc:  # pragma: no cover - environment problem
            raise RedactionError(f"presidio is not importable: {exc}") from exc
        finally:
            for name in masked:
                sys.modules.pop(name, None)


def build_nlp_engine(
    spacy_model: str | None, transformers_ner_dir: str | None
) -> tuple[Any, str | None]:
    """Return ``(nlp_engine, ner_source)``; ``ner_source`` is None when no NER runs.

    Without a configured model the engine is presidio's ``NoOpNlpEngine``: no tokens, no
    lemmas, so only pattern recognizers (and our own key-as-context rules) apply.
    """
    import_presidio(need_transformers=transformers_ner_dir is not None)
    from presidio_analyzer.nlp_engine import NoOpNlpEngine, SpacyNlpEngine

    if spacy_model is not None:
        import spacy

        try:
            nlp = spacy.load(spacy_model)
        except OSError as exc:
            raise RedactionError(
                f"redaction.spacy_model {spacy_model!r} cannot be loaded offline: {exc}"
            ) from exc
        if "ner" not in nlp.pipe_names and "entity_ruler" not in nlp.pipe_names:
            raise RedactionError(
                f"redaction.spacy_model {spacy_model!r} has no ner/entity_ruler component "
                f"(pipes: {nlp.pipe_names})"
            )
        engine: Any = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": spacy_model}])
        engine.nlp = {"en": nlp}
        return engine, f"spacy:{spacy_model}"
    if transformers_ner_dir is not None:
        # Tokens come from a blank spaCy pipeline; entities from the transformers
        # recognizer (see recognizers.TransformersNerRecognizer), so no spaCy model is needed.
        import spacy

        blank: Any = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank"}])
        blank.nlp = {"en": spacy.blank("en")}
        return blank, f"transformers:{transformers_ner_dir}"
    no_op: Any = NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}])
    no_op.load()
    return no_op, None
