"""Reading import files line by line: good records out, bad lines reported by number.

A bad line (not JSON, not the declared format, not a valid trajectory, a user turn that
nobody answered) never stops an import: it is reported as a :class:`BadLine` and the good
lines still land.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from hermes_fed.errors import FormatError
from hermes_fed.events.codec import MAX_DEPTH, json_problem

from .hermes import from_hermes, hermes_labels, to_hermes
from .openai import from_openai, to_openai
from .trajectory import trajectory_problem, unanswered_problem

Format = Literal["hermes", "openai"]
FORMATS: tuple[Format, ...] = ("hermes", "openai")

_READERS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "hermes": from_hermes, "openai": from_openai,
}
_LABELS: dict[str, Callable[[Any], dict[str, str]]] = {
    "hermes": hermes_labels, "openai": lambda record: {},
}
_WRITERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "hermes": to_hermes, "openai": to_openai,
}


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that was skipped: its 1-based number and the problem (field path, no text)."""

    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """A line that parsed into a valid trajectory."""

    line: int
    trajectory: dict[str, Any]
    record: Mapping[str, Any]  # the raw record, for fields beside the trajectory (user_ref...)
    #: Dataset labels kept beside the trajectory (Hermes: category, subcategory, task).
    labels: Mapping[str, str] = field(default_factory=dict)


def _check_format(fmt: str) -> None:
    if fmt not in _READERS:
        raise FormatError(f"format: expected one of {'|'.join(FORMATS)}, got {fmt!r}")


def parse_line(raw: bytes | str, number: int, fmt: str) -> ParsedLine | BadLine:
    """Parse one JSONL line in ``fmt`` into a trajectory, or describe why it is bad."""
    _check_format(fmt)
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        return BadLine(number, f"invalid UTF-8 at byte {exc.start}")
    try:
        record = json.loads(text)
    except RecursionError:
        return BadLine(number, f"nested deeper than {MAX_DEPTH} levels")
    except ValueError as exc:
        return BadLine(number, f"not JSON (column {getattr(exc, 'colno', 0)})")
    try:
        trajectory = _READERS[fmt](record)
    except RecursionError:  # tool arguments given as a JSON string, nested past the parser
        return BadLine(number, f"nested deeper than {MAX_DEPTH} levels")
    except FormatError as exc:
        return BadLine(number, str(exc))
    # The store refuses what the event catalog does (depth, lone surrogates, 70-bit ints):
    # say so here, per line, rather than fail a whole batch.
    problem = (trajectory_problem(trajectory) or json_problem(trajectory)
               or unanswered_problem(trajectory["messages"]))
    if problem:
        return BadLine(number, problem)
    return ParsedLine(number, trajectory, record, _LABELS[fmt](record))


def parse_jsonl(lines: Iterable[bytes | str], fmt: str) -> Iterator[ParsedLine | BadLine]:
    """Parse every non-blank line; numbers are 1-based line numbers of the file."""
    _check_format(fmt)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        yield parse_line(raw, number, fmt)


def format_record(trajectory: Mapping[str, Any], fmt: str) -> dict[str, Any]:
    """The record of ``trajectory`` in ``fmt`` (the inverse of :func:`parse_line`)."""
    _check_format(fmt)
    return _WRITERS[fmt](trajectory)


def dump_jsonl(trajectories: Iterable[Mapping[str, Any]], fmt: str) -> Iterator[str]:
    """Lines (with their newline) of a JSONL file holding ``trajectories`` in ``fmt``."""
    for trajectory in trajectories:
        yield json.dumps(format_record(trajectory, fmt), ensure_ascii=False) + "\n"
