"""The demo's knobs: refused when bad, and what its autopilot is told to do."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from coordinator.autopilot.config import AutopilotConfig, load_config
from coordinator.rounds.config import RoundsConfig
from examples.flywheel.demo import DemoConfig, autopilot_toml
from hermes_fed.errors import ConfigError


@pytest.mark.parametrize(("values", "named"), [
    ({"days": 0}, "days"),
    ({"mode": "median"}, "mode"),
    ({"lr_schedule": "step"}, "lr_schedule"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"ab_share": 1.0}, "ab_share"),
    ({"canary_share": 0.0}, "canary_share"),
    ({"ab_days": 0}, "ab_days"),
    ({"rounds_per_cycle": 0}, "rounds_per_cycle"),
    ({"temperature": -0.1}, "temperature"),
    ({"pii_rate": 1.5}, "pii_rate"),
    ({"pii_rate": -0.1}, "pii_rate"),
])
def test_bad_demo_values_are_refused_by_name(values: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        DemoConfig(directory=Path("/tmp/x"), **values)  # type: ignore[arg-type]


def test_the_autopilot_trains_with_the_demos_schedule_and_stage_shares(tmp_path: Path) -> None:
    # Prepare
    cfg = DemoConfig(directory=tmp_path, local_steps=120, lr_schedule="linear", warmup_steps=12,
                     canary_share=0.2, ab_share=0.4, ab_days=6, mode="fedavg",
                     rounds_per_cycle=2)
    path = tmp_path / "autopilot.toml"
    # Execute: the file the demo writes, read as `coordinator autopilot --config` reads it
    path.write_text(autopilot_toml(cfg, tmp_path / "model", 3))
    config = load_config(path)
    rounds = RoundsConfig.from_run_config(
        {"coordinator-dir": str(tmp_path), "base-model": config.base_model, "mode": config.mode,
         **config.round_config}, env={})
    training = rounds.settings.training_config(rounds.mode)
    # Assert: the rounds' schedule, the stage shares and the A/B's length are the demo's
    assert (training.lr_schedule, training.warmup_steps, training.max_steps) == ("linear", 12, 120)
    assert (config.canary_share, config.ab_share, config.ab_duration_days) == (0.2, 0.4, 6)
    assert config.mode == "fedavg" and config.base_model == str((tmp_path / "model").resolve())
    assert config.round_config["min-nodes"] == 3
    assert config.rounds_per_cycle == 2  # each cycle continues its own rounds
    # the decision rules are the production defaults: the demo sizes its test, not its rules
    defaults = AutopilotConfig()
    for rule in ("canary_alpha", "canary_max_drop", "quality_max_drop", "quality_window"):
        assert getattr(config, rule) == getattr(defaults, rule), rule
    assert "canary_alpha" not in tomllib.loads(path.read_text())["autopilot"]
    assert DemoConfig(directory=tmp_path).lr_schedule == "cosine"


def test_a_share_combination_the_autopilot_refuses_fails_before_any_process(tmp_path: Path) -> None:
    cfg = DemoConfig(directory=tmp_path, canary_share=0.6, ab_share=0.6)
    path = tmp_path / "autopilot.toml"
    path.write_text(autopilot_toml(cfg, tmp_path / "model", 3))
    with pytest.raises(ConfigError, match="canary_share"):
        load_config(path)
