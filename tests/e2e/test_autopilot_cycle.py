"""The autopilot turns a whole cycle by itself (issue 20, Tests): nodes with gateways, a real
local federation, the coordinator killed once mid-cycle and resumed.

Real processes on 127.0.0.1: one SuperLink and two SuperNodes (``LocalFederation``, each
node with its own SQLite log seeded with scored trajectories so its ``query.trigger``
says train), one ``hermes-fed model serve`` of the packaged tiny base model, and one
``hermes-fed node gateway`` per node in front of it. The coordinator side is the real CLI,
``hermes-fed coordinator autopilot --once``, run in a loop by the test; time is a
simulated clock file (``HERMES_FED_CLOCK_FILE``) that the test moves on a day whenever
the autopilot waits, so canary days and the A/B's duration pass in seconds.

The test plays the users: ``openai`` clients with a ``user`` through each gateway, and
feedback to ``/v1/feedback`` -- users accept every answer but edit production's more than
the candidate's. That makes the candidate *measurably* better in the feedback, which
is what the online A/B reads; the test checks that the wheel turns (readiness, round,
offline look, canary, online A/B, production, delivery to every gateway), not that the
model is good.

Once, while the cycle's federated round runs in the ServerApp, the autopilot's process
group gets ``kill -9``; the next ``--once`` resumes from the log, waits for that round
instead of starting a second one, and the cycle goes on. At the end: one version
published, one promotion per stage, every node's log has the canary, A/B and production
plans, and every user of each gateway is served the new version.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from coordinator.deploy.local_federation import LocalFederation, NodeSpec
from hermes_fed.clock import CLOCK_ENV, OffsetClock
from hermes_fed.store.location import LogNotFoundError
from tests.integration.federation_data import seed_tenant_store
from tests.integration.gateway.stack import BASE_MODEL, TOKEN, Node, Server, model_serve, plan_of

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
TENANTS = ("acme", "globex")
SEEDED = 60  # trajectories per node: 48 to train on, 12 held out (offline look: CONTINUE)
K_MIN = 5
CANARY_PER_ARM = 6  # candidate sessions per node during the canary (>= K_MIN)
AB_PER_ARM = 31  # users per arm per node: the A/B decides at >= 30 per arm in a tenant
MAX_STEPS = 40
AUTOPILOT_TOML = """\
[autopilot]
cadence_seconds = 1
min_nodes = 2
canary_share = 0.3
ab_share = 0.5
canary_days = 1
canary_max_days = 2
canary_min_samples = {canary_min}
ab_min_samples = 20
ab_duration_days = 1
look_interval_seconds = 43200
node_timeout_seconds = 120
base_model = "{base}"

[autopilot.round_config]
local-steps = 2
rank = 4
batch-size = 4
max-length = 256
min-nodes = 2
"""
# the node's own trigger: this many new scored trajectories, this share of them good
NODE_TRIGGER = "\n[quality.trigger]\nmin_new = 30\nhigh_quality_rate = 0.2\n"


@dataclass
class Tenant:
    name: str
    node: Node
    gateway: Server | None = None


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH"))
                                           if p))


def _cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "hermes_fed.cli", *argv]


def _status(root: Path) -> dict[str, Any]:
    from coordinator.cli.autopilot_commands import status_body

    return status_body(root)


def _coordinator_events(root: Path, types: tuple[str, ...]) -> list[Any]:
    from coordinator.logs.registry import AdapterRegistry

    with AdapterRegistry.open_existing(root) as registry:
        return list(registry.store.read(types=types))


@contextmanager
def _stack(tmp: Path) -> Iterator[tuple[LocalFederation, list[Tenant], Path]]:
    """model serve, two nodes (store, key ring, node.toml, gateway, SuperNode), the
    SuperLink, and the coordinator's ``serve.json``; everything stopped by PID on exit.
    The servers start side by side (each waited for by polling its health)."""
    from hermes_fed.store import Keyring

    with ExitStack() as stack:
        # the pool ends (its servers started or failed) before the stack stops them
        with ThreadPoolExecutor(max_workers=3) as pool:
            served = model_serve(tmp)
            stack.callback(served.stop)
            starting = [pool.submit(served.start)]
            fed = LocalFederation(tmp / "federation", isolation="process")
            stack.callback(fed.stop)
            fed.start()
            tenants = []
            for name in TENANTS:
                data = tmp / "data" / name
                data.mkdir(parents=True)
                keyring = Keyring.generate(name)
                keyring.save(data / "keyring.json")
                seeded = seed_tenant_store(tmp / "data", name, SEEDED, keyring=keyring)
                node = Node(tmp / f"node-{name}", served.url,
                            top={"tenant_id": name, "data_dir": str(data)})
                with node.config_path.open("a") as fh:
                    fh.write(NODE_TRIGGER)
                tenant = Tenant(name, node, node.gateway())
                assert tenant.gateway is not None
                stack.callback(tenant.gateway.stop)
                starting.append(pool.submit(tenant.gateway.start))
                fed.add_node(NodeSpec(name, seeded.store_url, str(BASE_MODEL), {
                    "keyring": str(data / "keyring.json"), "quality-config": str(node.config_path),
                    "k-min": K_MIN}))
                tenants.append(tenant)
            for future in starting:
                future.result()
        coordinator = tmp / "coordinator"
        coordinator.mkdir()
        # `coordinator serve` leaves serve.json for the commands; this federation stands in
        (coordinator / "serve.json").write_text(json.dumps(
            {"cli_home": str(fed.cli_home), "config": str(fed.config_path)}))
        yield fed, tenants, coordinator


# -- the users ----------------------------------------------------------------------------


class Users:
    """The test's users of one node: chat through its gateway, give feedback, and read back
    (from the node's log, where the gateway recorded the session) which version served."""

    def __init__(self, tenant: Tenant, rng: random.Random) -> None:
        assert tenant.gateway is not None
        self.tenant, self.gateway, self.rng = tenant, tenant.gateway, rng
        self.client = openai.OpenAI(base_url=self.gateway.url + "/v1", api_key=TOKEN,
                                    max_retries=0)
        self.http = httpx.Client(base_url=self.gateway.url,
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        self.store = tenant.node.open_store()
        self.asked = 0
        self.arms: dict[str, dict[str, str]] = {}  # test id -> user -> arm

    def close(self) -> None:
        self.http.close()
        self.store.close()

    def ask(self, user: str, test_id: str) -> tuple[str, str | None, str]:
        """One session of ``user``; returns (trajectory id, arm, version served)."""
        self.asked += 1
        raw = self.client.chat.completions.with_raw_response.create(
            model="hermes-fed", user=user, max_tokens=4, temperature=0.0,
            messages=[{"role": "user", "content": f"What is {self.asked}+3? ({test_id})"}])
        assert raw.parse().choices[0].message is not None
        tid = raw.headers["x-hermes-trajectory-id"]
        started = self.store.read_stream("session-" + tid.split("-")[1])[0].data
        assert started.get("ab_test_id") in (test_id, None), started
        return tid, started.get("variant"), str(started["model_version"])

    def play(self, test_id: str, per_arm: int, cap: int = 400) -> dict[str, int]:
        """Users until each arm of ``test_id`` has ``per_arm`` sessions; they like the
        treatment's answers better (the test plays users)."""
        seen = {"control": 0, "treatment": 0}
        i = 0
        while min(seen.values()) < per_arm:
            assert i < cap, f"{self.tenant.name}: {seen} after {cap} users of {test_id}"
            user = f"{self.tenant.name}-user-{i}"
            tid, arm, _ = self.ask(user, test_id)
            i += 1
            assert arm in seen, arm
            seen[arm] += 1
            self.arms.setdefault(test_id, {})[user] = arm
            # every answer is accepted; control's are edited more (ratio 0.3-0.7, not
            # 0-0.2): a clear, low-variance difference the A/B's always-valid test (tuned
            # for small lifts over many users) can see with 31 users per arm
            low, high = (0.0, 0.2) if arm == "treatment" else (0.3, 0.7)
            for feedback in ({"signal": "accepted"},
                             {"signal": "edited", "edit_ratio": self.rng.uniform(low, high)}):
                reply = self.http.post("/v1/feedback", json={"trajectory_id": tid, **feedback})
                assert reply.status_code == 200, reply.text
        return seen


# -- the coordinator ----------------------------------------------------------------------
def _autopilot(coordinator: Path, config: Path, log: Path) -> subprocess.Popen[bytes]:
    log.parent.mkdir(exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(_cli("coordinator", "autopilot", "--dir", str(coordinator),
                                     "--config", str(config), "--once"),
                                stdout=out, stderr=subprocess.STDOUT, env=_env(),
                                start_new_session=True)


def _kill9_during_round(proc: subprocess.Popen[bytes], coordinator: Path) -> bool:
    """``kill -9`` the autopilot's process group (it, and the ``flwr`` CLI it waits on) once
    the round it started is running in the ServerApp; False when the step ended first or
    was not a round."""
    while proc.poll() is None:
        try:
            pending = _status(coordinator)["pending"]
        except LogNotFoundError:
            time.sleep(0.2)  # a poll interval: the first step has not written the log yet
            continue
        if pending is not None and pending["action"] == "train" \
                and _coordinator_events(coordinator, ("RoundStarted",)):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            return True
        time.sleep(0.2)  # a poll interval
    return False


def test_the_autopilot_turns_a_whole_cycle_with_a_kill_and_every_gateway_serves_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: the simulated clock every process reads (the nodes date sessions by it too)
    clock = OffsetClock(tmp_path / "clock.json")
    clock.advance(timedelta(0))
    monkeypatch.setenv(CLOCK_ENV, str(clock.path))
    config = tmp_path / "autopilot.toml"
    config.write_text(AUTOPILOT_TOML.format(base=BASE_MODEL, canary_min=CANARY_PER_ARM))
    rng = random.Random(20)
    lines: list[str] = []
    played: dict[str, dict[str, dict[str, int]]] = {}
    killed = False
    with _stack(tmp_path) as (_fed, tenants, coordinator):
        users = [Users(t, rng) for t in tenants]
        try:
            # Execute: the autopilot, one step per process, until the cycle ends
            for n in range(MAX_STEPS):
                log = tmp_path / "autopilot" / f"step-{n:02d}.log"
                proc = _autopilot(coordinator, config, log)
                if not killed and _kill9_during_round(proc, coordinator):
                    killed = True
                    lines.append("(killed -9 during the round)")
                    continue
                assert proc.wait(timeout=600) == 0, log.read_text()
                # what --once prints: one line saying what the step did (log lines aside)
                line = next(x for x in log.read_text().splitlines() if not x.startswith("ts="))
                lines.append(line)
                if " ended: " in line:
                    break
                assert ": failed" not in line, log.read_text()
                if line.startswith("wait:"):
                    status = _status(coordinator)
                    plan = status["plan"]["wanted"]["test_id"]
                    if status["phase"] in ("canary", "ab") and plan not in played:
                        per_arm = CANARY_PER_ARM if status["phase"] == "canary" else AB_PER_ARM
                        for u in users:
                            assert u.gateway is not None
                            assert plan_of(u.gateway, plan) == plan
                        played[plan] = {u.tenant.name: u.play(plan, per_arm) for u in users}
                    clock.advance(timedelta(days=1.05))
            else:
                pytest.fail(f"no end of cycle in {MAX_STEPS} steps: {lines}")
            status = _status(coordinator)
            version = status["cycles_ended"] and status["production"]
            assert version, (status, lines)
            final_plan = f"prod-{version}"
            # every user of each gateway (the A/B's control and treatment users, newcomers) is
            # on the new version
            served: dict[str, set[str]] = {}
            for u in users:
                assert u.gateway is not None
                assert plan_of(u.gateway, final_plan) == final_plan, lines
                arms = u.arms[f"ab-{version}"]
                who = [*[user for user, arm in arms.items() if arm == "control"][:5],
                       *[user for user, arm in arms.items() if arm == "treatment"][:5],
                       *(f"{u.tenant.name}-newcomer-{i}" for i in range(4))]
                assert len(who) == 14
                served[u.tenant.name] = {u.ask(user, final_plan)[2] for user in who}
        finally:
            for u in users:
                u.close()
        cli_status = subprocess.run(_cli("coordinator", "status", "--dir", str(coordinator),
                                         "--json"), capture_output=True, text=True,
                                    env=_env(), timeout=120)
        intents = _coordinator_events(coordinator, ("AutopilotStepIntended",))
        outcomes = _coordinator_events(coordinator, ("AutopilotStepCompleted",))
        ended = _coordinator_events(coordinator, ("AutopilotCycleEnded",))
        rounds = _coordinator_events(coordinator, ("RoundStarted", "RoundCompleted"))
        promotions = _coordinator_events(coordinator, ("ModelPromoted",))
        from coordinator.logs.registry import AdapterRegistry

        with AdapterRegistry.open_existing(coordinator) as registry:
            published = [v.version for v in registry.versions()
                         if v.lineage.get("mode") != "init"]
        node_plans = {t.name: _node_log(t) for t in tenants}

    # Assert: the kill happened mid-round, and the cycle went the whole way
    assert killed, lines
    assert served == {t: {version} for t in TENANTS}, (served, lines)
    steps = [(e.data["action"], e.data["params"].get("stage")) for e in intents]
    phases = [s for s in steps if s[0] in ("train", "offline_look", "promote", "canary_look",
                                           "ab_look")]
    assert _dedupe(phases) == [("train", None), ("offline_look", None), ("promote", "canary"),
                               ("canary_look", None), ("promote", "ab"), ("ab_look", None),
                               ("promote", "production")], (steps, lines)
    assert all(e.data["reason"] for e in intents), steps
    train = next(e for e in intents if e.data["action"] == "train")
    assert "nodes say train" in train.data["reason"], train.data["reason"]
    assert all(e.data["ok"] for e in outcomes), [e.data for e in outcomes if not e.data["ok"]]
    assert len(outcomes) == len(intents)  # the killed step was finished, not lost
    assert [e.data["outcome"] for e in ended] == ["production"]
    assert [e.data["version"] for e in ended] == [version]
    ab = [e for e in outcomes if e.data["action"] == "ab_look"]
    assert ab[-1].data["result"]["verdict"] == "SHIP", ab[-1].data

    # Assert: one round, one version, one promotion per stage (nothing repeated after the
    # kill)
    assert [e.type for e in rounds] == ["RoundStarted", "RoundCompleted"], rounds
    assert published == [version]
    stages = [e.data["stage"] for e in promotions if e.data["version"] == version]
    assert stages == ["candidate", "canary", "ab", "production"], stages

    # Assert: every node applied the canary, A/B and production plans, and trained once
    for tenant, (plans, trained) in node_plans.items():
        assert plans == ["prod-base", f"canary-{version}", f"ab-{version}",
                         f"prod-{version}"], (tenant, plans)
        assert trained == 1, tenant
    assert set(played) == {f"canary-{version}", f"ab-{version}"}, played

    # Assert: `coordinator status --json` names both tenants
    assert cli_status.returncode == 0, cli_status.stderr
    body = json.loads(cli_status.stdout)
    assert set(body["readiness"]) == set(TENANTS)
    assert body["production"] == version
    assert body["plan"]["applied"]["test_id"] == final_plan


def _dedupe(items: list[Any]) -> list[Any]:
    """``items`` without consecutive repeats (a canary or A/B may look more than once)."""
    return [x for i, x in enumerate(items) if i == 0 or items[i - 1] != x]


def _node_log(tenant: Tenant) -> tuple[list[str], int]:
    """The plans the node's log applied, in order, and its FederatedRoundTrained count."""
    from hermes_fed.serving.plan import PLAN_STREAM, TrafficPlan

    store = tenant.node.open_store()
    try:
        plans = [TrafficPlan.from_event_data(e.data).test_id
                 for e in store.read_stream(PLAN_STREAM) if e.type == "TrafficPlanApplied"]
        trained = len(list(store.read(types=("FederatedRoundTrained",))))
    finally:
        store.close()
    return plans, trained
