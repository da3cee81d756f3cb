"""The durable placeholder index: numbering survives restarts and concurrent writers."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from hermes_fed.errors import KeyringError
from hermes_fed.privacy import RedactionConfig, Redactor
from hermes_fed.privacy.placeholder_store import SqlPlaceholderIndex
from hermes_fed.store import Keyring

pytestmark = pytest.mark.sql  # the index is a table beside the log


def test_placeholders_are_stable_across_a_restart(make_store: Callable[..., object]) -> None:
    # Prepare: two "processes" (redactors) over the same database, one after the other
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    first = Redactor(RedactionConfig(), keyring.hmac_secret, SqlPlaceholderIndex(store.engine, keyring))  # type: ignore[attr-defined]
    # Execute
    before = first.redact_text("write to ann@example.com or bob@example.com", session_key="session-1")
    restarted = Redactor(RedactionConfig(), keyring.hmac_secret, SqlPlaceholderIndex(store.engine, keyring))  # type: ignore[attr-defined]
    after = restarted.redact_text("bob@example.com replied; cc carol@example.com", session_key="session-1")
    other = restarted.redact_text("bob@example.com", session_key="session-2")
    # Assert: P1 across processes, P2 (a new value gets the next number), sessions independent
    assert before == "write to <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>"
    assert after == "<EMAIL_ADDRESS_2> replied; cc <EMAIL_ADDRESS_3>"
    assert other == "<EMAIL_ADDRESS_1>"


def test_concurrent_writers_never_share_a_number(make_store: Callable[..., object]) -> None:
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    indexes = [SqlPlaceholderIndex(store.engine, keyring) for _ in range(4)]  # type: ignore[attr-defined]
    digests = [bytes([i]) * 32 for i in range(40)]
    got: dict[bytes, set[int]] = {d: set() for d in digests}
    lock = threading.Lock()

    def work(index: SqlPlaceholderIndex) -> None:
        for d in digests:
            n = index.number_for("session-x", "EMAIL_ADDRESS", d)
            with lock:
                got[d].add(n)

    threads = [threading.Thread(target=work, args=(ix,)) for ix in indexes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Every digest got exactly one number, and the numbers are 1..40 without repeats
    assert all(len(v) == 1 for v in got.values())
    assert sorted(n for v in got.values() for n in v) == list(range(1, 41))


def test_deny_terms_are_sealed_and_read_back(make_store: Callable[..., object]) -> None:
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    index = SqlPlaceholderIndex(store.engine, keyring)  # type: ignore[attr-defined]
    index.add_deny_terms("session-9", ["Globex Corp", "Hank Scorpio"])
    index.add_deny_terms("session-9", ["Hank Scorpio", "  "])
    assert SqlPlaceholderIndex(store.engine, keyring).deny_terms("session-9") == (
        "Globex Corp",
        "Hank Scorpio",
    )  # type: ignore[attr-defined]
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        raw = b"".join(bytes(r[0]) for r in conn.exec_driver_sql("SELECT sealed FROM redaction_deny_terms"))
    assert b"Scorpio" not in raw


@pytest.mark.parametrize("session", ["session-a"])
def test_wrong_key_cannot_read_deny_terms(make_store: Callable[..., object], session: str) -> None:
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    SqlPlaceholderIndex(store.engine, keyring).add_deny_terms(session, ["Initech"])  # type: ignore[attr-defined]
    stranger = Keyring.generate("acme")
    with pytest.raises(KeyringError, match="fail authentication"):
        SqlPlaceholderIndex(store.engine, stranger).deny_terms(session)  # type: ignore[attr-defined]
