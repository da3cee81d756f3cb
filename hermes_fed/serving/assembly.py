"""Session assembly: the calls of a chat session become trajectories, storing only what is new.

Every call of a chat API repeats the conversation so far. A session (one stream
``session-<id>``) holds one or more trajectories; each is a *branch* of the conversation:

* a call whose history is exactly a branch's turns plus new ones **extends** that branch:
  only the new turns and the answer are recorded (``TrajectoryExtended``), so a call's
  capture (redaction, encryption, storage) does not grow with the session;
* a call whose history leaves every branch (the user re-sent an earlier message, edited
  the history, or a second call raced the first on the same branch) starts a **new
  branch**, recorded whole (``TrajectoryRecorded``): the only case that stores a prefix
  again. Re-sending the last user message of a branch within the retry window is a retry:
  the answered branch gets ``RetryRequested``, and the new branch answers the same task
  (the quality read model pairs them for preference training).

Turns are compared by a keyed chain of digests: ``chain_k = BLAKE2b_key(chain_{k-1} ||
canonical(turn_k))`` over the trajectory-shaped turn (so fields a client adds when it sends
an answer back do not matter). The chain values of the turns an event records are kept in
its metadata (``gateway.fp``, 63-bit integers), so a restarted gateway rebuilds a session
from its stream without any text; they are keyed digests of whole turns, like the
placeholder index's digests of PII values, and confirm a guessed turn only to a holder of
the tenant's key ring.

:func:`assemble_trajectories` is the fold readers use: a trajectory is its
``TrajectoryRecorded`` followed by its ``TrajectoryExtended`` events in stream order.

Invariants (tests cite them)
----------------------------
S1. Calls that extend a branch record exactly the turns the branch lacked, in order: the
    fold of a session equals the last call's conversation plus its answer.
S2. A call's recorded turns never include a turn the branch already holds.
S3. State rebuilt from a stream's events (:meth:`SessionState.replay`) matches calls
    exactly as the state that recorded them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hermes_fed.events import StoredEvent, canonical_json

FP_KEY = "gateway"
_MASK63 = (1 << 63) - 1
MAX_BRANCHES = 64
MAX_INDEXED_TURNS = 4096


class TurnDigester:
    """Keyed chain digests of conversation turns (BLAKE2b as a MAC, RFC 7693 §2.5)."""

    def __init__(self, secret: bytes) -> None:
        # A key of its own, derived from the tenant secret and a label, so these digests
        # are unrelated to the assignment hash and the placeholder digests.
        self._key = hashlib.blake2b(b"hermes-fed/gateway/turns", key=secret[:64]).digest()

    def chain(self, turns: Sequence[Mapping[str, Any]], start: int = 0) -> list[int]:
        """The chain value after each turn, continuing from ``start`` (0: a conversation's
        first turn)."""
        out: list[int] = []
        previous = start
        for turn in turns:
            h = hashlib.blake2b(digest_size=8, key=self._key)
            h.update(previous.to_bytes(8, "big"))
            h.update(canonical_json(turn))
            previous = int.from_bytes(h.digest(), "big") & _MASK63
            out.append(previous)
        return out

    def tools_key(self, tools: Sequence[Mapping[str, Any]]) -> int:
        if not tools:
            return 0
        h = hashlib.blake2b(digest_size=8, key=self._key)
        h.update(b"tools")
        h.update(canonical_json(list(tools)))
        return int.from_bytes(h.digest(), "big") & _MASK63

    def session_id(self, *parts: str) -> str:
        """A session id (32 hex) from its identifying parts (user, test id, header or the
        conversation's opening turns)."""
        h = hashlib.blake2b(digest_size=16, key=self._key)
        for part in parts:
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x1f")
        return h.hexdigest()


@dataclass(slots=True)
class Branch:
    """One trajectory of a session, as far as matching needs it: no text."""

    trajectory_id: str
    chains: list[int]
    tools_key: int
    last_at: float


@dataclass(frozen=True, slots=True)
class Reservation:
    """What a call will record, decided before the upstream answers.

    ``base``: how many of the call's turns its trajectory already holds (0: a new
    trajectory, recorded whole). ``retry_of``: a branch the user asked again.
    """

    trajectory_id: str
    new: bool
    base: int
    retry_of: str | None
    start_session: bool


@dataclass(slots=True)
class SessionState:
    """The branches of one session and the indexes that match a call to them."""

    stream_id: str
    started: bool = False
    branches: dict[str, Branch] = field(default_factory=dict)
    ends: dict[int, str] = field(default_factory=dict)  # chain at a branch's end -> its id
    prefixes: dict[int, tuple[str, int]] = field(default_factory=dict)  # chain -> (id, length)
    in_flight: set[str] = field(default_factory=set)

    @property
    def session_key(self) -> str:
        return self.stream_id.removeprefix("session-")

    def new_trajectory_id(self) -> str:
        return f"t-{self.session_key}-{secrets.token_hex(6)}"

    def reserve(self, chains: Sequence[int], last_role: str, now: float,
                retry_window_s: float) -> Reservation:
        """Match a call's turns (their chain values) to a branch and reserve it."""
        n = len(chains)
        for i in range(n, 0, -1):
            tid = self.ends.get(chains[i - 1])
            if tid is None:
                continue
            if tid in self.in_flight:
                break  # a second call racing the first on one branch: a branch of its own
            self.in_flight.add(tid)
            return Reservation(tid, False, i, None, not self.started)
        retry_of = None
        hit = self.prefixes.get(chains[-1]) if n else None
        if hit is not None and last_role == "user":
            branch = self.branches.get(hit[0])
            if branch is not None and len(branch.chains) > hit[1] \
                    and now - branch.last_at <= retry_window_s:
                retry_of = branch.trajectory_id
        tid = self.new_trajectory_id()
        self.in_flight.add(tid)
        return Reservation(tid, True, 0, retry_of, not self.started)

    def release(self, reservation: Reservation) -> None:
        """The call was not recorded (the upstream failed, the client left, the append
        failed): the branch is as it was."""
        self.in_flight.discard(reservation.trajectory_id)

    def commit(self, reservation: Reservation, chains: Sequence[int], tools_key: int,
               now: float) -> None:
        """The call's events are durable: ``chains`` are the call's turns plus the answer."""
        self.in_flight.discard(reservation.trajectory_id)
        self.started = True
        self._record(reservation.trajectory_id, list(chains), tools_key, now,
                     extend=not reservation.new)

    def _record(self, tid: str, chains: list[int], tools_key: int, now: float, *,
                extend: bool) -> None:
        branch = self.branches.get(tid)
        if extend and branch is not None:
            self.ends.pop(branch.chains[-1], None)
            start = len(branch.chains)
            branch.chains.extend(chains[start:] if len(chains) > start else ())
            branch.tools_key, branch.last_at = tools_key, now
        else:
            start = 0
            branch = self.branches[tid] = Branch(tid, chains, tools_key, now)
        if branch.chains:
            self.ends[branch.chains[-1]] = tid
        if len(self.prefixes) < MAX_INDEXED_TURNS:
            for j in range(start, len(branch.chains)):
                self.prefixes.setdefault(branch.chains[j], (tid, j + 1))
        if len(self.branches) > MAX_BRANCHES:
            oldest = min(self.branches.values(), key=lambda b: b.last_at)
            del self.branches[oldest.trajectory_id]
            if oldest.chains and self.ends.get(oldest.chains[-1]) == oldest.trajectory_id:
                del self.ends[oldest.chains[-1]]

    def branch_tools_key(self, trajectory_id: str) -> int | None:
        branch = self.branches.get(trajectory_id)
        return branch.tools_key if branch is not None else None

    def holds(self, trajectory_id: str) -> bool:
        return trajectory_id in self.branches

    @classmethod
    def replay(cls, stream_id: str, events: Iterable[StoredEvent]) -> SessionState:
        """Rebuild from the stream's events (S3): only their metadata is read."""
        state = cls(stream_id)
        for event in events:
            state.started = True
            gateway = event.metadata.get(FP_KEY)
            if not isinstance(gateway, Mapping):
                continue
            chains = [int(c) for c in gateway.get("fp") or ()]
            tid = gateway.get("trajectory_id")
            if not isinstance(tid, str) or not chains:
                continue
            now = event.recorded_at.timestamp()
            tools_key = int(gateway.get("tools") or 0)
            if event.type == "TrajectoryRecorded":
                state._record(tid, chains, tools_key, now, extend=False)
            elif event.type == "TrajectoryExtended" and tid in state.branches:
                known = state.branches[tid].chains
                state._record(tid, [*known, *chains], tools_key, now, extend=True)
        return state


def capture_metadata(trajectory_id: str, chains: Sequence[int], tools_key: int) -> dict[str, Any]:
    """The ``gateway`` metadata of a recorded call: the chain values of the turns it stores."""
    return {FP_KEY: {"trajectory_id": trajectory_id, "fp": list(chains), "tools": tools_key}}


# --- the fold readers use -----------------------------------------------------------------
TRAJECTORY_TYPES = frozenset({"TrajectoryRecorded", "TrajectoryExtended"})


def assemble_trajectories(events: Iterable[StoredEvent]) -> dict[str, dict[str, Any]]:
    """Whole trajectories by id: each ``TrajectoryRecorded`` (the first of an id wins) with
    its ``TrajectoryExtended`` events applied in log order. A trajectory any of whose events
    belongs to an erased subject is left out (its text is gone)."""
    out: dict[str, dict[str, Any]] = {}
    erased: set[str] = set()
    for event in events:
        kind = event.type
        if kind not in TRAJECTORY_TYPES:
            continue
        data = event.data
        tid = str(data.get("trajectory_id"))
        if event.erased_fields:
            erased.add(tid)
            continue
        if kind == "TrajectoryRecorded":
            if tid not in out:
                trajectory = dict(data)
                trajectory["messages"] = list(data.get("messages") or ())
                out[tid] = trajectory
            continue
        known = out.get(tid)
        if known is None:
            continue  # an extension of a trajectory this log does not hold
        trajectory = known
        trajectory["messages"].extend(data.get("messages") or ())
        trajectory["final_response"] = data.get("final_response", "")
        if data.get("tools") is not None:
            trajectory["tools"] = list(data["tools"])
    for tid in erased:
        out.pop(tid, None)
    return out
