"""Invariant 6: acknowledged = durable. A writer killed with SIGKILL mid-stream loses no
acknowledged event, leaves no partial batch, and the chain verifies afterwards."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hermes_fed.store import Keyring

from .helpers import MakeStore, accepted

pytestmark = pytest.mark.sql  # durability across kill -9 is a database's

REPO = Path(__file__).resolve().parents[3]
SIZE = 100  # events per batch: a transaction long enough to be killed inside


@pytest.mark.parametrize("kill_after", [3, 25])
def test_inv6_sigkill_mid_stream_loses_no_acknowledged_event(
    make_store: MakeStore, backend: tuple[str, str | None], kill_after: int
) -> None:
    # Prepare: the log exists; the writer is a separate process appending batches forever
    url, schema = backend
    ring = Keyring.generate("acme")
    store = make_store(keyring=ring)
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.store.workers", url, schema or "", "acme", str(SIZE)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert writer.stdin is not None and writer.stdout is not None
    writer.stdin.write(ring.to_json())
    writer.stdin.close()
    acknowledged: dict[int, list[str]] = {}

    # Execute: SIGKILL right after the kill_after-th acknowledgement (it is mid-append by then)
    for line in writer.stdout:
        if line.startswith("ACK"):
            _, number, ids = line.split()
            acknowledged[int(number)] = ids.split(",")
            if len(acknowledged) >= kill_after:
                writer.send_signal(signal.SIGKILL)
                break
    writer.wait(timeout=30)
    for line in writer.stdout:  # printed before the kill: acknowledged as well
        if line.startswith("ACK"):
            _, number, ids = line.split()
            acknowledged[int(number)] = ids.split(",")
    stderr = writer.stderr.read() if writer.stderr else ""

    # Assert
    assert writer.returncode == -signal.SIGKILL, stderr
    assert len(acknowledged) >= kill_after
    events = list(make_store(keyring=ring).read())
    stored = {e.event_id.hex for e in events}
    assert all(i in stored for ids in acknowledged.values() for i in ids)  # nothing acknowledged lost
    per_batch = collections.Counter(e.metadata["batch"] for e in events)
    assert set(per_batch.values()) == {SIZE}  # no partial batch
    assert set(per_batch) == set(range(len(per_batch)))  # no batch missing in between
    assert max(per_batch) - max(acknowledged) in (0, 1)  # at most one committed-but-unacknowledged
    assert store.verify().ok
    # the log is usable afterwards: no lock or half transaction left behind
    assert store.append(accepted("session-after", 1))[0].position == len(events) + 1
    assert store.verify().ok
