"""Canonical JSON and time-ordered ids.

Canonical JSON is what the hash chain and the ciphertext are computed over, so it must be
byte-stable: sorted keys, no whitespace, UTF-8, no NaN/inf (orjson would write them as
``null`` silently, so non-finite floats are refused before encoding).
"""

from __future__ import annotations

import math
import os
import re
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


# Deepest nesting of an event's data or metadata (an object holding scalars is 1 level).
# orjson encodes at most 255 levels and CPython's json parser stops near 1,000 with a
# RecursionError; agent data nests a handful of levels (tool arguments under a message
# under the messages list), so 64 leaves room and keeps every walk over a value short.
MAX_DEPTH = 64

_SHOWN_KEY = re.compile(r"[A-Za-z0-9_\-]{1,40}")


def shown_key(key: object, index: int) -> str:
    """How an error path names a key of event data: the key itself when it looks like a
    field name (short, letters, digits, ``_`` and ``-``), else ``<key N>`` by its position
    (a key may be data: an e-mail address, 100 kB of text)."""
    return key if isinstance(key, str) and _SHOWN_KEY.fullmatch(key) else f"<key {index}>"


def json_depth(value: Any) -> int:
    """Nesting depth of ``value`` (a scalar 0, a flat object or list 1), without recursion."""
    depth = 0
    level = [value]
    while level:
        children: list[Any] = []
        for item in level:
            if type(item) is dict:
                children.extend(item.values())
            elif type(item) is list:
                children.extend(item)
        if children or any(type(i) in (dict, list) for i in level):
            depth += 1
        level = children
    return depth


def json_problem(value: Any, path: str = "", depth_used: int = 0) -> str | None:
    """Return a description of the first non-JSON part of ``value`` (path + type), or None;
    ``value`` nested deeper than :data:`MAX_DEPTH` levels (counting ``depth_used`` levels
    above it, e.g. 1 for a field of an event's data) is a problem too.

    Names the path and the type, never the value (it may be personal data).
    """
    # Fast path first: this runs on every field of every appended event, and building
    # paths while walking cost more than hashing and encrypting the event together.
    if (type(value) is str and value.isascii()) or _plain_json(value, MAX_DEPTH - depth_used):
        return None
    problem = _describe(value, path, MAX_DEPTH - depth_used)
    if problem is None:
        return None
    where, _, what = problem.rpartition(": ")
    if len(where) > 160:  # a deep path: its start and end say where, bounded
        where = where[:100] + "..." + where[-50:]
    return f"{where}: {what}"


def _plain_json(value: Any, max_depth: int = MAX_DEPTH) -> bool:
    """True if ``value`` is made only of dict/list/str/int/float/bool/None that orjson
    encodes exactly, nested at most ``max_depth`` levels. False means: look closer (it may
    still be valid, e.g. a tuple). Level by level, so the depth costs one counter."""
    level = [value]
    depth = 0
    while level:
        children: list[Any] = []
        for item in level:
            kind = type(item)
            if kind is str:
                if not item.isascii() and not _utf8_ok(item):
                    return False
            elif kind is dict:
                for key in item:
                    if type(key) is not str or not (key.isascii() or _utf8_ok(key)):
                        return False
                children.extend(item.values())
            elif kind is list:
                children.extend(item)
            elif kind is int:
                if not -(2**63) <= item < 2**64:
                    return False
            elif kind is float:
                if not math.isfinite(item):
                    return False
            elif item is not None and kind is not bool:
                return False
        if children:
            depth += 1
            if depth >= max_depth and any(type(c) in (dict, list) and c for c in children):
                return False
        level = children
    return True


def _describe(value: Any, path: str = "", budget: int = MAX_DEPTH) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, Mapping | list | tuple) and value and budget <= 0:
        return f"{path or '<root>'}: nested deeper than {MAX_DEPTH} levels"
    if isinstance(value, str):
        return None if _utf8_ok(value) else f"{path or '<root>'}: string is not valid UTF-8 (lone surrogate)"
    if isinstance(value, int):
        # orjson refuses integers outside [-2**63, 2**64) with a bare TypeError
        ok = -(2**63) <= value < 2**64
        return None if ok else f"{path or '<root>'}: integer outside the 64-bit range"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path or '<root>'}: non-finite float"
    if isinstance(value, Mapping):
        for number, (key, item) in enumerate(value.items()):
            if not isinstance(key, str):
                return f"{path or '<root>'}: key of type {type(key).__name__}, expected str"
            if not _utf8_ok(key):
                return f"{path or '<root>'}: key is not valid UTF-8 (lone surrogate)"
            name = shown_key(key, number)
            problem = _describe(item, f"{path}.{name}" if path else name, budget - 1)
            if problem:
                return problem
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            problem = _describe(item, f"{path}[{index}]", budget - 1)
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
