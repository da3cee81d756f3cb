"""The gateway's session cache (``tenant_node.gateway.capture.SessionCache``) on a real
SQLite log: a session not cached is rebuilt from its stream, by the reader thread or, for
a lone call (``inline``), on the caller's thread, with the same state either way."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from hermes_fed.serving.assembly import SessionState, TurnDigester
from hermes_fed.serving.capture import CallContext, call_events
from hermes_fed.serving.conversion import from_openai_messages
from hermes_fed.store import Keyring, SqlEventStore, open_store
from tenant_node.gateway.capture import SessionCache

STREAM = "session-" + "cd" * 16


class CountingReader(ThreadPoolExecutor):
    """A real one-thread executor that counts what it was given."""

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="test-reader")
        self.submitted = 0
        self.threads: set[str] = set()

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.submitted += 1

        def named() -> Any:
            self.threads.add(threading.current_thread().name)
            return fn(*args, **kwargs)

        return super().submit(named)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlEventStore]:
    s = open_store(f"sqlite:///{tmp_path / 'log.db'}", "acme", keyring=Keyring.generate("acme"))
    yield s
    s.close()


def _record_one_call(store: SqlEventStore) -> tuple[str, list[int]]:
    """One call of a session, appended as the gateway appends it; its trajectory id and the
    chains a follow-up call repeats."""
    digester = TurnDigester(b"s" * 32)
    state = SessionState(STREAM)
    turns = from_openai_messages([{"role": "user", "content": "What is 2+3?"}])
    answer = from_openai_messages([{"role": "assistant", "content": "5"}])[0]
    chains = digester.chain([*turns, answer])
    reservation = state.reserve(chains[:-1], "user", 1000.0, 60.0)
    context = CallContext(STREAM, "user-1", "base", None, None, "chat")
    store.append(call_events(context, reservation, turns, answer, [], chains,
                             digester.tools_key([]), None))
    return reservation.trajectory_id, chains


@pytest.mark.parametrize("inline", [False, True])
def test_a_session_not_cached_is_rebuilt_from_its_stream(store: SqlEventStore,
                                                          inline: bool) -> None:
    # Prepare: a call recorded before this cache existed (a restart, an eviction)
    trajectory_id, chains = _record_one_call(store)
    reader = CountingReader()
    cache = SessionCache(store, capacity=8, reader=reader)

    # Execute
    state = asyncio.run(cache.get(STREAM, inline=inline))
    reader.shutdown(wait=True)

    # Assert: the recorded trajectory is known either way (a follow-up extends it), the
    # state is cached, and only the reader path used the reader's thread
    assert state.holds(trajectory_id)
    follow_up = state.reserve([*chains, chains[-1] + 1], "user", 1001.0, 60.0)
    assert follow_up.trajectory_id == trajectory_id and not follow_up.new
    assert cache.peek(STREAM) is state and len(cache) == 1
    assert reader.submitted == (0 if inline else 1)
    assert reader.threads == (set() if inline else {"test-reader_0"})


def test_an_inline_read_waits_for_a_load_already_under_way(store: SqlEventStore) -> None:
    # Prepare: the reader holds another session's load, so the loop is not idle
    _record_one_call(store)
    reader = CountingReader()
    cache = SessionCache(store, capacity=8, reader=reader)
    gate = threading.Event()
    original = cache._load

    def held(stream_id: str) -> SessionState:
        if stream_id != STREAM:
            assert gate.wait(30)
        return original(stream_id)

    cache._load = held  # type: ignore[method-assign]

    async def both() -> tuple[SessionState, SessionState]:
        other = asyncio.ensure_future(cache.get("session-" + "ef" * 16))
        await asyncio.sleep(0)  # the other load is under way in the reader
        asyncio.get_running_loop().call_later(0.05, gate.set)
        mine = await cache.get(STREAM, inline=True)
        return mine, await other

    # Execute
    mine, other = asyncio.run(both())
    reader.shutdown(wait=True)

    # Assert: with a load in flight, the "inline" call went to the reader too
    assert reader.submitted == 2
    assert mine.stream_id == STREAM and other.stream_id == "session-" + "ef" * 16
