"""Processes that open one new SQLite log at the same moment all open it (a node daemon and
its gateway starting side by side): the loser of the race to create the schema retries."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from hermes_fed.store import Keyring, open_store


def _open(url: str, ring: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        with open_store(url, "acme", keyring=Keyring.from_file(ring)) as store:
            out.put(f"ok {store.head()}")
    except Exception as exc:  # the test reports what each process saw
        out.put(f"{type(exc).__name__}: {exc}")


def test_four_processes_opening_a_new_log_at_once_all_succeed(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    seen: list[str] = []
    for trial in range(10):  # before the retry: 29 of 30 such trials had a failure
        root = tmp_path / f"t{trial}"
        root.mkdir()
        Keyring.generate("acme").save(root / "ring.json")
        out = ctx.Queue()
        procs = [ctx.Process(target=_open, args=(f"sqlite:///{root / 'events.db'}",
                                                 str(root / "ring.json"), out))
                 for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        seen += [out.get(timeout=10) for _ in procs]
    assert seen == ["ok 0"] * 40, [s for s in seen if s != "ok 0"][:3]
