"""The redaction gate of the write path (DESIGN.md section 4, invariant 7).

Every string of an event's data and metadata - chat turns, tool-call arguments (JSON
objects), tool results (strings that may hold JSON), dict keys - passes the detector and is
rewritten with session-consistent placeholders before the store sees it.

Invariants (tests cite them)
----------------------------
R1. Nothing a recognizer matched survives in the output, in data or metadata.
R2. Idempotent: redacting a redacted event changes nothing but its report.
R3. JSON stays JSON: a string that held a JSON object/array still parses after redaction.
R4. The report names entity types, counts and recognizers, never values.
R5. ``deny_terms`` in an event's metadata never reaches the store.
R6. A ``user_ref`` (data or subject) that is an e-mail or a phone number is stored as its
    keyed pseudonym (``pseudonyms.py``, U1-U4).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar, cast

import orjson

from hermes_fed.errors import RedactionError
from hermes_fed.privacy.config import RedactionConfig
from hermes_fed.privacy.detector import Detector, Fast, Finding
from hermes_fed.privacy.key_context import (
    WHOLE_VALUE_TYPES,
    context_entity,
    numeric_context_entity,
)
from hermes_fed.privacy.pii_recognizers import deny_list_recognizer
from hermes_fed.privacy.placeholders import (
    InMemoryPlaceholderIndex,
    PlaceholderIndex,
    PlaceholderMinter,
)
from hermes_fed.privacy.pseudonyms import pseudonymous_ref

log = logging.getLogger(__name__)

REPORT_KEY = "redaction"
_MEMO_KEY_TEXT_MAX_LEN = 64  # longer texts are memoised by a keyed digest, not kept
_MEMO_SIZE = 8192
REPORT_VERSION = 1


class _EventLike(Protocol):
    @property
    def stream_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def data(self) -> Mapping[str, Any]: ...
    @property
    def metadata(self) -> Mapping[str, Any]: ...


E = TypeVar("E", bound=_EventLike)


class _Tally:
    """Per-event counts for the report (R4): types and recognizer names, never values;
    and the minter the event's placeholders come from (a batch's stage, on the gate)."""

    __slots__ = ("entities", "matched_by", "mint")

    def __init__(self, minter: PlaceholderMinter) -> None:
        self.mint = minter.placeholder
        self.entities: Counter[str] = Counter()
        self.matched_by: Counter[str] = Counter()

    def add(self, finding: Finding) -> None:
        self.entities[finding.entity_type] += 1
        self.matched_by.update(finding.recognizers)

    def add_context(self, entity_type: str) -> None:
        self.entities[entity_type] += 1
        self.matched_by["JsonKeyContext"] += 1


class Redactor:
    """Redacts events, JSON values and texts with placeholders consistent per session.

    Parameters
    ----------
    config
        What to detect (see :class:`RedactionConfig`).
    tenant_secret
        HMAC key (>= 16 bytes) for placeholder digests; never leaves the node.
    placeholder_index
        Session placeholder state; defaults to an in-memory index.
    """

    def __init__(
        self,
        config: RedactionConfig | None = None,
        tenant_secret: bytes = b"",
        placeholder_index: PlaceholderIndex | None = None,
    ) -> None:
        self.config = config if config is not None else RedactionConfig()
        self.minter = PlaceholderMinter(
            tenant_secret,
            placeholder_index if placeholder_index is not None else InMemoryPlaceholderIndex(),
        )
        self.detector = Detector(self.config)
        self._secret = bytes(tenant_secret)
        self._skip = frozenset(self.config.skip_keys)
        self._session_deny: dict[str, tuple[tuple[str, ...], Fast | None]] = {}
        self._memo: dict[tuple[str | bytes, bool], tuple[Finding, ...]] = {}
        self._memo_key = os.urandom(16)  # digests of this process only

    # --- public API -------------------------------------------------------------------
    @property
    def ner_enabled(self) -> bool:
        return self.detector.ner_enabled

    def redact_text(self, text: str, *, session_key: str) -> str:
        """Redact one free text (no key context)."""
        return self._text(text, None, session_key, self._extra(session_key), _Tally(self.minter), 0)

    def find(self, text: str, *, session_key: str | None = None) -> list[Finding]:
        """Findings in ``text`` without rewriting it (the CLI's ``redact text --explain``)."""
        extra = self._extra(session_key) if session_key is not None else ()
        return self.detector.find(text, extra)

    def redact_value(self, value: Any, *, session_key: str, key: str | None = None) -> Any:
        """Redact any JSON value (object, array, string, number) with ``key`` as context."""
        return self._walk(value, key, session_key, self._extra(session_key), _Tally(self.minter), 0)

    def redact_event(
        self,
        event_type: str,
        data: Mapping[str, Any],
        metadata: Mapping[str, Any],
        *,
        session_key: str,
        minter: PlaceholderMinter | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Return ``(data, metadata)`` redacted; metadata gains the ``redaction`` report.
        ``minter``: numbers from it instead of the redactor's own index (a batch's stage)."""
        minter = minter or self.minter
        meta = {k: v for k, v in metadata.items() if k != REPORT_KEY}
        terms = meta.pop(self.config.deny_terms_metadata_key, None)  # R5
        if terms is not None:
            minter.index.add_deny_terms(session_key, _terms(terms))
        extra = self._extra(session_key, minter.index)
        tally = _Tally(minter)
        new_data = self._walk(dict(data), None, session_key, extra, tally, 0)
        new_meta = self._walk(meta, None, session_key, extra, tally, 0)
        new_meta[REPORT_KEY] = self._report(tally, bool(extra))
        return new_data, new_meta

    def redact_new_events(self, events: Sequence[E], *, index: PlaceholderIndex | None = None) -> list[E]:
        """The store's gate: each event redacted with its ``stream_id`` as session key.
        ``index``: number on it (a batch's :class:`PlaceholderStage`) instead of the
        redactor's own index."""
        minter = self.minter if index is None else self.minter.on(index)
        out: list[E] = []
        for event in events:
            data, metadata = self.redact_event(
                event.type, event.data, event.metadata, session_key=event.stream_id, minter=minter
            )
            changes: dict[str, Any] = {"data": data, "metadata": metadata}
            # U1: a user_ref that is an e-mail or a phone number is stored as its pseudonym,
            # in the data and as the subject (whose key erasure destroys).
            ref = data.get("user_ref")
            if isinstance(ref, str):
                data["user_ref"] = pseudonymous_ref(self._secret, ref)
            subject = getattr(event, "subject", None)
            if isinstance(subject, str):
                changes["subject"] = pseudonymous_ref(self._secret, subject)
            out.append(cast(E, dataclasses.replace(cast(Any, event), **changes)))
        return out

    __call__ = redact_new_events

    def prewarm(self, value: Any, key: str | None = None, depth: int = 0) -> None:
        """Detect the texts of ``value`` ahead of its redaction, as :meth:`_walk` will meet
        them without a session deny list, so that redaction then finds their findings in
        the memo. Mints nothing, writes nothing: the gateway calls it on a call's new
        messages while the model is answering, taking their detection off the answer's
        path. ``key`` and ``depth``: where ``value`` will sit in the event (a text's key
        decides whether it is skipped, JSON in a string is walked)."""
        if isinstance(value, str):
            if key is not None and key in self._skip:
                return
            parsed = self._embedded_json(value)
            if parsed is not None:
                self.prewarm(parsed, key, depth + 1)
                return
            self._detect(value, ())
        elif isinstance(value, Mapping):
            if depth >= self.config.max_depth:
                self._detect(_dumps(value), ())
                return
            for k, v in value.items():
                self._detect(str(k), (), ner=False)
                self.prewarm(v, str(k), depth + 1)
        elif isinstance(value, list | tuple):
            for v in value:
                self.prewarm(v, key, depth + 1)

    # --- internals --------------------------------------------------------------------
    def _report(self, tally: _Tally, session_deny: bool) -> dict[str, Any]:
        ran = list(self.detector.recognizer_names)
        if session_deny:
            ran.append("SessionDenyList")
        return {
            "v": REPORT_VERSION,
            "ner": self.detector.ner_enabled,
            "ner_source": self.detector.ner_source.split(":", 1)[0]
            if self.detector.ner_source else None,
            "recognizers": ran,
            "entities": dict(sorted(tally.entities.items())),
            "matched_by": dict(sorted(tally.matched_by.items())),
            "total": sum(tally.entities.values()),
        }

    def _extra(self, session_key: str, index: PlaceholderIndex | None = None) -> tuple[Fast, ...]:
        terms = (index or self.minter.index).deny_terms(session_key)
        if not terms:
            return ()
        cached = self._session_deny.get(session_key)
        if cached is None or cached[0] != terms:
            cached = (terms, deny_list_recognizer(terms, "SessionDenyList"))
            self._session_deny[session_key] = cached
        return (cached[1],) if cached[1] is not None else ()

    def _walk(self, value: Any, key: str | None, session_key: str, extra: tuple[Fast, ...],
              tally: _Tally, depth: int) -> Any:
        if isinstance(value, str):
            if key is not None and key in self._skip:
                return value
            return self._string(value, key, session_key, extra, tally, depth)
        if isinstance(value, Mapping):
            if depth >= self.config.max_depth:
                return self._text(_dumps(value), None, session_key, extra, tally, depth)
            return {
                self._key(str(k), session_key, extra, tally):
                    self._walk(v, str(k), session_key, extra, tally, depth + 1)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._walk(v, key, session_key, extra, tally, depth + 1) for v in value]
        if isinstance(value, int) and not isinstance(value, bool):
            entity = numeric_context_entity(key, value)
            if entity is not None and entity in self.config.entities:
                tally.add_context(entity)
                return tally.mint(session_key, entity, str(value))
        return value

    def _string(self, value: str, key: str | None, session_key: str,
                extra: tuple[Fast, ...], tally: _Tally, depth: int) -> str:
        parsed = self._embedded_json(value)
        if parsed is not None:
            redacted = self._walk(parsed, key, session_key, extra, tally, depth + 1)
            return value if redacted == parsed else _dumps(redacted)  # R2, R3
        return self._text(value, key, session_key, extra, tally, depth)

    def _embedded_json(self, value: str) -> dict[str, Any] | list[Any] | None:
        """The object or array a string holds as JSON (walked, not scanned as text), if
        ``json_in_strings`` is on."""
        if not (self.config.json_in_strings and value[:1] in "{[" and value[-1:] in "}]"):
            return None
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict | list) else None

    def _key(self, key: str, session_key: str, extra: tuple[Fast, ...], tally: _Tally) -> str:
        """Dict keys: pattern recognizers and deny lists only; a NER model's guess must not
        rename a schema field (``"reason"`` is no person)."""
        return self._replace(key, self._detect(key, extra, ner=False), session_key, tally)

    def _detect(self, text: str, extra: tuple[Fast, ...], *, ner: bool = True) -> list[Finding]:
        """Detector findings, memoised (bounded) for texts seen before without a session
        deny list: findings are a function of the text and the configuration alone, and
        texts repeat -- keys and enum-like values in every event (``content``,
        ``calculator``), a call's first user turn as its trajectory's ``task``, its answer
        as ``final_response``, an agent's system prompt and tool definitions in every
        session. A text longer than a short key is remembered by its keyed BLAKE2b digest
        (a per-process key), so the memo holds no raw text."""
        if len(text) <= 1:
            return []
        if extra:
            return self.detector.find(text, extra, ner=ner)
        short = len(text) <= _MEMO_KEY_TEXT_MAX_LEN
        key: tuple[str | bytes, bool] = (
            text if short else hashlib.blake2b(text.encode("utf-8", "surrogatepass"),
                                               digest_size=16, key=self._memo_key).digest(),
            ner)
        found = self._memo.get(key)
        if found is None:
            found = tuple(self.detector.find(text, extra, ner=ner))
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()  # cheap reset; refills with the hot texts at once
            self._memo[key] = found
        return list(found)

    def _text(self, text: str, key: str | None, session_key: str,
              extra: tuple[Fast, ...], tally: _Tally, depth: int) -> str:
        findings = self._detect(text, extra)
        entity = context_entity(key, text, names=self.config.person_names)
        if entity is not None and entity in self.config.entities:
            stripped = text.strip()
            covered = sum(f.end - f.start for f in findings)
            whole = entity in WHOLE_VALUE_TYPES or not findings
            if whole and not (len(findings) == 1 and covered >= len(stripped)):
                tally.add_context(entity)
                return tally.mint(session_key, entity, stripped)
        return self._replace(text, findings, session_key, tally)

    def _replace(self, text: str, findings: list[Finding], session_key: str,
                 tally: _Tally) -> str:
        if not findings:
            return text
        pieces: list[str] = []
        cursor = 0
        for f in findings:
            pieces.append(text[cursor:f.start])
            pieces.append(tally.mint(session_key, f.entity_type, text[f.start:f.end]))
            tally.add(f)
            cursor = f.end
        pieces.append(text[cursor:])
        return "".join(pieces)


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def _terms(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list | tuple) and all(isinstance(t, str) for t in raw):
        return list(raw)
    raise RedactionError(
        f"metadata deny_terms must be a string or a list of strings, got {type(raw).__name__}"
    )
