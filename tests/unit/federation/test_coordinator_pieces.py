"""Coordinator pieces that need no Flower run: config, registry, report, process helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from coordinator.deploy.superlink import COMPLETED, RunOutcome
from coordinator.logs.registry import MODEL_STREAM, AdapterRegistry
from coordinator.rounds.config import CONFIG_ENV, RoundsConfig
from coordinator.rounds.report import NodeRoundReport, RoundReport, Timing, render_table
from hermes_fed.errors import ConfigError, FederationError
from hermes_fed.federation.processes import (
    FlowerProcess,
    free_port,
    node_config_arg,
    spawn,
    wait_healthy,
)
from hermes_fed.federation.round_spec import RoundSpec
from hermes_fed.federation.settings import RoundSettings


# --- run config ---------------------------------------------------------------------------
def test_rounds_config_merges_the_coordinator_file_under_the_run_config(tmp_path: Path) -> None:
    # Prepare
    path = tmp_path / "coordinator.json"
    path.write_text(json.dumps({"coordinator-dir": "/c", "base-model": "/m", "mode": "exact",
                                "local-steps": "3", "lr": 0.01}))
    # Execute
    cfg = RoundsConfig.from_run_config({"mode": "fedavg", "rounds": 2},
                                       env={CONFIG_ENV: str(path)})
    # Assert: the run config wins; values are coerced to the field types
    assert (cfg.mode, cfg.rounds, cfg.settings.local_steps, cfg.settings.lr) == (
        "fedavg", 2, 3, 0.01)
    assert (cfg.coordinator_dir, cfg.base_model) == ("/c", "/m")


@pytest.mark.parametrize(
    ("override", "message"),
    [({"mode": "median"}, "mode must be one of"), ({"rank": 0}, "rank must be an integer >= 1, got 0"),
     ({"min-nodes": 0}, "min-nodes must be >= 1"), ({"base-model": ""}, "base-model"),
     ({"local-steps": 2.5}, "local-steps must be an integer, got 2.5"),
     ({"poll-interval": 0}, "poll-interval must be > 0")],
)
def test_rounds_config_rejects_bad_values_by_name(override: dict[str, object],
                                                  message: str) -> None:
    run_config = {"coordinator-dir": "/c", "base-model": "/m", **override}
    with pytest.raises(ConfigError, match=message):
        RoundsConfig.from_run_config(run_config, env={})


def test_an_unknown_run_config_key_is_refused_by_name() -> None:
    from coordinator.rounds.config import refuse_unknown_keys
    from coordinator.rounds.dp import PrivacySettings

    known = RoundsConfig.known_keys() | PrivacySettings.known_keys()
    refuse_unknown_keys({"rank": 4, "dp-clip": 1.0, "coordinator-dir": "/c"}, known)
    with pytest.raises(ConfigError, match=r"unknown run config key.*'r'"):
        refuse_unknown_keys({"r": 4, "rank": 4}, known)


def test_rounds_config_names_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a readable JSON file"):
        RoundsConfig.from_run_config({}, env={CONFIG_ENV: str(tmp_path / "missing.json")})


def test_message_config_carries_what_the_node_parses() -> None:
    cfg = RoundsConfig(coordinator_dir="/c", base_model="/m", mode="frozen-a",
                       settings=RoundSettings(rank=4, alpha=8.0))
    spec = RoundSpec.from_record(cfg.spec(3, "v2-abc").to_record())
    assert (spec.round, spec.mode, spec.parent_version, spec.settings.rank,
            spec.settings.alpha) == (3, "frozen-a", "v2-abc", 4, 8.0)
    assert spec.training_config().frozen_a is True


def test_the_round_learning_rate_schedule_reaches_the_node() -> None:
    # Prepare
    cfg = RoundsConfig(coordinator_dir="/c", base_model="/m", settings=RoundSettings(
        lr_schedule="linear", warmup_steps=7, local_steps=50))
    message = dict(cfg.spec(1, "v1").to_record())
    # Execute
    local = RoundSpec.from_record(message).training_config()
    older = RoundSpec.from_record({k: v for k, v in message.items()
                                   if k not in ("lr-schedule", "warmup-steps")})
    # Assert: the node trains what the coordinator ran; a config without the keys (an older
    # coordinator) means the constant rate it used to run
    assert (local.lr_schedule, local.warmup_steps) == ("linear", 7)
    training = cfg.settings.training_config(cfg.mode)
    assert (training.lr_schedule, training.warmup_steps) == ("linear", 7)
    assert (older.settings.lr_schedule, older.settings.warmup_steps) == ("constant", 0)


def test_a_session_7_coordinator_message_still_parses() -> None:
    # Prepare: the keys a coordinator sent before the wire contract had one name per setting
    old = {"round": 2, "mode": "exact", "parent-version": "v1", "r": 4, "alpha": 8.0,
           "lr": 0.001, "max-steps": 12, "batch-size": 8, "max-length": 256, "seed": 0,
           "frozen-a-seed": 0}
    # Execute
    spec = RoundSpec.from_record(old)
    # Assert
    assert (spec.settings.rank, spec.settings.local_steps, spec.settings.lr_schedule) == (
        4, 12, "constant")


# --- registry -----------------------------------------------------------------------------
def _adapter(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"base_model.model.l0.q_proj.lora_A.weight": rng.normal(size=(2, 6)).astype(np.float32),
            "base_model.model.l0.q_proj.lora_B.weight": rng.normal(size=(6, 2)).astype(np.float32)}


def test_registry_publishes_versions_with_lineage_in_the_coordinator_log(tmp_path: Path) -> None:
    from hermes_fed.training.config import LoraTrainingConfig

    # Prepare
    config = LoraTrainingConfig(r=2, alpha=4.0)
    lineage = {"round": 1, "mode": "exact", "participating_nodes": ["1", "2"],
               "per_node": {"1": {"num_examples": 30}}, "residual": 0.01}
    # Execute
    with AdapterRegistry.open(tmp_path) as registry:
        first = registry.publish(_adapter(0), parent=None, lineage={"round": 0},
                                 training_config=config)
        second = registry.publish(_adapter(1), parent=first.version, lineage=lineage,
                                  training_config=config)
    # Assert: a fresh registry reads the same history back from the log
    with AdapterRegistry.open(tmp_path) as registry:
        versions = registry.versions()
        assert [v.version for v in versions] == [first.version, second.version]
        assert versions[1].parent == first.version
        assert versions[1].lineage == lineage
        assert versions[0].version.startswith("v1-") and versions[1].version.startswith("v2-")
        loaded = registry.load(second.version)
        assert all(np.array_equal(loaded[k], v) for k, v in _adapter(1).items())
        assert [e.type for e in registry.store.read_stream(MODEL_STREAM)] == [
            "AdapterVersionPublished"] * 2


def test_registry_refuses_a_tampered_adapter_file(tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    from hermes_fed.errors import AdapterError
    from hermes_fed.training.config import LoraTrainingConfig

    with AdapterRegistry.open(tmp_path) as registry:
        v = registry.publish(_adapter(0), parent=None, lineage={},
                             training_config=LoraTrainingConfig(r=2))
        save_file(_adapter(5), str(registry.path(v.version) / "adapter_model.safetensors"))
        with pytest.raises((FederationError, AdapterError)):
            registry.load(v.version)


# --- report -------------------------------------------------------------------------------
def _node(node_id: str, n: int, before: float | None, after: float | None) -> NodeRoundReport:
    return NodeRoundReport(node_id=node_id, num_examples=n, train_loss=1.0, update_norm=0.5,
                           bytes_down=2048, bytes_up=1024, handler_seconds=4.0,
                           train_seconds=1.0, heldout_before=before, heldout_after=after,
                           heldout_n=n)


def test_report_weights_heldout_means_by_examples_and_is_json_safe() -> None:
    timing = Timing(train_exchange=10.0, evaluate_exchange=5.0, aggregation=0.1,
                    local_training_max=1.0, node_handler_max=4.0, publish=0.2)
    report = RoundReport(run_id=7, round=1, mode="exact", parent_version="v1", version="v2",
                         nodes=(_node("a", 20, -8.0, -7.0), _node("b", 60, -6.0, None)),
                         residual=float("nan"), fedavg_error=None, timing=timing)
    body = report.to_dict()
    assert body["heldout_before"] == pytest.approx((-8.0 * 20 - 6.0 * 60) / 80)
    assert body["heldout_after"] == pytest.approx(-7.0)
    assert body["residual"] is None  # NaN is not JSON
    assert body["timing"]["messaging"] == pytest.approx(10.0 - 4.0 + 5.0)
    json.dumps(body, allow_nan=False)
    table = render_table([report])
    assert "exact" in table and "v2" in table and table.count("\n") >= 4


# --- process helpers ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("config", "rendered"),
    [({"tenant-id": "a", "k-min": 20}, 'tenant-id="a" k-min=20'),
     ({"store": "sqlite:////x/y.db", "f": 0.5}, 'store="sqlite:////x/y.db" f=0.5'),
     ({"exclude-used": False, "x": True}, "exclude-used=false x=true")],
)
def test_node_config_arg_renders_flowers_syntax(config: dict[str, str | int | float | bool],
                                                rendered: str) -> None:
    import tomllib

    assert node_config_arg(config) == rendered
    assert tomllib.loads(rendered.replace(" ", "\n")) == config  # what the SuperNode parses


def test_node_config_arg_refuses_quotes() -> None:
    with pytest.raises(FederationError, match="tenant-id"):
        node_config_arg({"tenant-id": 'a" evil="1'})


def test_wait_healthy_reports_a_process_that_died(tmp_path: Path) -> None:
    proc = spawn("dies", [sys.executable, "-c", "print('bad flag'); raise SystemExit(3)"],
                 env={}, log_path=tmp_path / "dies.log", port=free_port())
    try:
        with pytest.raises(FederationError, match=r"(?s)exited with 3.*bad flag"):
            wait_healthy(proc, timeout=30)
    finally:
        proc.stop()


def test_wait_healthy_polls_until_the_health_endpoint_answers(tmp_path: Path) -> None:
    port = free_port()
    server = ("import http.server as h\n"
              "class H(h.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        self.send_response(200 if self.path == '/health' else 404)\n"
              "        self.end_headers()\n"
              f"h.HTTPServer(('127.0.0.1', {port}), H).serve_forever()\n")
    proc: FlowerProcess = spawn("health", [sys.executable, "-c", server], env={},
                                log_path=tmp_path / "health.log", port=port)
    try:
        assert wait_healthy(proc, timeout=30) >= 0.0
    finally:
        proc.stop()
    assert not proc.alive()


def test_run_outcome_is_completed_only_for_finished_completed() -> None:
    def outcome(status: str) -> RunOutcome:
        return RunOutcome("1", status, "", 1.0, 0, 0, "")

    assert outcome(COMPLETED).completed
    assert not outcome("finished:failed").completed


def test_looks_read_the_injected_clock_and_the_wall_clock_by_default(tmp_path: Path) -> None:
    # Arrange: a simulator's clock file, advanced by a week
    from datetime import timedelta

    from hermes_fed.clock import CLOCK_ENV, OffsetClock, WallClock, current_clock
    from hermes_fed.events import utcnow

    path = tmp_path / "clock.json"
    OffsetClock(path).advance(timedelta(days=7))

    # Execute
    before = utcnow()
    wall, simulated = current_clock({}), current_clock({CLOCK_ENV: str(path)})
    now, ahead = wall.now(), simulated.now()
    after = utcnow()

    # Assert: no file, the wall clock; with one, the wall clock plus its offset
    assert isinstance(wall, WallClock)
    assert before <= now <= after
    assert before + timedelta(days=7) <= ahead <= after + timedelta(days=7)


def test_a_malformed_clock_file_is_a_config_error(tmp_path: Path) -> None:
    from hermes_fed.clock import OffsetClock

    path = tmp_path / "clock.json"
    path.write_text("{}")
    with pytest.raises(ConfigError, match="not a clock file"):
        OffsetClock(path).now()
