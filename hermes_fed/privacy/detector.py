"""The detection half of redaction: presidio recognizers -> resolved, non-overlapping findings.

All recognizers are presidio ``EntityRecognizer`` plugins registered in a
``RecognizerRegistry`` of an ``AnalyzerEngine``; the hot path calls their gated ``find``
directly (the case-folded text computed once per text) and uses the engine's NLP pipeline
only when a NER model is configured.

Resolution (invariant D1: every character of every accepted match is covered by exactly one
finding): matches above the score threshold are merged where they overlap; the merged span
takes the type of the highest-priority member (specific secrets > generic secrets > URL
credentials > structured PII > NER > deny list), so a JWT inside a bearer header is one
``<JWT_1>`` and nothing of either match is left in clear.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hermes_fed.errors import RedactionError
from hermes_fed.privacy.address_recognizer import StreetAddressRecognizer
from hermes_fed.privacy.config import NER_ENTITIES, RedactionConfig
from hermes_fed.privacy.name_recognizer import PersonNameRecognizer
from hermes_fed.privacy.offline import build_nlp_engine
from hermes_fed.privacy.pii_recognizers import (
    NEVER_SUPPRESSED,
    CandidatePhoneRecognizer,
    EmailAddressRecognizer,
    credit_card_recognizer,
    deny_list_recognizer,
    ethereum_recognizer,
    iban_recognizer,
    ip_recognizer,
    not_pii_spans,
    stock_recognizers,
    url_credential_recognizer,
)
from hermes_fed.privacy.placeholders import PLACEHOLDER_RE
from hermes_fed.privacy.rules import GatedRecognizer, RuleRecognizer
from hermes_fed.privacy.secret_recognizers import secret_recognizers

log = logging.getLogger(__name__)

PRIORITY: dict[str, int] = {
    "PRIVATE_KEY": 100, "JWT": 95, "AWS_SECRET_KEY": 92, "AWS_ACCESS_KEY_ID": 91,
    "API_KEY": 90, "BEARER_TOKEN": 80, "URL_CREDENTIAL": 75, "PASSWORD": 70, "SECRET": 65,
    "IBAN_CODE": 61, "CREDIT_CARD": 60, "US_SSN": 58, "EMAIL_ADDRESS": 57, "CRYPTO": 56,
    "MAC_ADDRESS": 55, "IP_ADDRESS": 54, "PHONE_NUMBER": 53,
    "STREET_ADDRESS": 41, "PERSON": 40, "ORGANIZATION": 39, "LOCATION": 38, "DENY_LIST": 30,
}

Fast = RuleRecognizer | GatedRecognizer


@dataclass(frozen=True, slots=True)
class Finding:
    """A resolved span to redact; ``recognizers`` name every recognizer that matched it."""

    entity_type: str
    start: int
    end: int
    score: float
    recognizers: tuple[str, ...]


class Detector:
    """Builds the recognizer set once (well under a second) and finds entities in texts.

    Safe to call from several threads: the pattern recognizers keep no state between
    texts, and calls into a NER model are serialised."""

    def __init__(self, config: RedactionConfig) -> None:
        nlp_engine, self.ner_source = build_nlp_engine(
            config.spacy_model, config.transformers_ner_dir
        )
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

        self.config = config
        wanted = set(config.entities)
        candidates: list[Fast] = [
            *secret_recognizers(), *stock_recognizers(),
            EmailAddressRecognizer(), iban_recognizer(), ip_recognizer(),
            credit_card_recognizer(),
            CandidatePhoneRecognizer(config.phone_regions), url_credential_recognizer(),
            ethereum_recognizer(),
        ]
        if config.person_names and "PERSON" in wanted:
            candidates.append(PersonNameRecognizer())
        if config.street_addresses and "STREET_ADDRESS" in wanted:
            candidates.append(StreetAddressRecognizer())
        tenant_deny = deny_list_recognizer(config.deny_terms, "TenantDenyList")
        if tenant_deny is not None:
            candidates.append(tenant_deny)
        self.fast: list[Fast] = [
            r for r in candidates if wanted.intersection(r.supported_entities)
        ]
        if not config.prefilter:
            for r in self.fast:
                r.gate = None
        self.ner: list[Any] = self._ner_recognizers(wanted)
        self._ner_lock = threading.Lock()
        registry = RecognizerRegistry(recognizers=[*self.fast, *self.ner],
                                      supported_languages=["en"])
        self.engine = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine,
                                     supported_languages=["en"])
        self.recognizer_names: tuple[str, ...] = tuple(
            dict.fromkeys(r.name for r in [*self.fast, *self.ner])
        )
        if self.ner_source is None and wanted.intersection(NER_ENTITIES):
            log.warning(
                "redaction: NO NER MODEL configured (redaction.spacy_model / "
                "redaction.transformers_ner_dir): PERSON is found %s, LOCATION and "
                "ORGANIZATION only through deny lists and JSON keys; every event's "
                "redaction report says ner=false",
                "by the name lexicon and context rules" if config.person_names
                else "ONLY through deny lists (redaction.person_names = false)",
            )

    def _ner_recognizers(self, wanted: set[str]) -> list[Any]:
        entities = sorted(wanted.intersection(NER_ENTITIES))
        if self.ner_source is None or not entities:
            return []
        if self.ner_source.startswith("spacy:"):
            from presidio_analyzer.predefined_recognizers import SpacyRecognizer

            return [SpacyRecognizer(supported_entities=entities)]
        from hermes_fed.privacy.transformers_ner import TransformersNerRecognizer

        assert self.config.transformers_ner_dir is not None
        return [TransformersNerRecognizer(self.config.transformers_ner_dir, entities)]

    @property
    def ner_enabled(self) -> bool:
        return bool(self.ner)

    def find(self, text: str, extra: Sequence[Fast] = (), *, ner: bool = True) -> list[Finding]:
        """Resolved findings in ``text``; ``extra`` are ad-hoc recognizers (session deny list);
        ``ner=False`` skips the NER model (JSON keys: schema names, not prose)."""
        if not text:
            return []
        folded = text.lower()
        raw: list[Any] = []
        try:
            for recognizer in (*self.fast, *extra):
                raw.extend(recognizer.find(text, folded))
            if self.ner and ner:
                with self._ner_lock:  # one NER call at a time (the gateway detects ahead)
                    artifacts = self.engine.nlp_engine.process_text(text, "en")
                    for recognizer in self.ner:
                        raw.extend(recognizer.analyze(text, recognizer.supported_entities,
                                                      artifacts))
        except Exception as exc:  # a recognizer bug must not let raw text through
            raise RedactionError(f"recognizer failed ({type(exc).__name__}); "
                                 "the event is not written") from exc
        if not raw:
            return []
        return self._resolve(text, raw)

    def _resolve(self, text: str, raw: list[Any]) -> list[Finding]:
        threshold = self.config.score_threshold
        wanted = self.config.entities
        kept = [r for r in raw if r.score >= threshold and r.entity_type in wanted]
        if not kept:
            return []
        protected = [m.span() for m in PLACEHOLDER_RE.finditer(text)] if "<" in text else []
        # The hard negatives veto only suppressible types: not scanned for when every match
        # is of a type they never veto (an e-mail address alone, the common case).
        suppressible = any(r.entity_type not in NEVER_SUPPRESSED for r in kept)
        not_pii = not_pii_spans(text) \
            if suppressible and self.config.suppress_agent_false_positives else []
        accepted = []
        for r in kept:
            if any(s < r.end and r.start < e for s, e in protected):
                continue
            if r.entity_type not in NEVER_SUPPRESSED and any(
                s <= r.start and r.end <= e for s, e in not_pii
            ):
                continue
            accepted.append(r)
        accepted.sort(key=lambda r: (r.start, -r.end))
        findings: list[Finding] = []
        group: list[Any] = []
        group_end = -1
        for r in accepted:
            if group and r.start >= group_end:
                findings.append(_merge(group))
                group = []
            group.append(r)
            group_end = max(group_end, r.end) if len(group) > 1 else r.end
        if group:
            findings.append(_merge(group))
        return findings

    def entity_counts(self, findings: Sequence[Finding]) -> Counter[str]:
        return Counter(f.entity_type for f in findings)


def _merge(group: list[Any]) -> Finding:
    best = max(group, key=lambda r: (PRIORITY.get(r.entity_type, 0), r.score, r.end - r.start))
    names = tuple(dict.fromkeys(
        (r.recognition_metadata or {}).get("recognizer_name", "?") for r in group
    ))
    return Finding(best.entity_type, min(r.start for r in group), max(r.end for r in group),
                   best.score, names)
