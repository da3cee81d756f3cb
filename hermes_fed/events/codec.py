"""Canonical JSON and time-ordered ids.

Canonical JSON is what the hash chain and the ciphertext are computed over, so it must be
byte-stable: sorted keys, no whitespace, UTF-8, no NaN/inf (orjson would write them as
``null`` silently, so non-finite floats are refused before encoding).
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Mapping
from typing import Any

import orjson

_OPTS = orjson.OPT_SORT_KEYS


def canonical_json(value: Any) -> bytes:
    """Encode ``value`` as canonical JSON bytes (sorted keys, compact, UTF-8)."""
    try:
        return orjson.dumps(value, option=_OPTS)
    except TypeError as exc:  # non-str keys, unsupported types
        raise ValueError(f"not JSON-serialisable: {exc}") from None


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def json_problem(value: Any, path: str = "") -> str | None:
    """Return a description of the first non-JSON part of ``value`` (path + type), or None.

    Names the path and the type, never the value (it may be personal data).
    """
    # Fast path first: this runs on every field of every appended event, and building
    # paths while walking cost more than hashing and encrypting the event together.
    if (type(value) is str and value.isascii()) or _plain_json(value):
        return None
    return _describe(value, path)


def _plain_json(value: Any) -> bool:
    """True if ``value`` is made only of dict/list/str/int/float/bool/None that orjson
    encodes exactly. False means: look closer (it may still be valid, e.g. a tuple)."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str:
            if not item.isascii() and not _utf8_ok(item):
                return False
        elif kind is dict:
            for key in item:
                if type(key) is not str or not (key.isascii() or _utf8_ok(key)):
                    return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        elif kind is int:
            if not -(2**63) <= item < 2**64:
                return False
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif item is not None and kind is not bool:
            return False
    return True


def _describe(value: Any, path: str = "") -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        return None if _utf8_ok(value) else f"{path or '<root>'}: string is not valid UTF-8 (lone surrogate)"
    if isinstance(value, int):
        # orjson refuses integers outside [-2**63, 2**64) with a bare TypeError
        ok = -(2**63) <= value < 2**64
        return None if ok else f"{path or '<root>'}: integer outside the 64-bit range"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path or '<root>'}: non-finite float"
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path or '<root>'}: key of type {type(key).__name__}, expected str"
            if not _utf8_ok(key):
                return f"{path or '<root>'}: key is not valid UTF-8 (lone surrogate)"
            problem = _describe(item, f"{path}.{key}" if path else key)
            if problem:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _describe(item, f"{path}[{index}]")
            if problem:
                return problem
        return None
    return f"{path or '<root>'}: value of type {type(value).__name__} is not JSON"


def _utf8_ok(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def uuid7() -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7).

    Time-ordered ids keep the unique index on ``event_id`` append-mostly; random UUID4 keys
    cost ~40% of SQLite append throughput (FIELD_NOTES, SQLite event tables).
    """
    ms = time.time_ns() // 1_000_000
    rand = bytearray(os.urandom(10))
    raw = ms.to_bytes(6, "big") + bytes(rand)
    b = bytearray(raw)
    b[6] = 0x70 | (b[6] & 0x0F)  # version 7
    b[8] = 0x80 | (b[8] & 0x3F)  # RFC 4122 variant
    return uuid.UUID(bytes=bytes(b))
