"""The autopilot's runner over the real coordinator log: whole cycles, and crash safety.

The nodes are :class:`ScriptedNodes` (their answers are the test's table); the log, the
registry (PEFT files, sha256), the A/B and promotion logs are the real ones on SQLite.
One schedule covers every action: cycle 1 ships v1 (deploy, train, offline look,
promote, canary looks, online look, production), cycle 2's v2 breaches the canary
guardrail (rollback), and v1's production quality then falls until the degradation
trigger rolls it back to the base model.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from coordinator.autopilot.config import AutopilotConfig
from coordinator.autopilot.runner import Autopilot
from coordinator.autopilot.state import Action, Intent, Phase
from coordinator.logs.registry import AdapterRegistry
from hermes_fed.events import from_micros
from tests.unit.coordinator.autopilot_nodes import ScriptedNodes, SimClock, log_summary

CFG = AutopilotConfig(min_nodes=2, canary_days=1, ab_duration_days=1, ab_min_samples=100,
                      look_interval_seconds=6 * 3600, quality_interval_seconds=86400,
                      quality_window=3, deploy_retry_seconds=3600)
BEATS = 36  # 6-hour beats: 9 simulated days


class SimulatedCrash(BaseException):
    """Stands for kill -9: nothing after the crash point runs."""


def _nodes(registry: AdapterRegistry) -> ScriptedNodes:
    return ScriptedNodes(registry, train={"acme": True, "globex": True}, train_versions=2,
                         effects={"v2": -0.2},
                         quality=[0.6, 0.6, 0.6, 0.6, 0.45, 0.45, 0.45, 0.45, 0.45])


def drive(root: Path, crash_at: set[tuple[str, str]] | None = None
          ) -> tuple[list[tuple[Any, ...]], ScriptedNodes, int]:
    """Run the schedule; with ``crash_at``, crash at every (point, action) listed (every
    time it comes) and resume with a fresh runner over a reopened log."""
    clock = SimClock()
    registry = AdapterRegistry.open(root)
    nodes = _nodes(registry)
    crashes = 0
    seen: set[tuple[int, int, str]] = set()

    def crash(point: str, intent: Intent) -> None:
        nonlocal crashes
        key = (intent.cycle, intent.step, point)
        if crash_at and (point, intent.action.value) in crash_at and key not in seen:
            seen.add(key)
            crashes += 1
            raise SimulatedCrash(f"{point} {intent.action.value}")

    for _ in range(BEATS):
        while True:
            try:
                Autopilot(registry, nodes, CFG, clock, crash=crash).run_until_idle()
                break
            except SimulatedCrash:
                registry.close()
                registry = AdapterRegistry.open(root)
                nodes.registry = registry
        clock.advance(hours=6)
    summary = log_summary(registry)
    registry.close()
    return summary, nodes, crashes


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[tuple[Any, ...]],
                                                               ScriptedNodes]:
    summary, nodes, _ = drive(tmp_path_factory.mktemp("baseline"))
    return summary, nodes


def test_the_schedule_runs_whole_cycles_unattended(
        baseline: tuple[list[tuple[Any, ...]], ScriptedNodes]) -> None:
    summary, nodes = baseline
    ended = [(e[1], e[2]) for e in summary if e[0] == "AutopilotCycleEnded"]
    assert ended == [(1, "production"), (2, "rolled_back")]
    facts = [e[1:3] for e in summary if e[0] in ("ModelPromoted", "ModelRolledBack")]
    v1, v2 = (e[1] for e in summary if e[0] == "AdapterVersionPublished")
    assert facts == [(v1, "candidate"), (v1, "canary"), (v1, "ab"), (v1, "production"),
                     (v2, "candidate"), (v2, "canary"), (v2, None), (v1, None)]
    # every action of the machine happened, and every step has exactly one outcome
    actions = Counter(e[3] for e in summary if e[0] == "AutopilotStepIntended")
    assert set(actions) == {a.value for a in Action}
    intents = [e[1:3] for e in summary if e[0] == "AutopilotStepIntended"]
    outcomes = [e[1:3] for e in summary if e[0] == "AutopilotStepCompleted"]
    assert intents == outcomes and len(set(intents)) == len(intents)
    # the nodes saw the plans in order: base, canary, A/B, v1, canary v2, back to v1, base
    plans = [p for t, p in nodes.deployed if t == "acme"]
    assert plans == ["prod-base", f"canary-{v1}", f"ab-{v1}", f"prod-{v1}", f"canary-{v2}",
                     f"prod-{v1}", "prod-base"]
    # production quality is counted on the injected clock, look after look (not wall time)
    since = [from_micros(us) for us in nodes.quality_since]
    assert since == sorted(since) and since[-1] < datetime(2026, 2, 1, tzinfo=UTC)
    assert since[0] == datetime(2026, 1, 2, 6, tzinfo=UTC)  # when v1 was promoted


def test_ar1_a_crash_after_every_intent_and_every_action_resumes_to_the_same_log(
        tmp_path: Path, baseline: tuple[list[tuple[Any, ...]], ScriptedNodes]) -> None:
    # Prepare: crash at both points of every action, every time it comes
    points = {(p, a.value) for p in ("intended", "acted") for a in Action}
    # Execute
    summary, nodes, crashes = drive(tmp_path, points)
    # Assert: same log, nothing published or promoted twice, no finished round repeated
    assert crashes == 2 * sum(1 for e in baseline[0] if e[0] == "AutopilotStepIntended")
    assert summary == baseline[0]
    published = [e[1] for e in summary if e[0] == "AdapterVersionPublished"]
    assert len(published) == len(set(published)) == 2
    assert nodes.calls.count("run_rounds:1") == 2


def test_a_node_that_does_not_apply_a_plan_is_named_and_the_cycle_waits(tmp_path: Path) -> None:
    # Prepare: globex cannot load adapters
    clock = SimClock()
    with AdapterRegistry.open(tmp_path) as registry:
        nodes = _nodes(registry)
        autopilot = Autopilot(registry, nodes, CFG, clock)
        autopilot.run_until_idle()  # base plan, train, offline look, canary, deploy...
        nodes.refuse_deploy.add("globex")
        state = autopilot.state()
        assert state.phase is Phase.CANARY and state.plan_applied is not None
        # Execute: the canary moves on to A/B, whose plan globex cannot apply
        for _ in range(6):
            clock.advance(hours=6)
            autopilot.run_until_idle()
        state = autopilot.state()
        # Assert: still in A/B's delivery, globex named, acme and initech on the new plan
        assert state.phase is Phase.AB and state.deploy_failed == ("globex",)
        assert state.node_plans["acme"].startswith("ab-")
        assert state.node_plans["globex"].startswith("canary-")  # its last applied plan
        failed = [n for n in state.recent if n.kind == "failed" and n.what == "deploy"]
        assert failed and "globex did not apply" in failed[-1].reason
        looks = [c for c in nodes.calls if c.startswith("online_look:ab-")]
        assert looks == []  # no A/B look before every node serves the A/B plan
        # once globex can, the retry goes through and the cycle moves on
        nodes.refuse_deploy.clear()
        clock.advance(hours=1)
        autopilot.run_until_idle()
        assert autopilot.state().deploy_failed == ()


def test_a_failing_round_is_an_outcome_and_ends_the_cycle_failed(tmp_path: Path) -> None:
    with AdapterRegistry.open(tmp_path) as registry:
        nodes = _nodes(registry)
        nodes.fail_rounds = True
        autopilot = Autopilot(registry, nodes, CFG, SimClock())
        first = autopilot.run_until_idle()
        assert first[-1].startswith("cycle 1 step 2 train: failed")  # no tight retry loop
        second = autopilot.run_until_idle()
        assert second[-1].startswith("wait: cycle 1 failed")
        state = autopilot.state()
        assert state.cycles[-1]["outcome"] == "failed"
        assert "0 of 1 nodes replied" in state.cycles[-1]["reason"]
        assert state.cycle == 2 and state.phase is Phase.WAITING


def test_ar1_a_round_still_running_after_a_crash_is_waited_for_not_run_again(
        tmp_path: Path) -> None:
    from hermes_fed.events import new_event
    from hermes_fed.events.coordinator import RoundCompleted, RoundStarted

    # Prepare: the autopilot died right after its train intent; the round run it had
    # submitted is still going in the ServerApp (RoundStarted, no outcome yet)
    clock = SimClock()
    with AdapterRegistry.open(tmp_path) as registry:
        nodes = _nodes(registry)

        def die_at_train(point: str, intent: Intent) -> None:
            if intent.action is Action.TRAIN:
                raise SimulatedCrash(point)

        with pytest.raises(SimulatedCrash):
            Autopilot(registry, nodes, CFG, clock, crash=die_at_train).run_until_idle()
        registry.store.append([new_event(RoundStarted(
            round_id="round-9-1", round=1, mode="frozen-a", parent_version=None,
            node_ids=["1"], config={}), stream_id="round-9-1")])
        resumed = Autopilot(registry, nodes, CFG, clock)
        resumed.round_poll_seconds = 0.01
        waiting = threading.Event()
        real = resumed.rounds_in_flight

        def watched(after: int) -> list[str]:
            flying = real(after)
            if flying:
                waiting.set()
            return flying

        resumed.rounds_in_flight = watched  # type: ignore[method-assign]
        # Execute: resume in a thread; once it waits, the orphan round publishes and ends
        lines: list[str] = []
        worker = threading.Thread(target=lambda: lines.append(resumed.step()))
        worker.start()
        assert waiting.wait(60)
        version = nodes.run_rounds(None, 1)[0]
        nodes.calls.clear()
        registry.store.append([new_event(RoundCompleted(
            round_id="round-9-1", round=1, version=version, report={}),
            stream_id="round-9-1")])
        worker.join(60)
        # Assert: the orphan's version is the candidate; no second round was run
        assert lines == ["cycle 1 step 2 train: ok"]
        assert not any(c.startswith("run_rounds") for c in nodes.calls)
        assert resumed.state().candidate == version
        assert [v.version for v in registry.versions()] == [version]
