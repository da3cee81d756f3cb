"""How A/B looks hook into federated rounds: run-config keys and failure isolation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from coordinator.logs.abtest import ABTestLog
from coordinator.logs.promotion import PromotionLog
from coordinator.logs.registry import AdapterRegistry
from coordinator.rounds.config import RoundsConfig
from coordinator.rounds.looks import look_after_round, look_at_open_tests


@pytest.mark.parametrize(("given", "ab_only", "ab_looks"), [
    ({}, 0, 1),
    ({"ab-only": 1}, 1, 1),
    ({"ab-looks": "0"}, 0, 0),
])
def test_run_config_keys(given: dict[str, Any], ab_only: int, ab_looks: int) -> None:
    cfg = RoundsConfig.from_run_config({"coordinator-dir": "c", "base-model": "b", **given},
                                       env={})
    assert (cfg.ab_only, cfg.ab_looks) == (ab_only, ab_looks)


def test_nothing_to_ask_sends_nothing(tmp_path: Path) -> None:
    # No open test and no production version: the grid is never touched
    with AdapterRegistry.open(tmp_path) as registry:
        assert look_at_open_tests(None, registry, [1, 2], timeout=1.0, interval=0.1) == []  # type: ignore[arg-type]


def test_a_failed_look_after_a_round_is_logged_not_raised(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: a candidate under test that was never published, so its offline look fails
    with AdapterRegistry.open(tmp_path) as registry:
        PromotionLog(registry.store).promote("v-ghost")
        ABTestLog(registry.store).create("base", "v-ghost", ab_test_id="ab-ghost")
        cfg = RoundsConfig(coordinator_dir=str(tmp_path), base_model="b")
        # Execute
        with caplog.at_level(logging.ERROR, logger="coordinator.rounds.looks"):
            look_after_round(None, registry, [1], cfg)  # type: ignore[arg-type]
        # Assert: logged by type, the test untouched
        assert "action=ab_look status=failed error=FederationError" in caplog.text
        assert ABTestLog(registry.store).get("ab-ghost").looks == ()
