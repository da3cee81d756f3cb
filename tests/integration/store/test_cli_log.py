"""``hermes-fed log verify`` (and friends) by subprocess: exit status and the first bad
position, on both backends (invariant 2 through the command line)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hermes_fed.store import Keyring

from .helpers import MakeStore, accepted, drop_guards, raw, session_started

pytestmark = pytest.mark.sql  # the command line opens the log from another process

REPO = Path(__file__).resolve().parents[3]


def hermes_fed(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hermes_fed.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
    )


def _store_args(backend: tuple[str, str | None]) -> list[str]:
    url, schema = backend
    return ["--store", url, "--tenant", "acme", *(["--schema", schema] if schema else [])]


def test_inv2_cli_verify_ok(make_store: MakeStore, backend: tuple[str, str | None]) -> None:
    # Prepare
    store = make_store(keyring=Keyring.generate("acme"))
    store.append(accepted("session-1", 4))

    # Execute: no key ring needed: the chain is over the stored bytes
    done = hermes_fed("log", "verify", *_store_args(backend))

    # Assert
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok: 4 events, chain intact up to position 4"


@pytest.mark.parametrize(
    ("tamper", "bad"),
    [
        (["UPDATE events SET data = :x WHERE position = 5"], 5),
        (["DELETE FROM events WHERE position = 2"], 2),
        (
            [
                "UPDATE events SET position = -1 WHERE position = 3",
                "UPDATE events SET position = 3 WHERE position = 6",
                "UPDATE events SET position = 6 WHERE position = -1",
            ],
            3,
        ),
    ],
    ids=["altered", "deleted", "swapped"],
)
def test_inv2_cli_verify_names_the_first_bad_position(
    make_store: MakeStore, backend: tuple[str, str | None], tamper: list[str], bad: int
) -> None:
    # Prepare
    store = make_store()
    store.append(accepted("session-1", 8))
    drop_guards(store)
    for sql in tamper:
        raw(store, sql, {"x": b'{"trajectory_id":"forged"}'})

    # Execute
    done = hermes_fed("log", "verify", *_store_args(backend))

    # Assert
    assert done.returncode == 1
    assert done.stdout.startswith(f"BROKEN at position {bad}:"), done.stdout + done.stderr


def test_cli_erase_then_verify_and_tail(
    make_store: MakeStore, backend: tuple[str, str | None], tmp_path: Path
) -> None:
    # Prepare
    ring = Keyring.generate("acme")
    ring_file = tmp_path / "acme.keyring.json"
    ring.save(ring_file)
    make_store(keyring=ring).append([session_started("session-1", "alice")])
    args = [*_store_args(backend), "--keyring", str(ring_file)]

    # Execute
    erased = hermes_fed("log", "erase", *args, "--user-ref", "alice")
    verified = hermes_fed("log", "verify", *args)
    tail = hermes_fed("log", "tail", *args, "--data")

    # Assert
    assert erased.returncode == 0 and "subject erased at position 2" in erased.stdout, erased.stderr
    assert verified.returncode == 0 and verified.stdout.startswith("ok: 2 events")
    assert "alice" not in tail.stdout and "(erased: user_ref)" in tail.stdout


def test_cli_wrong_key_ring_is_a_named_error(
    make_store: MakeStore, backend: tuple[str, str | None], tmp_path: Path
) -> None:
    make_store(keyring=Keyring.generate("acme")).append(accepted("session-1", 1))
    wrong = tmp_path / "wrong.json"
    Keyring.generate("acme").save(wrong)

    done = hermes_fed("log", "verify", *_store_args(backend), "--keyring", str(wrong))

    assert done.returncode == 1
    assert (
        "hermes-fed: error: key 'k1' in the key ring is not the key this log was written with" in done.stderr
    )
