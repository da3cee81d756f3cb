"""Group commit (``hermes_fed.store.group_commit``): batches of concurrent callers share one
append, and grouping changes no outcome -- each batch all or nothing (invariant 3),
acknowledged only once committed (invariant 6), idempotent and optimistic as alone."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from hermes_fed.errors import ConcurrencyError, SchemaError
from hermes_fed.events import NewEvent
from hermes_fed.store import AppendResult
from hermes_fed.store.group_commit import GroupCommitter, GroupStats

from .helpers import MakeStore, accepted, row_count


class HeldStore:
    """The real store, whose first append waits until the test lets it go: the batches
    submitted meanwhile queue up, so the next group is known."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.release = threading.Event()
        self.entered = threading.Event()
        self.appends: list[int] = []

    def append(self, events: Sequence[NewEvent],
               expected_versions: Mapping[str, int] | None = None) -> list[AppendResult]:
        if not self.appends:
            self.entered.set()
            assert self.release.wait(30)
        self.appends.append(len(events))
        result: list[AppendResult] = self.store.append(events, expected_versions)
        return result


def _queued_behind_first(store: Any, batches: list[tuple[list[NewEvent], dict[str, int] | None]]
                         ) -> tuple[HeldStore, GroupCommitter, list[Any], list[GroupStats]]:
    held = HeldStore(store)
    stats: list[GroupStats] = []
    committer = GroupCommitter(held, on_commit=stats.append)  # type: ignore[arg-type]
    first = committer.submit(accepted("session-first"))
    assert held.entered.wait(30)
    futures = [first] + [committer.submit(events, expected) for events, expected in batches]
    held.release.set()
    return held, committer, futures, stats


def test_waiting_batches_are_committed_as_one_group_each_with_its_own_results(
    make_store: MakeStore,
) -> None:
    # Prepare: six batches queue behind a held first append
    store = make_store()
    batches = [(accepted(f"session-{i}", i + 1), None) for i in range(6)]

    # Execute
    held, committer, futures, stats = _queued_behind_first(store, batches)
    results = [f.result(timeout=30) for f in futures]
    committer.stop()

    # Assert: two appends (the first, then the six together); every batch its own results
    assert held.appends == [1, sum(range(1, 7))]
    assert [s.batches for s in stats] == [1, 6]
    for (events, _), got in zip(batches, results[1:], strict=True):
        assert [r.event_id for r in got] == [e.event_id for e in events]
        assert [r.stream_version for r in got] == list(range(1, len(events) + 1))
        assert not any(r.duplicate for r in got)
    assert row_count(store) == 1 + 21


def test_a_bad_batch_in_a_group_fails_alone(make_store: MakeStore) -> None:
    # Prepare: the middle batch breaks its schema (trajectory_id must be a string)
    store = make_store()
    bad = [NewEvent("session-bad", "OutputAccepted", {"trajectory_id": "ok"}),
           NewEvent("session-bad", "OutputAccepted", {"trajectory_id": 7})]
    batches = [(accepted("session-a", 2), None), (bad, None), (accepted("session-b", 3), None)]

    # Execute
    held, committer, futures, _ = _queued_behind_first(store, batches)
    _first, ok_a, failed, ok_b = futures
    committer.stop()

    # Assert: the group failed, each batch was appended again alone; only the bad one failed,
    # and nothing of it was written
    assert len(ok_a.result(timeout=30)) == 2 and len(ok_b.result(timeout=30)) == 3
    with pytest.raises(SchemaError):
        failed.result(timeout=30)
    assert held.appends[:2] == [1, 2 + 2 + 3]
    assert row_count(store) == 1 + 2 + 3
    assert not store.read_stream("session-bad")


def test_expected_versions_are_checked_batch_by_batch(make_store: MakeStore) -> None:
    # Prepare: session-x is at version 2; one batch expects 2 (right), one expects 0 (stale)
    store = make_store()
    store.append(accepted("session-x", 2))
    right = (accepted("session-x", 1), {"session-x": 2})
    stale = ([NewEvent("session-x", "OutputAccepted", {"trajectory_id": "late"})], {"session-x": 0})
    plain = (accepted("session-y", 2), None)

    # Execute
    held, committer, futures, stats = _queued_behind_first(store, [plain, right, stale, plain])
    committer.stop()

    # Assert: a batch with expectations is its own append; the stale one fails alone
    assert futures[2].result(timeout=30)[0].stream_version == 3
    with pytest.raises(ConcurrencyError):
        futures[3].result(timeout=30)
    # first (held), plain, right, stale (failed), plain: no group mixed an expectation
    assert [s.batches for s in stats] == [1, 1, 1, 1]
    assert held.appends == [1, 2, 1, 1, 2]
    assert futures[4].result(timeout=30)[0].duplicate  # the same events as futures[1]


def test_a_resent_batch_queued_behind_its_original_is_answered_as_a_duplicate(make_store: MakeStore) -> None:
    # Prepare: a retry of a batch queued right behind its original
    store = make_store()
    events = accepted("session-r", 3)

    # Execute
    held, committer, futures, stats = _queued_behind_first(store, [(events, None), (events, None)])
    original, resent = futures[1].result(timeout=30), futures[2].result(timeout=30)
    committer.stop()

    # Assert: the resend starts a group of its own, and the store's idempotency answers it
    assert [s.batches for s in stats] == [1, 1, 1] and held.appends == [1, 3, 3]
    assert not any(r.duplicate for r in original) and all(r.duplicate for r in resent)
    assert [r.position for r in resent] == [r.position for r in original]
    assert row_count(store) == 1 + 3


def test_concurrent_callers_lose_nothing_and_stop_drains_the_queue(make_store: MakeStore) -> None:
    # Prepare
    store = make_store()
    committer = GroupCommitter(store)
    results: dict[int, list[AppendResult]] = {}

    def caller(k: int) -> None:
        for j in range(10):
            results[k * 10 + j] = committer.append(accepted(f"session-{k}-{j}", 2))

    # Execute: 8 threads x 10 batches, then stop
    threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    committer.stop()

    # Assert: every batch committed once, at distinct positions; no append after stop
    positions = [r.position for got in results.values() for r in got]
    assert len(results) == 80 and len(set(positions)) == 160 == row_count(store)
    with pytest.raises(RuntimeError, match="stopping"):
        committer.submit(accepted("session-late"))


def test_an_idle_committer_lets_a_lone_caller_append_on_its_own_thread(
    make_store: MakeStore,
) -> None:
    # Prepare: an idle committer (its thread started by a first, finished append)
    store = make_store()
    stats: list[GroupStats] = []
    committer = GroupCommitter(store, on_commit=stats.append)
    committer.append(accepted("session-first"))

    # Execute
    results = committer.append_if_idle(accepted("session-alone", 3))
    committer.stop()

    # Assert: committed right away, counted as a group of one, nothing else appended
    assert results is not None and [r.stream_version for r in results] == [1, 2, 3]
    assert [(s.batches, s.events) for s in stats] == [(1, 1), (1, 3)]
    assert row_count(store) == 4


def test_a_busy_committer_refuses_an_own_thread_append_and_waits_for_one(
    make_store: MakeStore,
) -> None:
    # Prepare: the appender is held inside a group's append
    store = make_store()
    held = HeldStore(store)
    committer = GroupCommitter(held)  # type: ignore[arg-type]
    first = committer.submit(accepted("session-first"))
    assert held.entered.wait(30)

    # Execute / Assert: while it commits, a lone caller is told to submit instead
    assert committer.append_if_idle(accepted("session-refused")) is None
    held.release.set()
    first.result(timeout=30)

    # ... and while a caller appends on its own thread, a batch submitted meanwhile waits
    # for it and is committed after it (one append at a time, in order)
    gate = threading.Event()
    later: list[Any] = []

    class Slow:
        def append(self, events: Sequence[NewEvent],
                   expected_versions: Mapping[str, int] | None = None) -> list[AppendResult]:
            if not later:
                later.append(committer.submit(accepted("session-later")))
                assert not gate.wait(0.2)  # the appender does not start it meanwhile
                assert not later[0].done()
            result: list[AppendResult] = held.append(events, expected_versions)
            return result

    committer._store = Slow()  # type: ignore[assignment]
    own = committer.append_if_idle(accepted("session-own", 2))
    assert own is not None and len(own) == 2
    assert len(later[0].result(timeout=30)) == 1
    committer.stop()
    assert held.appends[-3:] == [1, 2, 1]
    assert row_count(store) == 1 + 2 + 1


def test_exclusive_holds_every_append_off_until_its_block_ends(make_store: MakeStore) -> None:
    # Prepare: a committer that has appended once (its thread idle)
    store = make_store()
    committer = GroupCommitter(store)
    committer.append(accepted("session-first"))

    # Execute: inside exclusive(), a lone caller asks to append and a batch is submitted
    with committer.exclusive():
        refused = committer.append_if_idle(accepted("session-own"))
        queued = committer.submit(accepted("session-queued", 2))
        with pytest.raises(TimeoutError):  # the appender does not take it meanwhile
            queued.result(timeout=0.3)
        rows_inside = row_count(store)
    results = queued.result(timeout=30)
    committer.stop()

    # Assert: nothing was appended while the block ran; the batch committed after it
    assert refused is None
    assert rows_inside == 1
    assert [r.stream_version for r in results] == [1, 2]
    assert row_count(store) == 3
