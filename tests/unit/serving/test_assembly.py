"""Session assembly (hermes_fed.serving.assembly, S1-S3) on a real SQLite log."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from hermes_fed.serving.assembly import SessionState, TurnDigester, assemble_trajectories
from hermes_fed.serving.capture import CallContext, call_events
from hermes_fed.serving.conversion import from_openai_messages
from hermes_fed.store import Keyring, SqlEventStore, open_store

SECRET = b"s" * 32
TOOLS = [{"type": "function", "function": {"name": "calc", "description": "math",
                                           "parameters": {"type": "object"}}}]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqlEventStore]:
    s = open_store(f"sqlite:///{tmp_path / 'log.db'}", "acme", keyring=Keyring.generate("acme"))
    yield s
    s.close()


class Recorder:
    """What the gateway does per call, minus HTTP: reserve, answer, append, commit."""

    def __init__(self, store: SqlEventStore, state: SessionState | None = None) -> None:
        self.store = store
        self.digester = TurnDigester(SECRET)
        self.state = state or SessionState("session-" + "ab" * 16)
        self.clock = 1000.0
        self.recorded: list[list[dict[str, Any]]] = []

    def call(self, openai_messages: Sequence[Mapping[str, Any]], answer: Mapping[str, Any],
             tools: list[dict[str, Any]] | None = None) -> tuple[str, list[str]]:
        turns = from_openai_messages(list(openai_messages))
        answer_turn = from_openai_messages([answer])[0]
        traj_tools = [t["function"] for t in (tools or [])]
        chains = self.digester.chain([*turns, answer_turn])
        self.clock += 1
        reservation = self.state.reserve(chains[:-1], turns[-1]["role"], self.clock, 60.0)
        ctx = CallContext(self.state.stream_id, "user-1", "v2", "treatment", "ab-1", "chat")
        tools_key = self.digester.tools_key(traj_tools)
        events = call_events(ctx, reservation, turns, answer_turn, traj_tools, chains,
                             tools_key, self.state.branch_tools_key(reservation.trajectory_id))
        self.store.append(events)
        self.state.commit(reservation, chains, tools_key, self.clock)
        return reservation.trajectory_id, [e.type for e in events]


def _agent_session() -> list[tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Three calls of a tool-using agent, each repeating the history (as OpenAI clients do)."""
    system = {"role": "system", "content": "You are a helpful agent."}
    user = {"role": "user", "content": "What is 2+3? Mail me at ann@example.com"}
    call = {"role": "assistant", "content": None, "refusal": None, "audio": None,
            "tool_calls": [{"id": "call_1", "type": "function",
                            "function": {"name": "calc", "arguments": "{\"expression\": \"2+3\"}"}}]}
    result = {"role": "tool", "tool_call_id": "call_1", "content": "{\"result\": 5}"}
    final = {"role": "assistant", "content": "2+3 = 5"}
    follow = {"role": "user", "content": "and 4+4?"}
    final2 = {"role": "assistant", "content": "8"}
    return [([system, user], call), ([system, user, call, result], final),
            ([system, user, call, result, final, follow], final2)]


def test_s1_s2_extensions_store_only_new_turns_and_fold_to_the_whole_conversation(
        store: SqlEventStore) -> None:
    # Prepare
    recorder = Recorder(store)
    calls = _agent_session()

    # Execute
    outcomes = [recorder.call(messages, answer, TOOLS) for messages, answer in calls]

    # Assert: one trajectory, extended twice, each event holding only the new turns
    ids = {tid for tid, _ in outcomes}
    assert len(ids) == 1
    assert [types for _, types in outcomes] == [
        ["SessionStarted", "TrajectoryRecorded"], ["TrajectoryExtended"], ["TrajectoryExtended"]]
    events = store.read_stream(recorder.state.stream_id)
    stored_counts = [len(e.data["messages"]) for e in events if "messages" in e.data]
    assert stored_counts == [3, 2, 2]  # [sys, user, call], [tool, final], [follow, final2]
    last_messages, last_answer = calls[-1]
    expected = from_openai_messages([*last_messages, last_answer])
    whole = assemble_trajectories(events)[ids.pop()]
    assert whole["messages"] == expected
    assert whole["final_response"] == "8"
    assert whole["task"] == "What is 2+3? Mail me at ann@example.com"
    assert whole["tools"] == [TOOLS[0]["function"]]
    assert events[1].data["tools"] == [TOOLS[0]["function"]]
    assert events[2].data["tools"] is None  # unchanged tools are not stored again


def test_s3_a_rebuilt_state_matches_like_the_original(store: SqlEventStore) -> None:
    # Prepare: two calls recorded, then the state is lost (a restart)
    recorder = Recorder(store)
    calls = _agent_session()
    tid, _ = recorder.call(*calls[0], TOOLS)
    recorder.call(*calls[1], TOOLS)
    rebuilt = SessionState.replay(recorder.state.stream_id,
                                  store.read_stream(recorder.state.stream_id))

    # Execute
    again = Recorder(store, rebuilt)
    tid3, types = again.call(*calls[2], TOOLS)

    # Assert
    assert (tid3, types) == (tid, ["TrajectoryExtended"])
    events = store.read_stream(recorder.state.stream_id)
    assert [len(e.data["messages"]) for e in events if "messages" in e.data] == [3, 2, 2]


def test_a_resent_user_message_is_a_retry_and_a_new_branch(store: SqlEventStore) -> None:
    # Prepare
    recorder = Recorder(store)
    first = [{"role": "user", "content": "write a haiku"}]
    tid1, _ = recorder.call(first, {"role": "assistant", "content": "bad haiku"})

    # Execute: the user asks again (same history), gets another answer
    tid2, types = recorder.call(first, {"role": "assistant", "content": "better haiku"})

    # Assert
    assert tid2 != tid1
    assert types == ["RetryRequested", "TrajectoryRecorded"]
    retry = [e for e in store.read_stream(recorder.state.stream_id) if e.type == "RetryRequested"]
    assert retry[0].data["trajectory_id"] == tid1
    whole = assemble_trajectories(store.read_stream(recorder.state.stream_id))
    assert whole[tid1]["final_response"] == "bad haiku"
    assert whole[tid2]["final_response"] == "better haiku"
    assert whole[tid1]["task"] == whole[tid2]["task"]


def test_an_edited_history_branches_without_a_retry(store: SqlEventStore) -> None:
    recorder = Recorder(store)
    tid1, _ = recorder.call([{"role": "user", "content": "hi"}], {"role": "assistant", "content": "a"})
    tid2, types = recorder.call(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "EDITED"},
         {"role": "user", "content": "more"}], {"role": "assistant", "content": "b"})
    assert tid2 != tid1
    assert types == ["TrajectoryRecorded"]  # whole: the edited history is its own branch


def test_a_racing_call_on_one_branch_gets_a_branch_of_its_own() -> None:
    state = SessionState("session-" + "cd" * 16)
    digester = TurnDigester(SECRET)
    turns = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    chains = digester.chain(turns)
    first = state.reserve(chains[:1], "user", 0.0, 60.0)
    state.commit(first, chains, 0, 0.0)
    follow = digester.chain([{"role": "user", "content": "z"}], chains[-1])

    a = state.reserve([*chains, *follow], "user", 1.0, 60.0)
    b = state.reserve([*chains, *follow], "user", 1.0, 60.0)

    assert (a.new, a.trajectory_id) == (False, first.trajectory_id)
    assert b.new and b.base == 0
    state.release(a)
    c = state.reserve([*chains, *follow], "user", 2.0, 60.0)
    assert c.trajectory_id == first.trajectory_id  # released: free to extend again


def test_the_fold_leaves_out_erased_trajectories(store: SqlEventStore) -> None:
    recorder = Recorder(store)
    tid, _ = recorder.call([{"role": "user", "content": "hello"}], {"role": "assistant", "content": "hi"})
    store.erase_subject("user-1")
    assert tid not in assemble_trajectories(store.read())


def test_digests_ignore_fields_a_client_adds_to_an_answer() -> None:
    digester = TurnDigester(SECRET)
    plain = from_openai_messages([{"role": "assistant", "content": "ok"}])
    decorated = from_openai_messages([{"role": "assistant", "content": "ok", "refusal": None,
                                       "annotations": [], "audio": None}])
    assert digester.chain(plain) == digester.chain(decorated)
    assert digester.chain(plain) != TurnDigester(b"t" * 32).chain(plain)
