"""The README's main job on embedded defaults: the bundled example through the real CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hermes_fed.events.codec import canonical_json
from hermes_fed.store import Keyring, open_store

PLANTED = ["maria.lopez@example.com", "john.smith@acme-corp.com", "415 555 0132", "user-1003"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hermes_fed.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_example_run_appends_verifies_and_is_idempotent(tmp_path: Path) -> None:
    # Execute: twice, as a user re-running `make demo` would
    first = _cli("example", "run", "--dir", str(tmp_path))
    second = _cli("example", "run", "--dir", str(tmp_path))
    # Assert
    assert first.returncode == 0, first.stderr
    assert "appended 20, already present 0" in first.stdout
    assert "chain intact up to position 20" in first.stdout
    assert second.returncode == 0, second.stderr
    assert "appended 0, already present 20" in second.stdout
    verify = _cli(
        "log", "verify", "--store", f"sqlite:///{tmp_path / 'example.db'}", "--tenant", "example",
        "--keyring", str(tmp_path / "example.keyring.json"),
    )
    assert verify.returncode == 0 and verify.stdout.startswith("ok: 20 events")


def test_inv7_example_log_holds_no_planted_pii_even_decrypted(tmp_path: Path) -> None:
    # Prepare
    assert _cli("example", "run", "--dir", str(tmp_path)).returncode == 0
    keyring = Keyring.from_file(tmp_path / "example.keyring.json")
    # Execute: decrypt everything that reached disk
    with open_store(f"sqlite:///{tmp_path / 'example.db'}", "example", keyring=keyring) as store:
        blobs = [canonical_json([dict(e.data), dict(e.metadata)]).decode() for e in store.read()]
    everything = "\n".join(blobs)
    raw_file = b"".join(p.read_bytes() for p in tmp_path.glob("example.db*"))
    # Assert: neither the plaintext (decrypted) nor the file bytes carry a planted value
    assert "<EMAIL_ADDRESS_1>" in everything  # the redactor ran and left placeholders
    for value in PLANTED:
        if value == "user-1003":  # the user_ref is kept, but only sealed under the subject key
            assert value.encode() not in raw_file
            continue
        assert value not in everything
        assert value.encode() not in raw_file
