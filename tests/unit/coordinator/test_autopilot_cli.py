"""``coordinator status`` names tenants; a real ``kill -9`` mid-step resumes from the log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from coordinator.autopilot.runner import Autopilot
from coordinator.autopilot.state import Action, Phase
from coordinator.logs.registry import AdapterRegistry
from hermes_fed.cli import main
from tests.unit.coordinator.autopilot_nodes import ScriptedNodes, SimClock, log_summary
from tests.unit.coordinator.test_autopilot_runner import CFG

REPO = Path(__file__).resolve().parents[3]


def test_status_json_names_tenants_the_plan_and_the_reasons(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: one cycle into its canary
    clock = SimClock()
    with AdapterRegistry.open(tmp_path) as registry:
        nodes = ScriptedNodes(registry, train={"acme": True, "globex": True, "umbrella": True},
                              tenants=("acme", "globex", "initech", "umbrella"),
                              silent={"umbrella"})
        Autopilot(registry, nodes, CFG, clock).run_until_idle()
    # Execute
    assert main(["coordinator", "status", "--dir", str(tmp_path), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    # Assert
    assert body["phase"] == "canary" and body["cycle"] == 1
    assert set(body["readiness"]) == {"acme", "globex", "initech"}
    assert body["readiness"]["initech"]["train"] is False
    assert body["unanswered"] == ["umbrella: no reply"]
    assert set(body["plan"]["tenants"]) == {"acme", "globex", "initech"}
    assert body["plan"]["wanted"]["test_id"] == f"canary-{body['candidate']}"
    assert body["plan"]["applied"] == body["plan"]["wanted"]
    trained = next(d for d in body["decisions"] if d["kind"] == "intended"
                   and d["what"] == "train")
    assert "2 of 3 nodes say train (acme, globex)" in trained["reason"]
    assert not any(str(t).isdigit() or t.startswith("node-") for t in body["readiness"])
    # the text form says the same
    assert main(["coordinator", "status", "--dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "cycle 1: canary" in text and "acme" in text and "rule=volume" in text
    assert "umbrella: no reply (no answer)" in text


def test_status_of_a_directory_without_a_log_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["coordinator", "status", "--dir", str(tmp_path / "nope")]) == 1
    assert "no coordinator log" in capsys.readouterr().err


_CHILD = """
import sys
from pathlib import Path
from coordinator.autopilot.runner import Autopilot
from coordinator.logs.registry import AdapterRegistry
from tests.unit.coordinator.autopilot_nodes import ScriptedNodes, SimClock
from tests.unit.coordinator.test_autopilot_runner import CFG
root = Path(sys.argv[1])
with AdapterRegistry.open(root) as registry:
    nodes = ScriptedNodes(registry, train={"acme": True, "globex": True}, hold=root / "held")
    Autopilot(registry, nodes, CFG, SimClock()).run_until_idle()
"""


def test_kill_9_mid_round_resumes_without_a_second_round_or_version(tmp_path: Path) -> None:
    # Prepare: an autopilot process that hangs right after its round published a version
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tmp_path)], env=env,
                             cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "held").exists():  # poll the marker, never sleep blindly
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the child never reached its round"
            time.sleep(0.05)
        # Execute: kill -9 mid-step, then resume in this process
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
    with AdapterRegistry.open(tmp_path) as registry:
        state = Autopilot(registry, ScriptedNodes(registry), CFG, SimClock()).state()
        assert state.pending is not None and state.pending.action is Action.TRAIN
        nodes = ScriptedNodes(registry, train={"acme": True, "globex": True})
        Autopilot(registry, nodes, CFG, SimClock()).run_until_idle()
        summary = log_summary(registry)
        state = Autopilot(registry, nodes, CFG, SimClock()).state()
    # Assert: the round the killed process ran is the cycle's; none ran again
    assert child.returncode == -signal.SIGKILL
    assert not any(c.startswith("run_rounds") for c in nodes.calls)
    published = [e[1] for e in summary if e[0] == "AdapterVersionPublished"]
    assert published == [(tmp_path / "held").read_text()]
    assert state.candidate == published[0] and state.phase is Phase.CANARY


def test_the_autopilot_command_records_why_a_step_failed_and_stops_on_sigterm(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare: a coordinator directory nobody serves from (no SuperLink, no nodes)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-m", "hermes_fed.cli", "coordinator",
                              "autopilot", "--dir", str(tmp_path), "--cadence-seconds", "0.2",
                              "--base-model", str(tmp_path / "model")],
                             env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    try:
        # Execute: its first step (delivering the base plan) fails; then SIGTERM. Its log
        # lines say when it stepped (opening the SQLite log here while the child creates it
        # could make the child's own open fail with "database is locked").
        seen = b""
        assert child.stderr is not None
        while b"event=step" not in seen:
            line = child.stderr.readline()
            assert line, f"the autopilot exited: {seen.decode()}"
            seen += line
        child.send_signal(signal.SIGTERM)
        _, rest = child.communicate(timeout=60)
        err = seen + rest
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
    # Assert: a clean stop, and the failure is in the log with its reason
    assert child.returncode == 0, err.decode()
    assert "event=signal signal=SIGTERM" in err.decode() and "event=stop" in err.decode()
    assert main(["coordinator", "status", "--dir", str(tmp_path), "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    failed = [d for d in body["decisions"] if d["kind"] == "failed"]
    assert failed[0]["what"] == "deploy"
    assert "no coordinator is serving" in failed[0]["reason"]
    assert body["pending"] is None and body["plan"]["applied"] is None


def test_until_idle_takes_one_beat_prints_its_steps_and_exits_1_on_a_failed_step(
        tmp_path: Path) -> None:
    # Prepare: a coordinator directory nobody serves from (no SuperLink, no nodes)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-m", "hermes_fed.cli", "coordinator", "autopilot", "--dir",
            str(tmp_path), "--base-model", str(tmp_path / "model")]
    # Execute: one beat; its first step (delivering the base plan) fails
    beat = subprocess.run([*argv, "--until-idle"], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    both = subprocess.run([*argv, "--until-idle", "--once"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    # Assert: the beat stopped at the failed step (no tight retry loop), said so on stdout
    # and in its exit status; --once and --until-idle are one or the other
    assert beat.returncode == 1, beat.stderr
    lines = beat.stdout.splitlines()
    assert len(lines) == 1 and "deploy" in lines[0] and "failed" in lines[0], lines
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
