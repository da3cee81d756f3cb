"""The demo's knobs: refused when bad, and what its federated rounds are told to train."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.rounds.config import RoundsConfig
from examples.flywheel.demo import DemoConfig, _run_config
from hermes_fed.errors import ConfigError


@pytest.mark.parametrize(("values", "named"), [
    ({"rounds": 0}, "rounds"),
    ({"mode": "median"}, "mode"),
    ({"lr_schedule": "step"}, "lr_schedule"),
    ({"warmup_steps": -1}, "warmup_steps"),
    ({"ab_split": 1.0}, "ab_split"),
    ({"temperature": -0.1}, "temperature"),
])
def test_bad_demo_values_are_refused_by_name(values: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        DemoConfig(directory=Path("/tmp/x"), **values)  # type: ignore[arg-type]


def test_the_rounds_train_with_the_demos_schedule(tmp_path: Path) -> None:
    # Prepare
    cfg = DemoConfig(directory=tmp_path, local_steps=120, lr_schedule="linear", warmup_steps=12)
    # Execute: the run config as the ServerApp parses it
    rounds = RoundsConfig.from_run_config(_run_config(cfg, tmp_path / "c", tmp_path / "m", 3),
                                          env={})
    training = rounds.settings.training_config(rounds.mode)
    # Assert
    assert (training.lr_schedule, training.warmup_steps, training.max_steps) == ("linear", 12, 120)
    assert DemoConfig(directory=tmp_path).lr_schedule == "cosine"
