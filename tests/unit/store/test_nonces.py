"""AES-GCM nonces: drawn from the OS a page at a time, never repeated, never shared with a
forked child (the same nonce under the same key breaks GCM's confidentiality and
authenticity)."""

from __future__ import annotations

import os

from hermes_fed.store import Keyring
from hermes_fed.store.keyring import NONCE, new_nonce


def test_nonces_are_twelve_bytes_and_do_not_repeat() -> None:
    # Execute: well past one buffered page
    nonces = [new_nonce() for _ in range(5000)]

    # Assert
    assert {len(n) for n in nonces} == {NONCE}
    assert len(set(nonces)) == len(nonces)


def test_a_forked_child_never_reuses_the_parents_buffered_nonces() -> None:
    # Prepare: the parent has a partly used buffer
    new_nonce()
    read_end, write_end = os.pipe()

    # Execute: the child and then the parent each take the next nonces
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_end)
        os.write(write_end, b"".join(new_nonce() for _ in range(10)))
        os._exit(0)
    os.close(write_end)
    child = b""
    while chunk := os.read(read_end, 4096):
        child += chunk
    os.close(read_end)
    os.waitpid(pid, 0)
    parent = [new_nonce() for _ in range(10)]

    # Assert
    child_nonces = {child[i : i + NONCE] for i in range(0, len(child), NONCE)}
    assert len(child_nonces) == 10
    assert child_nonces.isdisjoint(parent)


def test_ciphertexts_of_the_same_plaintext_differ_and_decrypt() -> None:
    # Prepare
    ring = Keyring.generate("acme")

    # Execute
    (_, a), (_, b) = ring.encrypt(b"same", b"aad"), ring.encrypt(b"same", b"aad")

    # Assert
    assert a != b and a[:NONCE] != b[:NONCE]
    assert ring.decrypt("k1", a, b"aad") == ring.decrypt("k1", b, b"aad") == b"same"
