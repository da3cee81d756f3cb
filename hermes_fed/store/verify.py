"""Recompute the hash chain over stored rows (invariant 2); name the first bad position.

The chain covers the stored bytes (ciphertext), so a verifier needs no key ring, and a
crypto-shredded subject leaves it intact.
"""

from __future__ import annotations

from collections.abc import Iterable

from . import chain
from .backend import ReadRow, Row
from .port import VerifyReport


def verify_rows(tenant_id: str, rows: Iterable[ReadRow]) -> VerifyReport:
    """Check ``rows`` (one tenant's, in position order from position 1)."""
    prev, expected_position, checked = chain.GENESIS, 1, 0
    for read_row in rows:
        row = Row(tenant_id, *read_row)
        position = row.position
        if position != expected_position:
            return VerifyReport(
                False,
                checked,
                position,
                expected_position,
                f"position {expected_position} is missing (next row is {position})",
            )
        if bytes(row.prev_hash) != prev:
            return VerifyReport(
                False, checked, position, position, "prev_hash does not match the previous event's hash"
            )
        digest = bytes(row.hash)
        if chain.row_digest(row) != digest:
            return VerifyReport(
                False,
                checked,
                position,
                position,
                "hash mismatch: the row's envelope, data or metadata was altered",
            )
        prev = digest
        expected_position += 1
        checked += 1
    return VerifyReport(True, checked, expected_position - 1)
