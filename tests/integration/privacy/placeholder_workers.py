"""Writer processes for the placeholder-index tests: several processes redacting the same
session through the node's staged gate, and a writer killed mid-stream.

Runnable as ``python -m tests.integration.privacy.placeholder_workers URL SCHEMA WRITER
BATCHES`` (key ring JSON on the first line of stdin; ``BATCHES`` 0: forever). It prints
``READY`` once its store is open and starts at the next line of stdin (so writers start
together, to collide) or at its end. Each batch is one
``TrajectoryJudged`` per value it names, in the shared session ``session-shared``; the
rationale holds the value's index (``v<i>``) and its e-mail address. It prints ``ACK
<batch> <value indexes>`` after each append returns.
"""

from __future__ import annotations

import logging
import random
import sys
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
    writer, batches = int(argv[2]), int(argv[3])
    logging.disable(logging.WARNING)
    ring = Keyring.from_json(sys.stdin.readline())
    store = open_store(url, "acme", keyring=ring, schema=schema)
    redactor = Redactor(RedactionConfig(), ring.hmac_secret)
    store.gate = staged_gate(redactor, StorePlaceholderIndex(store, ring))
    rng = random.Random(writer)
    print("READY", flush=True)
    sys.stdin.readline()  # GO (or the end of stdin)
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
