"""The SuperNode launcher (a shorter pull interval for Flower's own ``flower-supernode``)
and early retries of message objects.

The launcher caps the sleeps of one flwr 1.42 module; these tests fail when an upgraded
Flower no longer has what the cap was read against (then the launcher would warn and run
Flower unchanged, slow but correct) and check the knob's bounds and wiring.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hermes_fed.federation.object_retry import SERVERAPP_GRID, SUPERNODE_LOOP, retry_early
from hermes_fed.federation.processes import flower_env, poll_env
from hermes_fed.federation.supernode_launcher import (
    POLL_ENV,
    CappedSleepTime,
    patch_supported,
    poll_interval,
)


def test_the_installed_flower_is_the_one_the_cap_was_read_against() -> None:
    # Execute
    why = patch_supported(importlib.import_module("flwr.supernode.start_client_internal"))

    # Assert: on a Flower upgrade this names what changed; re-read the loop, then re-pin
    assert why is None


def test_the_interval_comes_from_the_environment_within_bounds() -> None:
    # Execute / Assert
    assert poll_interval({}) is None
    assert poll_interval({POLL_ENV: " "}) is None
    assert poll_interval({POLL_ENV: "0.2"}) == 0.2
    assert poll_interval({POLL_ENV: "3"}) == 3.0
    for bad in ("0", "0.001", "3.5", "-1", "nan", "inf", "fast"):
        with pytest.raises(ValueError, match=POLL_ENV):
            poll_interval({POLL_ENV: bad})


def test_capped_time_caps_only_sleep_and_is_the_time_module_otherwise() -> None:
    # Prepare
    capped = CappedSleepTime(0.01)

    # Execute
    started = time.monotonic()
    capped.sleep(3)
    slept = time.monotonic() - started

    # Assert: Flower's sleep(3) became a sleep(0.01); everything else is time's own
    assert slept < 3.0 / 2
    assert capped.monotonic is time.monotonic
    assert capped.time is time.time
    assert capped.perf_counter is time.perf_counter


def test_poll_env_sets_flowers_superexec_knob_and_the_launchers() -> None:
    # Execute / Assert
    assert poll_env(None) == {}
    assert poll_env(None, supernode=True) == {}
    assert poll_env(0.2) == {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2"}
    assert poll_env(0.25, supernode=True) == {"FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.25",
                                              POLL_ENV: "0.25"}
    with pytest.raises(ValueError, match=POLL_ENV):
        poll_env(0.0)


def test_the_launcher_runs_flowers_own_entry_point_with_the_same_arguments(
        tmp_path: Path) -> None:
    # Execute: flower-supernode's own --help, through the launcher with the cap set
    res = subprocess.run(
        [sys.executable, "-m", "hermes_fed.federation.supernode_launcher", "--help"],
        env=flower_env(tmp_path, poll_env(0.2, supernode=True)),
        capture_output=True, text=True, timeout=120, check=False)

    # Assert
    assert res.returncode == 0, res.stderr
    assert "usage: flower-supernode" in res.stdout
    assert "--superlink" in res.stdout
    assert "supernode poll interval capped at 0.200 s" in res.stderr


def test_node_join_keeps_flowers_pace_unless_given_a_poll_interval_in_bounds(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    import argparse

    from tenant_node.cli.join_command import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    join = ["join", "--superlink", "127.0.0.1:9092", "--base-model", "/models/base"]

    # Execute / Assert
    assert parser.parse_args(join).poll_interval is None
    assert parser.parse_args([*join, "--poll-interval", "0.2"]).poll_interval == 0.2
    with pytest.raises(SystemExit):
        parser.parse_args([*join, "--poll-interval", "5"])
    assert "--poll-interval must be seconds between 0.01 and 3.0" in capsys.readouterr().err


@pytest.mark.parametrize("module_name", [SUPERNODE_LOOP, SERVERAPP_GRID])
def test_early_object_retries_fit_the_installed_flower_and_still_pull(
        module_name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: restore Flower's own pull_objects after the test
    from flwr.supercore.inflatable.inflatable_utils import ObjectUnavailableError

    module = importlib.import_module(module_name)
    monkeypatch.setattr(module, "pull_objects", module.pull_objects)
    asked: list[str] = []

    def pull_object(object_id: str) -> bytes:  # the sender's upload lands after one ask
        asked.append(object_id)
        if len(asked) == 1:
            raise ObjectUnavailableError(object_id)
        return b"content"

    # Execute
    applied = retry_early(module_name, 0.05)
    applied_again = retry_early(module_name, 0.2)
    got = module.pull_objects(["obj"], pull_object_fn=pull_object)

    # Assert: first retry after 0.2 s, never more than Flower's first wait (1 s) apart
    assert applied and applied_again
    assert module.pull_objects.keywords == {"initial_backoff": 0.2, "backoff_cap": 1.0}
    assert got == {"obj": b"content"}
    assert asked == ["obj", "obj"]


def test_coordinator_serve_keeps_flowers_pace_unless_given_a_poll_interval(
        capsys: pytest.CaptureFixture[str]) -> None:
    # Prepare
    import argparse

    from coordinator.cli.commands import register

    parser = argparse.ArgumentParser()
    register(parser)
    serve = ["serve", "--dir", "/tmp/coordinator"]

    # Execute / Assert
    assert parser.parse_args(serve).poll_interval is None
    assert parser.parse_args([*serve, "--poll-interval", "0.2"]).poll_interval == 0.2
    with pytest.raises(SystemExit):
        parser.parse_args([*serve, "--poll-interval", "0"])
    assert "--poll-interval must be seconds between 0.01 and 3.0" in capsys.readouterr().err
