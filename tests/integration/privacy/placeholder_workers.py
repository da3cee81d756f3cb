"""Writer processes for the placeholder-index tests: several processes redacting the same
session through the node's staged gate, and a writer killed mid-stream.

Runnable as ``python -m tests.integration.privacy.placeholder_workers URL SCHEMA WRITER
BATCHES START_AT`` (key ring JSON on stdin; ``BATCHES`` 0: forever). Each batch is one
``TrajectoryJudged`` per value it names, in the shared session ``session-shared``; the
rationale holds the value's index (``v<i>``) and its e-mail address. It prints ``ACK
<batch> <value indexes>`` after each append returns.
"""

from __future__ import annotations

import logging
import random
import sys
import time
import uuid

from hermes_fed.events import NewEvent
from hermes_fed.privacy import RedactionConfig, Redactor
from hermes_fed.privacy.placeholder_store import StorePlaceholderIndex, staged_gate
from hermes_fed.store import Keyring, open_store

SESSION = "session-shared"
VALUES = 24


def email(i: int) -> str:
    return f"person{i}.mail@example.org"


def judged(values: list[int]) -> list[NewEvent]:
    return [
        NewEvent(
            stream_id=SESSION,
            type="TrajectoryJudged",
            data={"trajectory_id": f"t-{uuid.uuid4().hex[:12]}", "judge": "j", "score": 0.5,
                  "rationale": f"v{i} wrote from {email(i)}"},
        )
        for i in values
    ]


def main(argv: list[str]) -> int:
    url, schema = argv[0], argv[1] or None
    writer, batches, start_at = int(argv[2]), int(argv[3]), float(argv[4])
    logging.disable(logging.WARNING)
    ring = Keyring.from_json(sys.stdin.read())
    store = open_store(url, "acme", keyring=ring, schema=schema)
    redactor = Redactor(RedactionConfig(), ring.hmac_secret)
    store.gate = staged_gate(redactor, StorePlaceholderIndex(store, ring))
    rng = random.Random(writer)
    print("READY", flush=True)
    while time.time() < start_at:  # the writers start together, to collide
        time.sleep(0.001)
    number = 0
    while batches == 0 or number < batches:
        values = rng.sample(range(VALUES), 3)
        store.append(judged(values))
        print("ACK", number, ",".join(map(str, values)), flush=True)
        number += 1
    store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
