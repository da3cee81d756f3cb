"""Seeded tenant logs for A/B tests: users, a pre-period session, AssignVariant, a test session.

Each user has a propensity ``q`` to accept the agent's output; the pre-period session is
accepted with probability ``q`` (the CUPED covariate), the test session with ``q`` plus the
arm's effect. Assignment goes through the node's real path (``record_assignment``, the
keyed hash of ``AssignVariant``). Session quality comes from the quality projection:
accepted ~0.9, not accepted ~0.3. A canary string sits in every task and user ref.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from hermes_fed.events import NewEvent, new_event
from hermes_fed.events.session import OutputAccepted, SessionStarted, TrajectoryRecorded
from tenant_node.ingest.assignment import Arm

CANARY = "zircon-walrus-canary"


@dataclass(frozen=True, slots=True)
class SeededTenant:
    tenant: str
    store_url: str
    keyring: str
    arm_of_user: dict[str, str]
    pre_score_accepted: dict[str, bool]
    test_accepted: dict[str, bool]


def _session(stream: str, user: str, tid: str, accepted: bool, *, ab_test_id: str | None = None,
             variant: str | None = None, version: str = "base") -> list[NewEvent]:
    task = f"What is 2+2 for {CANARY} {tid}?"
    body = {
        "trajectory_id": tid, "task": task, "task_type": "arithmetic",
        "messages": [{"role": "user", "content": task},
                     {"role": "assistant", "content": "2+2 = 4"}],
        "tools": [], "final_response": "2+2 = 4",
    }
    # personal fields under the user's subject key, as the ingest path and importer write them
    events = [
        new_event(SessionStarted(user_ref=user, model_version=version,  # type: ignore[call-arg]
                                 variant=variant, ab_test_id=ab_test_id), stream_id=stream,
                  subject=user),
        new_event(TrajectoryRecorded(**body), stream_id=stream,  # type: ignore[arg-type]
                  subject=user),
    ]
    if accepted:
        events.append(new_event(OutputAccepted(trajectory_id=tid),  # type: ignore[call-arg]
                                stream_id=stream))
    return events


def seed_ab_tenant(root: Path, tenant: str, *, ab_test_id: str, users: int,
                   traffic_split: float, effect: float, seed: int = 0,
                   control_effect: float = 0.0, version: str = "base",
                   treatment_version: str | None = None,
                   assign_via_node: bool = True) -> SeededTenant:
    """A SQLite log at ``root/<tenant>.db``; ``effect`` is added to treatment's acceptance.

    Pre-period and control sessions run ``version``; treatment sessions run
    ``treatment_version`` (default: ``version`` too). Without ``assign_via_node`` the agent
    picks the arm itself and only names it in ``SessionStarted`` (no ``VariantAssigned``).
    """
    from hermes_fed.store import Keyring, open_store
    from tenant_node.ingest.service import record_assignment

    rng = random.Random(f"{tenant}-{seed}")
    url = f"sqlite:///{root / f'{tenant}.db'}"
    ring_path = root / f"{tenant}.keyring.json"
    store = open_store(url, tenant, keyring=Keyring.load_or_create(ring_path, tenant),
                       synchronous="NORMAL")
    arms = [Arm("control", 1.0 - traffic_split), Arm("treatment", traffic_split)]
    refs = [f"user-{tenant}-{CANARY}-{u}" for u in range(users)]
    q = {u: rng.uniform(0.1, 0.9) for u in refs}
    pre = {u: rng.random() < q[u] for u in refs}
    try:
        store.append([e for i, u in enumerate(refs)
                      for e in _session(f"session-{tenant}-pre-{i}", u, f"t-{tenant}-pre-{i}",
                                        pre[u], version=version)])
        arm_of = {}
        for u in refs:
            if assign_via_node:
                arm, _, _ = record_assignment(store, ab_test_id, u, arms)  # the key ring's secret
                arm_of[u] = arm.name
            else:
                arm_of[u] = "treatment" if rng.random() < traffic_split else "control"
        test = {}
        events: list[NewEvent] = []
        for i, u in enumerate(refs):
            shift = effect if arm_of[u] == "treatment" else control_effect
            test[u] = rng.random() < min(1.0, max(0.0, q[u] + shift))
            runs = treatment_version if arm_of[u] == "treatment" and treatment_version else version
            events += _session(f"session-{tenant}-ab-{i}", u, f"t-{tenant}-ab-{i}", test[u],
                               ab_test_id=ab_test_id, variant=arm_of[u], version=runs)
        store.append(events)
    finally:
        store.close()
    return SeededTenant(tenant, url, str(ring_path), arm_of, pre, test)
