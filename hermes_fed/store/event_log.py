"""The tenant's event log: an :class:`EventStore` that validates, seals and chains each batch
(``sealing.py``) and keeps the rows in a :class:`~hermes_fed.store.backend.Backend`
(``sqlite.py``, ``postgres.py``, ``memory.py``).

Appends are serialised per log (invariant 4) by the backend's write lock, taken after the
batch is sealed: positions are assigned under it, so position order is commit order and a
reader of ``position > checkpoint`` never skips an event.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence

from hermes_fed.errors import KeyringError
from hermes_fed.events import DEFAULT_CATALOG, Catalog, NewEvent, StoredEvent
from hermes_fed.events.erasure import SubjectErased

from .backend import AppendTransaction, Backend, SubjectKey, TransactionHook
from .keyring import Keyring
from .port import (
    AppendResult,
    EventStore,
    Gate,
    GatedBatch,
    PlaceholderConflict,
    PlaceholderRow,
    VerifyReport,
)
from .reading import RowDecoder
from .sealing import Encoded, Sealed, chain_batch, check_envelope, encode_batch, seal_batch, subject_keys_for
from .verify import verify_rows

log = logging.getLogger(__name__)

_STREAM_SUBJECT_CACHE = 100_000
_GATE_ATTEMPTS = 20  # appends retried after a placeholder conflict (another writer, same session)


class EventLog(EventStore):
    """An :class:`EventStore` on a storage backend."""

    def __init__(
        self,
        backend: Backend,
        tenant_id: str,
        *,
        keyring: Keyring | None = None,
        gate: Gate | None = None,
        catalog: Catalog = DEFAULT_CATALOG,
    ) -> None:
        if not tenant_id or len(tenant_id) > 64:
            raise ValueError(f"tenant_id must be 1..64 characters, got {tenant_id!r}")
        if keyring is not None and keyring.tenant_id != tenant_id:
            raise KeyringError(f"key ring belongs to tenant {keyring.tenant_id!r}, not {tenant_id!r}")
        self.backend = backend
        self.tenant_id = tenant_id
        self.keyring = keyring
        self.gate = gate
        self.catalog = catalog
        self._stream_subjects: dict[str, str | None] = {}
        self._lock = threading.Lock()  # one appender per store at a time (the backend's lock spans processes)
        self._decoder = RowDecoder(tenant_id, keyring, catalog, backend.subject_keys, backend.subject_key)
        backend.create()
        if keyring is not None:  # refuse a key ring whose keys differ from those the log was written with
            backend.record_fingerprints({k: keyring.fingerprint(k) for k in keyring.keys})

    # --- append ---------------------------------------------------------------------------
    def append(
        self,
        events: Sequence[NewEvent],
        expected_versions: Mapping[str, int] | None = None,
        *,
        within: TransactionHook | None = None,
    ) -> list[AppendResult]:
        """See :meth:`EventStore.append`. ``within`` runs inside the append's transaction,
        under the write lock, after the rows are inserted: what it writes (through
        :meth:`AppendTransaction.execute`) commits with the events or not at all."""
        if not events:
            return []
        for attempt in range(_GATE_ATTEMPTS):
            gated = self.gate(events) if self.gate is not None else events
            batch = gated if isinstance(gated, GatedBatch) else GatedBatch(gated)
            try:
                results = self._append(batch.events, expected_versions or {}, within, batch.placeholders)
            except PlaceholderConflict:
                # Another writer numbered a value of these sessions first; nothing was
                # written. The gate numbers the batch again from what is stored now.
                if batch.conflicted is not None:
                    batch.conflicted()
                if attempt == _GATE_ATTEMPTS - 1:
                    raise
                log.info("event=placeholder_conflict attempt=%d", attempt + 1)
                continue
            if batch.committed is not None:
                batch.committed()
            return results
        raise AssertionError("unreachable")  # pragma: no cover

    def _append(
        self,
        events: Sequence[NewEvent],
        expected_versions: Mapping[str, int],
        within: TransactionHook | None,
        placeholders: Sequence[PlaceholderRow],
    ) -> list[AppendResult]:
        catalog = self.catalog
        schemas = [check_envelope(catalog, e) for e in events]
        batch_subjects = self._stream_subjects_of(
            e.stream_id
            for e, schema in zip(events, schemas, strict=True)
            if e.subject is None and schema.personal
        )
        # Validation and encoding happen before any lock is taken, and every event is
        # validated before any subject key is created, so a bad batch writes nothing.
        encoded = encode_batch(events, schemas, self.keyring, batch_subjects)
        # One transaction (one connection) for the whole append: the subject-key lookup,
        # then the write.
        with self.backend.transaction() as tx:
            keys, made = self._subject_keys(tx, {s for s, _, personal in encoded if personal is not None})
            sealed = seal_batch(events, schemas, encoded, self.keyring, keys)
            results = self._write(tx, sealed, expected_versions, made, within, placeholders)
        for stream_id, subject_id in batch_subjects.items():
            if subject_id is not None:
                self._stream_subjects.setdefault(stream_id, subject_id)
        return results

    def _subject_keys(
        self, tx: AppendTransaction, wanted: set[str | None]
    ) -> tuple[dict[str, tuple[bytes, str]], list[SubjectKey]]:
        """The (key, ref) of each subject, one query per batch (a transaction per event cost
        more than the whole append), and the keys that had to be made."""
        subjects = {s for s in wanted if s is not None}
        stored = tx.subject_keys(sorted(subjects)) if subjects else []
        keys, made = subject_keys_for(self.keyring, subjects, stored)
        for subject_id, (key, ref) in keys.items():
            self._decoder.remember(subject_id, ref, key)
        return keys, made

    def _write(
        self,
        tx: AppendTransaction,
        sealed: list[Sealed],
        expected: Mapping[str, int],
        new_keys: Sequence[SubjectKey],
        within: TransactionHook | None,
        placeholders: Sequence[PlaceholderRow] = (),
    ) -> list[AppendResult]:
        with self._lock:
            state = tx.lock(
                list(dict.fromkeys(s.event_id for s in sealed)),
                list(dict.fromkeys(s.event.stream_id for s in sealed)),
            )
            if placeholders:
                # First, so a conflict costs no row work; in the events' transaction, so
                # no event is ever stored with a placeholder the index does not know.
                tx.insert_placeholders(placeholders)
            rows, results = chain_batch(self.tenant_id, sealed, state, expected, self.backend.blob)
            if rows:
                tx.insert(rows)
            if new_keys:
                # New subject keys are stored in the events' own transaction: all or nothing.
                tx.insert_subject_keys(new_keys)
            if within is not None:
                within(tx)
            tx.commit()
        return [results[s.event_id] for s in sealed]

    def _stream_subjects_of(self, stream_ids: Iterable[str]) -> dict[str, str | None]:
        """Subjects of streams: that of each stream's first event naming one (append-only,
        so once known it never changes and is cached). One query per 500 streams."""
        if len(self._stream_subjects) > _STREAM_SUBJECT_CACHE:  # a daemon sees endless sessions
            self._stream_subjects.clear()
        asked = list(dict.fromkeys(stream_ids))
        wanted = [s for s in asked if s not in self._stream_subjects]
        for i in range(0, len(wanted), 500):
            rows = self.backend.stream_subjects(wanted[i : i + 500])
            for stream_id, subject_id, _ in sorted(rows, key=lambda r: -r[2]):
                self._stream_subjects[stream_id] = subject_id
        return {s: self._stream_subjects[s] for s in asked if s in self._stream_subjects}

    def erase_subject(self, user_ref: str, reason: str = "") -> int:
        """See :meth:`EventStore.erase_subject`. ``user_ref`` may be the original id: one
        that is personal data (an e-mail, a phone number) is stored as its keyed pseudonym
        (``hermes_fed.privacy.pseudonyms``, applied by the redaction gate), so the keys of
        both the pseudonym's subject and the raw id's (a log written before the gate
        pseudonymised, or without a gate) are destroyed; the erasure records the pseudonym."""
        if self.keyring is None:
            raise KeyringError("erasure needs a key ring: without one there are no subject keys to destroy")
        # The store's one use of privacy: erasure must find what the gate stored.
        from hermes_fed.privacy.pseudonyms import pseudonymous_ref

        stored_ref = pseudonymous_ref(self.keyring.hmac_secret, user_ref)
        subject_id = self.keyring.subject_id(stored_ref)
        shredded = list(dict.fromkeys((subject_id, self.keyring.subject_id(user_ref))))
        event = NewEvent(
            stream_id=f"subject-{subject_id}",
            type=SubjectErased.TYPE,
            data={"user_ref": stored_ref, "reason": reason},
            subject=stored_ref,
        )
        schema = check_envelope(self.catalog, event)
        encoded: list[Encoded] = encode_batch([event], [schema], self.keyring, {})

        def shred(tx: AppendTransaction) -> None:
            for shredded_id in shredded:
                tx.delete_subject_keys(shredded_id)

        with self.backend.transaction() as tx:
            keys, made = self._subject_keys(tx, {subject_id})
            sealed = seal_batch([event], [schema], encoded, self.keyring, keys)
            # The keys are destroyed in the same transaction that records the erasure.
            (result,) = self._write(tx, sealed, {}, made, shred)
        for shredded_id in shredded:
            self._decoder.erased(shredded_id)
        log.info("subject erased subject_id=%s position=%d", subject_id, result.position)
        return result.position

    # --- read -----------------------------------------------------------------------------
    def read(
        self,
        after: int = 0,
        limit: int | None = None,
        *,
        types: Collection[str] | None = None,
        lazy: bool = False,
    ) -> Iterator[StoredEvent]:
        decoder = self._decoder
        decoder.forget()
        if types is not None:
            types = sorted(set(types))
            if not types:
                return
        decode = decoder.decode if lazy or self.keyring is None else decoder.decode_eager
        for chunk in self.backend.read(after, limit, types):
            decoder.prefetch(chunk)
            for row in chunk:
                yield decode(row, lazy)

    def read_stream(self, stream_id: str, after_version: int = 0) -> list[StoredEvent]:
        decoder = self._decoder
        decoder.forget()
        return [
            decoder.decode(r) for chunk in self.backend.read_stream(stream_id, after_version) for r in chunk
        ]

    def head(self) -> int:
        return self.backend.head()

    def verify(self) -> VerifyReport:
        return verify_rows(self.tenant_id, (r for chunk in self.backend.read(0, None, None) for r in chunk))

    def check_readable(self) -> None:
        """Decode every event (raises the named error of the first bad one)."""
        for _ in self.read():
            pass

    def close(self) -> None:
        self.backend.close()
