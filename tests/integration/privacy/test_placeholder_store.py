"""The durable placeholder index: numbering survives restarts, concurrent writers and
processes, and a kill -9; new numbers commit with the events that use them (P4)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from hermes_fed.errors import ConcurrencyError, KeyringError
from hermes_fed.events import NewEvent
from hermes_fed.privacy import RedactionConfig, Redactor
from hermes_fed.privacy.placeholder_store import StorePlaceholderIndex, staged_gate
from hermes_fed.store import Keyring

from . import placeholder_workers


def test_placeholders_are_stable_across_a_restart(make_store: Callable[..., object]) -> None:
    # Prepare: two "processes" (redactors) over the same database, one after the other
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    first = Redactor(RedactionConfig(), keyring.hmac_secret, StorePlaceholderIndex(store, keyring))  # type: ignore[attr-defined]
    # Execute
    before = first.redact_text("write to ann@example.com or bob@example.com", session_key="session-1")
    restarted = Redactor(RedactionConfig(), keyring.hmac_secret, StorePlaceholderIndex(store, keyring))  # type: ignore[attr-defined]
    after = restarted.redact_text("bob@example.com replied; cc carol@example.com", session_key="session-1")
    other = restarted.redact_text("bob@example.com", session_key="session-2")
    # Assert: P1 across processes, P2 (a new value gets the next number), sessions independent
    assert before == "write to <EMAIL_ADDRESS_1> or <EMAIL_ADDRESS_2>"
    assert after == "<EMAIL_ADDRESS_2> replied; cc <EMAIL_ADDRESS_3>"
    assert other == "<EMAIL_ADDRESS_1>"


def test_concurrent_writers_never_share_a_number(make_store: Callable[..., object]) -> None:
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    indexes = [StorePlaceholderIndex(store, keyring) for _ in range(4)]  # type: ignore[attr-defined]
    digests = [bytes([i]) * 32 for i in range(40)]
    got: dict[bytes, set[int]] = {d: set() for d in digests}
    lock = threading.Lock()

    def work(index: StorePlaceholderIndex) -> None:
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


@pytest.mark.sql  # reads the sealed table with SQL
def test_deny_terms_are_sealed_and_read_back(make_store: Callable[..., object]) -> None:
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    index = StorePlaceholderIndex(store, keyring)  # type: ignore[attr-defined]
    index.add_deny_terms("session-9", ["Globex Corp", "Hank Scorpio"])
    index.add_deny_terms("session-9", ["Hank Scorpio", "  "])
    assert StorePlaceholderIndex(store, keyring).deny_terms("session-9") == (
        "Globex Corp",
        "Hank Scorpio",
    )  # type: ignore[attr-defined]
    with store.engine.connect() as conn:  # type: ignore[attr-defined]
        raw = b"".join(bytes(r[0]) for r in conn.exec_driver_sql("SELECT sealed FROM redaction_deny_terms"))
    assert b"Scorpio" not in raw


@pytest.mark.sql
@pytest.mark.parametrize("session", ["session-a"])
def test_wrong_key_cannot_read_deny_terms(make_store: Callable[..., object], session: str) -> None:
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    StorePlaceholderIndex(store, keyring).add_deny_terms(session, ["Initech"])  # type: ignore[attr-defined]
    stranger = Keyring.generate("acme")
    with pytest.raises(KeyringError, match="fail authentication"):
        StorePlaceholderIndex(store, stranger).deny_terms(session)  # type: ignore[attr-defined]


# --- P4: numbers are written in the append's transaction --------------------------------
def _gated(store: object, keyring: Keyring) -> StorePlaceholderIndex:
    """Put the node's staged gate on ``store``; returns its index."""
    index = StorePlaceholderIndex(store, keyring)  # type: ignore[arg-type]
    store.gate = staged_gate(Redactor(RedactionConfig(), keyring.hmac_secret), index)  # type: ignore[attr-defined]
    return index


def _judged(stream: str, text: str) -> list[NewEvent]:
    return [NewEvent(stream_id=stream, type="TrajectoryJudged",
                     data={"trajectory_id": "t-1", "judge": "j", "score": 0.5, "rationale": text})]


def test_p4_numbers_commit_with_the_events_or_not_at_all(make_store: Callable[..., object]) -> None:
    # Prepare
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    _gated(store, keyring)
    store.append(_judged("session-1", "from ann@example.com"))  # type: ignore[attr-defined]
    # Execute: an append that fails (wrong expected version) after numbering bob
    with pytest.raises(ConcurrencyError):
        store.append(_judged("session-1", "from bob@example.com"), {"session-1": 0})  # type: ignore[attr-defined]
    store.append(_judged("session-1", "from carol@example.com"))  # type: ignore[attr-defined]
    # Assert: bob's number died with its append; carol took it; the index holds what is used
    texts = [e.data["rationale"] for e in store.read_stream("session-1")]  # type: ignore[attr-defined]
    assert texts == ["from <EMAIL_ADDRESS_1>", "from <EMAIL_ADDRESS_2>"]
    rows = store.backend.placeholders(["session-1"])  # type: ignore[attr-defined]
    assert sorted(r.number for r in rows) == [1, 2]


def test_p4_a_writer_numbering_from_a_stale_view_numbers_again(make_store: Callable[..., object]) -> None:
    # Prepare: two writers (own stores and caches) on one log; the first caches the
    # session while it is empty
    keyring = Keyring.generate("acme")
    first, second = make_store(keyring=keyring), make_store(keyring=keyring)
    _gated(first, keyring).committed(["session-1"])
    _gated(second, keyring)
    second.append(_judged("session-1", "bob@example.com"))  # type: ignore[attr-defined]
    # Execute: the first numbers ann as 1 (stale), collides, and numbers again
    first.append(_judged("session-1", "ann@example.com"))  # type: ignore[attr-defined]
    first.append(_judged("session-1", "bob@example.com and ann@example.com"))  # type: ignore[attr-defined]
    # Assert: P1 and P2 across the two writers
    texts = [e.data["rationale"] for e in first.read_stream("session-1")]  # type: ignore[attr-defined]
    assert texts == ["<EMAIL_ADDRESS_1>", "<EMAIL_ADDRESS_2>", "<EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>"]


@pytest.mark.sql
def test_a_batch_reads_its_sessions_deny_terms_and_numbers_together(
        make_store: Callable[..., object]) -> None:
    # Prepare: one process numbered ann in session-1 and sealed a deny term for it
    keyring = Keyring.generate("acme")
    first = make_store(keyring=keyring)
    _gated(first, keyring)
    first.append(_judged("session-1", "from ann@example.com"))  # type: ignore[attr-defined]
    StorePlaceholderIndex(first, keyring).add_deny_terms(  # type: ignore[arg-type]
        "session-1", ["Initech"])
    # Execute: another process, nothing cached, stages a batch of session-1 and a new
    # session, then appends through its gate
    second = make_store(keyring=keyring)
    stage = _gated(second, keyring).stage(["session-1", "session-2"])
    staged = (stage.deny_terms("session-1"), stage.deny_terms("session-2"),
              dict(stage.sessions["session-1"].top), dict(stage.sessions["session-2"].top))
    second.append(_judged("session-1", "ann@example.com and bob@example.com of Initech"))  # type: ignore[attr-defined]
    # Assert: the stage read both sessions' numbers and deny terms; the batch used them
    assert staged == (("Initech",), (), {"EMAIL_ADDRESS": 1}, {})
    texts = [e.data["rationale"] for e in second.read_stream("session-1")]  # type: ignore[attr-defined]
    assert texts[1] == "<EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2> of <DENY_LIST_1>"


def test_erasure_under_the_staged_gate(make_store: Callable[..., object]) -> None:
    # Prepare: a session of a subject, written through the gate
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    _gated(store, keyring)
    user = "u-77"
    store.append([  # type: ignore[attr-defined]
        NewEvent("session-7", "SessionStarted", {"user_ref": user, "model_version": "m"}, subject=user),
        NewEvent("session-7", "TrajectoryRecorded", {
            "trajectory_id": "t-7", "task": "mail dan@example.com", "task_type": "support",
            "messages": [{"role": "user", "content": "mail dan@example.com"}], "tools": [],
            "final_response": "sent to dan@example.com"}),
    ])
    # Execute: erase, then the session goes on
    store.erase_subject(user)  # type: ignore[attr-defined]
    store.append(_judged("session-7", "dan@example.com and eve@example.com"))  # type: ignore[attr-defined]
    # Assert: the subject's fields are gone; numbering goes on where it was
    events = store.read_stream("session-7")  # type: ignore[attr-defined]
    assert events[0].erased_fields == ("user_ref",) and events[1].erased
    assert events[2].data["rationale"] == "<EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>"
    assert store.verify().ok  # type: ignore[attr-defined]


REPO = Path(__file__).resolve().parents[3]
_RATIONALE = re.compile(r"^v(\d+) wrote from <EMAIL_ADDRESS_(\d+)>$")


def _writer(backend: tuple[str, str | None], keyring: Keyring, number: int, batches: int,
            go: bool = True) -> subprocess.Popen[str]:
    """A writer process; with ``go`` it starts at once, else when :func:`_start` says so."""
    url, schema = backend
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.privacy.placeholder_workers", url, schema or "",
         str(number), str(batches)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdin is not None
    proc.stdin.write(keyring.to_json().replace("\n", " ") + "\n")
    proc.stdin.flush()
    if go:
        _start([proc])
    return proc


def _start(procs: list[subprocess.Popen[str]]) -> None:
    """Wait until every writer is READY (polling its output, never sleeping), then let
    them all go at once."""
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "READY", line + (proc.stderr.read() if proc.stderr else "")
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.stdin = None  # sent; communicate() must not flush it again


def _numbers_in_log(store: object) -> dict[int, set[int]]:
    """value index -> the placeholder numbers its e-mail got in the stored events."""
    seen: dict[int, set[int]] = {}
    for event in store.read_stream(placeholder_workers.SESSION):  # type: ignore[attr-defined]
        m = _RATIONALE.match(event.data["rationale"])
        assert m is not None, event.data["rationale"]
        seen.setdefault(int(m[1]), set()).add(int(m[2]))
    return seen


@pytest.mark.sql
def test_processes_redacting_one_session_agree_on_every_placeholder(
    make_store: Callable[..., object], backend: tuple[str, str | None]
) -> None:
    # Prepare: two writer processes, one session, values drawn from one pool
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    writers = [_writer(backend, keyring, n, 12, go=False) for n in range(2)]
    # Execute: both start together once they are ready
    _start(writers)
    outputs = [w.communicate(timeout=120) for w in writers]
    # Assert: every writer finished; one number per value, one value per number (P1, P2
    # across processes), and the index holds exactly the numbers the events use
    for w, (_, err) in zip(writers, outputs, strict=True):
        assert w.returncode == 0, err
    seen = _numbers_in_log(store)
    assert sum(out.count("ACK") for out, _ in outputs) == 24
    assert all(len(numbers) == 1 for numbers in seen.values()), seen
    used = [n for numbers in seen.values() for n in numbers]
    assert len(used) == len(set(used))
    rows = store.backend.placeholders([placeholder_workers.SESSION])  # type: ignore[attr-defined]
    assert sorted(r.number for r in rows) == sorted(used) == list(range(1, len(used) + 1))


@pytest.mark.sql
def test_kill9_mid_stream_leaves_no_event_with_an_unknown_placeholder(
    make_store: Callable[..., object], backend: tuple[str, str | None]
) -> None:
    # Prepare: a writer appending forever through the staged gate
    keyring = Keyring.generate("acme")
    store = make_store(keyring=keyring)
    writer = _writer(backend, keyring, 0, 0)
    assert writer.stdout is not None
    # Execute: SIGKILL after the 6th acknowledgement (it is mid-batch by then), then restart
    acks = 0
    for line in writer.stdout:
        acks += line.startswith("ACK")
        if acks >= 6:
            writer.send_signal(signal.SIGKILL)
            break
    writer.wait(timeout=30)
    restarted = _writer(backend, keyring, 1, 4)
    _, err = restarted.communicate(timeout=60)
    # Assert: the killed writer left no number the index lacks, nor a number no event uses;
    # the restarted writer numbered the same values the same way
    assert writer.returncode == -signal.SIGKILL and restarted.returncode == 0, err
    seen = _numbers_in_log(store)
    assert all(len(numbers) == 1 for numbers in seen.values()), seen
    rows = store.backend.placeholders([placeholder_workers.SESSION])  # type: ignore[attr-defined]
    assert sorted(r.number for r in rows) == sorted(n for ns in seen.values() for n in ns)
    fresh = Redactor(RedactionConfig(), keyring.hmac_secret, StorePlaceholderIndex(store, keyring))  # type: ignore[arg-type]
    for value, (number,) in seen.items():
        again = fresh.redact_text(placeholder_workers.email(value), session_key=placeholder_workers.SESSION)
        assert again == f"<EMAIL_ADDRESS_{number}>"
