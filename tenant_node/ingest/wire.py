"""Parsing request bytes, and naming the field when they do not parse.

The ingest handlers take raw bytes (no request deserializer) because gRPC Python answers a
deserializer exception with ``INTERNAL`` and no detail. Here a parse failure becomes
``INVALID_ARGUMENT`` whose message names the field: protobuf refuses proto3 ``string``
fields holding invalid UTF-8 without saying which, so :func:`locate_wire_problem` walks the
wire format (https://protobuf.dev/programming-guides/encoding/) against the descriptor to
find the first bad field.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message

M = TypeVar("M", bound=Message)

_MAX_DEPTH = 32


class WireProblem(ValueError):
    """The bytes are not a valid encoding of the message; ``field`` is the path found."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise IndexError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 70:
            raise IndexError("varint too long")


def locate_wire_problem(descriptor: Descriptor, data: bytes, path: str = "", depth: int = 0) -> str:
    """Describe the first problem in ``data`` as ``"<field path>: <problem>"``.

    Returns ``"<path or request>: malformed protobuf"`` when no single field is to blame.
    """
    here = path or "request"
    if depth > _MAX_DEPTH:
        return f"{here}: nesting too deep"
    seen: dict[int, int] = {}
    pos = 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            number, wire_type = key >> 3, key & 7
            field = descriptor.fields_by_number.get(number)
            name = field.name if field is not None else f"<field {number}>"
            index = seen.get(number, 0)
            seen[number] = index + 1
            is_repeated = field is not None and field.is_repeated
            field_path = f"{path}.{name}" if path else name
            if is_repeated:
                field_path += f"[{index}]"
            if number == 0:
                return f"{here}: field number 0 is invalid (malformed protobuf)"
            if wire_type == 0:
                _, pos = _varint(data, pos)
            elif wire_type == 1:
                pos += 8
            elif wire_type == 5:
                pos += 4
            elif wire_type == 2:
                length, pos = _varint(data, pos)
                chunk = data[pos : pos + length]
                if len(chunk) < length:
                    return f"{field_path}: truncated (malformed protobuf)"
                pos += length
                if field is None:
                    continue
                if field.type == FieldDescriptor.TYPE_STRING:
                    try:
                        chunk.decode("utf-8")
                    except UnicodeDecodeError as exc:
                        return f"{field_path}: invalid UTF-8 at byte {exc.start}"
                elif field.type == FieldDescriptor.TYPE_MESSAGE:
                    inner = locate_wire_problem(field.message_type, chunk, field_path, depth + 1)
                    if not inner.endswith(": malformed protobuf"):
                        return inner
            else:
                return f"{field_path}: wire type {wire_type} is not supported (malformed protobuf)"
            if pos > len(data):
                return f"{field_path}: truncated (malformed protobuf)"
    except IndexError:
        return f"{here}: truncated varint (malformed protobuf)"
    return f"{here}: malformed protobuf"


def parse_request(message_type: type[M], data: bytes) -> M:
    """Parse ``data`` as ``message_type``; raise :class:`WireProblem` naming the field."""
    message: M = message_type()
    try:
        message.ParseFromString(data)
    except (DecodeError, RuntimeError, ValueError):
        located = locate_wire_problem(message_type.DESCRIPTOR, data)
        field, _, problem = located.partition(": ")
        raise WireProblem(field, problem) from None
    return message
