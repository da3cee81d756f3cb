"""Tiny tenant data for the federation tests and bench: stores with planted canaries.

Every tenant's log gets arithmetic trajectories (the tiny model can learn them) and, in
every trajectory, canary strings: PII-like values (an e-mail, a card number, a phone, a
user ref) and raw trajectory text. The egress test asserts none of them reaches the
SuperLink. The canaries are written *without* the redaction gate on purpose: they stand
for whatever redaction missed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CANARY_TEXT = "quartz-zeppelin canary sentence from tenant {tenant}"


def canaries(tenant: str) -> list[str]:
    """The strings planted in ``tenant``'s data; none may leave the node."""
    return [
        f"canary.{tenant}@example.com",
        "4111 1111 1111 1111",
        "+1 415 555 0199",
        f"user-ref-canary-{tenant}",
        f"t-canary-{tenant}-0001",
        CANARY_TEXT.format(tenant=tenant),
    ]


_VERBS = ("What is", "Compute", "Please add", "Tell me", "Quick sum:", "Add up", "Calculate",
          "I need", "Work out", "Find")
_WORDS = ("invoice", "budget", "apples", "servers", "tickets", "miles", "hours", "boxes",
          "pages", "users", "orders", "coins", "seats", "files", "rows", "tests", "bugs",
          "cards", "plants", "books", "cars", "cups", "keys", "maps")


def trajectory(tenant: str, i: int, rng: random.Random) -> dict[str, object]:
    """An arithmetic session; canaries in the system prompt, the task, tool args and result.

    Tasks vary in wording so the quality pipeline's near-duplicate filter keeps most of them.
    """
    a, b = rng.randint(2, 999), rng.randint(2, 999)
    secret = canaries(tenant)
    tid = secret[4] if i == 0 else f"t-{tenant}-{i:04d}"
    words = " ".join(rng.sample(_WORDS, 4))
    task = f"{rng.choice(_VERBS)} {a}+{b} for the {words} (reply to {secret[0]})"
    return {
        "trajectory_id": tid,
        "task": task,
        "task_type": "arithmetic",
        "messages": [
            {"role": "system", "content": f"You are a helpful agent. {CANARY_TEXT.format(tenant=tenant)}"},
            {"role": "user", "content": task},
            {"role": "assistant", "content": "",
             "tool_calls": [{"id": "call_1", "name": "calculator",
                             "arguments": {"expression": f"{a}+{b}", "card": secret[1]}}]},
            {"role": "tool", "tool_call_id": "call_1", "name": "calculator",
             "content": f'{{"result": {a + b}, "phone": "{secret[2]}"}}'},
            {"role": "assistant", "content": f"{a}+{b} = {a + b}"},
        ],
        "tools": [{"name": "calculator", "description": "adds", "parameters": {"type": "object"}}],
        "final_response": f"{a}+{b} = {a + b} ({words})",
    }


@dataclass(frozen=True, slots=True)
class TenantData:
    tenant: str
    store_url: str
    canaries: tuple[str, ...]


def seed_tenant_store(root: Path, tenant: str, n: int, *, seed: int = 0,
                      keyring: Any = None) -> TenantData:
    """A SQLite log at ``root/<tenant>/events.db`` with ``n`` sessions of canary data
    (sealed with ``keyring``, a :class:`~hermes_fed.store.Keyring`, when given)."""
    from hermes_fed.events import new_event
    from hermes_fed.events.session import (
        OutputAccepted,
        SessionContinued,
        SessionStarted,
        TrajectoryRecorded,
    )
    from hermes_fed.store import open_store

    rng = random.Random(f"{tenant}-{seed}")
    path = root / tenant / "events.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    store = open_store(url, tenant, keyring=keyring)
    try:
        events = []
        for i in range(n):
            stream = f"session-{tenant}-{i}"
            events.append(new_event(SessionStarted(  # type: ignore[call-arg]
                user_ref=canaries(tenant)[3], model_version="base"), stream_id=stream))
            body = trajectory(tenant, i, rng)
            events.append(new_event(TrajectoryRecorded(**body),  # type: ignore[arg-type]
                                    stream_id=stream))
            # accepted sessions score higher, the rest continued (silver; an answer with no
            # feedback at all is bronze and never trained on): the selection gets two tiers
            kind = OutputAccepted if i % 3 == 0 else SessionContinued
            events.append(new_event(kind(  # type: ignore[call-arg]
                trajectory_id=body["trajectory_id"]), stream_id=stream))
        store.append(events)
    finally:
        store.close()
    return TenantData(tenant, url, tuple(canaries(tenant)))


@contextmanager
def running_federation(root: Path, tiny_model: Path, tenants: list[TenantData],
                       isolation: str = "process", **options: Any) -> Iterator[Any]:
    """A ``LocalFederation`` under ``root`` with one SuperNode per tenant (held-out 0.4),
    stopped (by PID) on exit; ``options`` go to ``LocalFederation``. The SuperNodes run
    ``--isolation process`` with a long-lived ClientApp worker each
    (``tenant_node.flower.warm_clientapp``): a fresh ``flwr-clientapp`` per message costs
    each node 10+ s of start-up and imports a message on 2 cores (test_federation_subprocess
    covers that path)."""
    from coordinator.deploy.local_federation import LocalFederation, NodeSpec

    fed = LocalFederation(root, capture=True, isolation=isolation, **options)
    try:
        fed.start()
        for t in tenants:
            fed.add_node(NodeSpec(t.tenant, t.store_url, str(tiny_model), {"heldout-fraction": 0.4}))
        yield fed
    finally:
        fed.stop()
