"""The capture process's restarts when its child cannot start (a log that cannot be
opened): real spawned children, each failing in its start-up; the pause before the next
one doubles up to its cap, and a stop cancels the restart that was due."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

from tenant_node.config import node_config_from_mapping
from tenant_node.gateway import capture_process
from tenant_node.gateway.capture_process import CaptureProcess

pytestmark = pytest.mark.slow

BASE_S, CAP_S = 0.3, 0.7  # pauses 0.3, 0.6, then 0.7 (0.6 doubled, capped)


def test_children_that_fail_at_start_up_are_restarted_ever_later_until_stopped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Prepare: a key ring whose directory is a file, so every child's build_writer fails
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    config = node_config_from_mapping({"tenant_id": "acme", "token": "t" * 24,
                                       "data_dir": str(tmp_path),
                                       "keyring_path": str(blocker / "keyring.json")})
    monkeypatch.setattr(capture_process, "RESTART_AFTER_S", BASE_S)
    monkeypatch.setattr(capture_process, "RESTART_MAX_S", CAP_S)
    starts: list[float] = []
    gone: list[float] = []
    states: list[int] = []

    def on_state(up: int) -> None:
        states.append(up)
        if up == 0:
            gone.append(time.monotonic())

    process = CaptureProcess(config, {}, on_state, lambda: starts.append(time.monotonic()))

    async def run() -> tuple[int, str]:
        process.start(asyncio.get_running_loop())
        deadline = time.monotonic() + 120
        while len(gone) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        starts_before_stop, state = len(starts), process.state
        process.stop()
        await asyncio.sleep(2 * CAP_S)  # past the restart that was due
        return starts_before_stop, state

    # Execute
    with caplog.at_level(logging.INFO, logger=capture_process.__name__):
        starts_before_stop, state_before_stop = asyncio.run(run())

    # Assert: four children ended without ever being ready; each next one started no
    # sooner than its pause (0.3, 0.6, 0.7 s: doubled, then capped) after the last one ended
    assert len(gone) >= 4, f"only {len(gone)} children ended in 120 s"
    assert 1 not in states, "no child got ready"
    pauses = [start - end for end, start in zip(gone, starts[1:], strict=False)]
    assert len(pauses) >= 3
    for pause, least in zip(pauses, [BASE_S, 2 * BASE_S, CAP_S], strict=False):
        assert pause >= least, f"restarted {pause:.3f} s after a failure, before {least} s"
    assert "event=capture_process_failed error=" in caplog.text
    # ... the state between children was "gone" or "starting", never "ready", and the stop
    # cancelled the restart that was due: no child started after it
    assert state_before_stop in ("gone", "starting")
    assert len(starts) == starts_before_stop
    assert process.state == "gone" and process.pid is not None
