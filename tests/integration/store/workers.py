"""Writer processes for the concurrency (invariant 4) and durability (invariant 6) tests.

Importable by ``multiprocessing`` spawn children, and runnable as
``python -m tests.integration.store.workers URL SCHEMA TENANT BATCH_SIZE`` (key ring JSON on
stdin): appends batches forever and prints ``ACK <batch> <event ids>`` after each append
returns, so a parent that kills it with SIGKILL knows exactly what was acknowledged.
"""

from __future__ import annotations

import logging
import sys

from hermes_fed.events import NewEvent
from hermes_fed.store import Keyring, open_store


def open_worker_store(url: str, schema: str | None, tenant: str, keyring_json: str | None):  # type: ignore[no-untyped-def]
    ring = Keyring.from_json(keyring_json) if keyring_json else None
    return open_store(url, tenant, keyring=ring, schema=schema)


def batch(writer: int, number: int, size: int) -> list[NewEvent]:
    """One batch: its events share a stream and carry (writer, batch) in their metadata."""
    return [
        NewEvent(
            stream_id=f"session-w{writer}-b{number}",
            type="TrajectoryJudged",
            data={"trajectory_id": f"t-{writer}-{number}-{i}", "judge": "j", "score": i / size},
            metadata={"writer": writer, "batch": number},
        )
        for i in range(size)
    ]


def write_batches(
    url: str,
    schema: str | None,
    tenant: str,
    keyring_json: str | None,
    writer: int,
    n_batches: int,
    size: int,
) -> list[str]:
    """Append ``n_batches`` batches; return the acknowledged event ids (hex)."""
    logging.disable(logging.WARNING)
    store = open_worker_store(url, schema, tenant, keyring_json)
    acknowledged: list[str] = []
    try:
        for number in range(n_batches):
            results = store.append(batch(writer, number, size))
            acknowledged.extend(r.event_id.hex for r in results)
    finally:
        store.close()
    return acknowledged


def main(argv: list[str]) -> int:
    url, schema, tenant, size = argv[0], argv[1] or None, argv[2], int(argv[3])
    keyring_json = sys.stdin.read() or None
    logging.disable(logging.WARNING)
    store = open_worker_store(url, schema, tenant, keyring_json)
    print("READY", flush=True)
    number = 0
    while True:
        results = store.append(batch(0, number, size))
        print("ACK", number, ",".join(r.event_id.hex for r in results), flush=True)
        number += 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
