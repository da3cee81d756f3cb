"""Event schemas: typed records, a catalog, validation and upcasters.

Every event type is a frozen dataclass registered in a :class:`Catalog` with a name and a
schema version. The schema is derived from the dataclass's type hints. When a schema
changes, the new dataclass gets ``VERSION + 1`` and an upcaster turns stored data of the
old version into the new shape on read (events in the log are never rewritten).

Limits ride on the hints as ``Annotated[float, Range(0, 1)]`` and
``Annotated[str, MaxLen(200)]``: a value out of range is refused on append, since the log
keeps it forever (a clamp when reading would hide it, not remove it). Reading checks
types only (``validate(check_limits=False)``): events stored before a limit existed must
still read. Nested values are at most :data:`~hermes_fed.events.codec.MAX_DEPTH` levels
deep, counted from the event's data.
"""

from __future__ import annotations

import builtins
import dataclasses
import math
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, dataclass_transform

from hermes_fed.errors import SchemaError, UnknownEventTypeError

from .codec import json_problem, shown_key


class EventRecord:
    """Base of typed event records (the dataclass decorator is applied by ``event_type``)."""

    TYPE: ClassVar[str]
    VERSION: ClassVar[int]
    PERSONAL: ClassVar[frozenset[str]]

    def to_data(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


R = TypeVar("R", bound=EventRecord)

_JSON_KINDS: dict[Any, tuple[type, ...]] = {
    str: (str,),
    int: (int,),
    float: (int, float),
    bool: (bool,),
    list: (list,),
    dict: (dict,),
}


@dataclass(frozen=True, slots=True)
class Range:
    """``Annotated[float, Range(low, high)]``: a number in ``[low, high]``."""

    low: float
    high: float


@dataclass(frozen=True, slots=True)
class MaxLen:
    """``Annotated[str, MaxLen(n)]``: a string of at most ``n`` characters (the width of the
    read-model column that holds it, or a bound on what a client may make the node keep)."""

    chars: int


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kinds: tuple[type, ...] | None  # None: any JSON value
    required: bool
    nullable: bool
    range: Range | None = None
    max_len: int | None = None

    def check(self, event_type: str, value: Any, deep: bool = True,
              check_limits: bool = True) -> None:
        """Raise ``SchemaError`` if ``value`` does not fit this field. ``deep=False`` checks
        the field's own kind only, for a caller that verifies the nested values itself
        (the store does: it encodes the data and checks it decodes to the same value);
        ``check_limits=False`` skips the range and length (reading old events)."""
        if value is None:
            if not self.nullable:
                raise SchemaError(event_type, self.name, "must not be null")
            return
        if self.kinds is not None:
            ok = isinstance(value, self.kinds) and not (isinstance(value, bool) and bool not in self.kinds)
            if not ok:
                expected = "|".join(k.__name__ for k in self.kinds)
                raise SchemaError(event_type, self.name, f"expected {expected}, got {type(value).__name__}")
            if isinstance(value, float) and not math.isfinite(value):
                raise SchemaError(event_type, self.name, "non-finite float")
        if check_limits:
            self.check_limits(event_type, value)
        # Strings and integers too: orjson refuses lone surrogates and integers beyond
        # 64 bits, which must be a SchemaError naming the field, not a bare encoder error.
        if deep and (isinstance(value, (list, dict, str, int)) or self.kinds is None):
            problem = json_problem(value, self.name, depth_used=1)
            if problem:
                raise SchemaError(event_type, self.name, problem)

    def check_limits(self, event_type: str, value: Any) -> None:
        """The field's range and length (a number, never the text, goes into the error)."""
        bounds = self.range
        if bounds is not None and isinstance(value, int | float) and not isinstance(value, bool) \
                and not bounds.low <= value <= bounds.high:
            raise SchemaError(event_type, self.name, f"must be in [{_number(bounds.low)}, "
                                                     f"{_number(bounds.high)}], got {_number(value)}")
        if self.max_len is not None and isinstance(value, str) and len(value) > self.max_len:
            raise SchemaError(event_type, self.name, f"longer than {self.max_len} characters "
                                                     f"({len(value)})")


def _field_spec(name: str, hint: Any, has_default: bool) -> FieldSpec:
    limits: tuple[Any, ...] = ()
    if typing.get_origin(hint) is typing.Annotated:
        hint, *extra = typing.get_args(hint)
        limits = tuple(extra)
    elif typing.get_origin(hint) in (typing.Union, types.UnionType):  # Annotated[...] | None
        args = []
        for arg in typing.get_args(hint):
            if typing.get_origin(arg) is typing.Annotated:
                arg, *extra = typing.get_args(arg)
                limits += tuple(extra)
            args.append(arg)
        hint = typing.Union[tuple(args)]  # noqa: UP007  (built from a runtime tuple)
    spec = _plain_field_spec(name, hint, has_default)
    bounds = next((x for x in limits if isinstance(x, Range)), None)
    length = next((x.chars for x in limits if isinstance(x, MaxLen)), None)
    if bounds is not None or length is not None:
        spec = dataclasses.replace(spec, range=bounds, max_len=length)
    return spec


def _plain_field_spec(name: str, hint: Any, has_default: bool) -> FieldSpec:
    nullable = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        nullable = len(args) != len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else Any
        origin = typing.get_origin(hint)
    base = origin or hint
    if base in (Mapping, typing.Mapping):
        base = dict
    kinds = _JSON_KINDS.get(base)
    if kinds is None and base is not Any:
        raise TypeError(f"field {name}: unsupported type {hint!r} in an event schema")
    nullable = nullable or base is Any  # "any JSON value" includes null
    return FieldSpec(name, kinds, required=not has_default, nullable=nullable)


@dataclass(frozen=True, slots=True)
class EventSchema:
    type: str
    version: int
    record: builtins.type[EventRecord]
    fields: tuple[FieldSpec, ...]
    personal: frozenset[str]
    known: frozenset[str] = dataclasses.field(init=False, repr=False, compare=False)
    _fast: tuple[tuple[str, frozenset[builtins.type] | None, bool, FieldSpec | None], ...] = (
        dataclasses.field(init=False, repr=False, compare=False))

    def __post_init__(self) -> None:
        # the field names, once: validate runs on every appended event
        object.__setattr__(self, "known", frozenset(f.name for f in self.fields))
        # (name, the exact types that fit, nullable, the spec when it has limits): the
        # shallow check as set lookups
        object.__setattr__(
            self,
            "_fast",
            tuple((f.name, None if f.kinds is None else frozenset(f.kinds), f.nullable,
                   f if f.range is not None or f.max_len is not None else None)
                  for f in self.fields),
        )

    def validate(self, data: Mapping[str, Any], deep: bool = True,
                 check_limits: bool = True) -> dict[str, Any]:
        """Return the data with defaults filled in, or raise ``SchemaError``.

        Messages name the field and the value's type, never the value. ``deep=False``
        skips the walk over nested values (see :meth:`FieldSpec.check`);
        ``check_limits=False`` skips ranges and lengths (reading stored events).
        """
        if not deep and check_limits and type(data) is dict and len(data) == len(self._fast):
            fast = self._shallow(data)
            if fast is not None:
                return fast
        if not isinstance(data, Mapping):
            raise SchemaError(self.type, "<data>", f"expected an object, got {type(data).__name__}")
        if not self.known.issuperset(data):
            for number, key in enumerate(data):
                if key not in self.known:
                    raise SchemaError(self.type, shown_key(key, number), "unknown field")
        out: dict[str, Any] = {}
        for spec in self.fields:
            if spec.name in data:
                value = data[spec.name]
            elif spec.required:
                raise SchemaError(self.type, spec.name, "required field missing")
            else:
                value = _default(self.record, spec.name)
            spec.check(self.type, value, deep, check_limits)
            out[spec.name] = value
        return out

    def _shallow(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """The shallow check when every field is given with a value of an exact JSON type
        within its limits (the common case, about a quarter of the general loop's cost);
        None: anything else (a default, a subclass, a non-finite float, a value out of
        range, an error to name), left to it."""
        out: dict[str, Any] = {}
        for name, exact, nullable, limited in self._fast:
            value = data.get(name, _MISSING)
            if value is _MISSING:  # same size as the fields, so an unknown key too
                return None
            kind = type(value)
            if exact is None or kind in exact:
                if kind is float and not math.isfinite(value):
                    return None
                if limited is not None:
                    try:
                        limited.check_limits(self.type, value)
                    except SchemaError:
                        return None
            elif value is not None or not nullable:
                return None
            out[name] = value
        return out


_MISSING = object()


def _default(record: type[EventRecord], name: str) -> Any:
    for f in dataclasses.fields(record):  # type: ignore[arg-type]
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
    raise KeyError(name)


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class Catalog:
    """Event types by name, their current schema, and upcasters from older versions."""

    def __init__(self) -> None:
        self._schemas: dict[str, EventSchema] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, record: type[R], name: str, version: int, personal: Iterable[str]) -> None:
        if not dataclasses.is_dataclass(record):
            raise TypeError(f"{record.__name__} must be a dataclass")
        hints = typing.get_type_hints(record, include_extras=True)
        specs = []
        for f in dataclasses.fields(record):
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            specs.append(_field_spec(f.name, hints[f.name], has_default))
        personal_set = frozenset(personal)
        unknown = personal_set - {s.name for s in specs}
        if unknown:
            raise TypeError(f"{name}: personal fields {sorted(unknown)} are not fields")
        record.TYPE, record.VERSION, record.PERSONAL = name, version, personal_set
        self._schemas[name] = EventSchema(name, version, record, tuple(specs), personal_set)

    def add_upcaster(self, event_type: str, from_version: int, upcaster: Upcaster) -> None:
        """Register ``upcaster`` turning data of ``from_version`` into ``from_version + 1``."""
        self._upcasters[(event_type, from_version)] = upcaster

    def schema(self, event_type: str) -> EventSchema:
        try:
            return self._schemas[event_type]
        except KeyError:
            raise UnknownEventTypeError(f"unknown event type {event_type!r}") from None

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._schemas

    def types(self) -> list[str]:
        return sorted(self._schemas)

    def without_limits(self) -> Catalog:
        """A copy whose schemas check types only, as the catalog did before ``Range`` and
        ``MaxLen`` existed: for writing the logs such a catalog accepted (tests of readers
        that must still handle them) and for migrations."""
        copy = Catalog()
        for name, schema in self._schemas.items():
            fields = tuple(dataclasses.replace(f, range=None, max_len=None) for f in schema.fields)
            copy._schemas[name] = dataclasses.replace(schema, fields=fields)
        copy._upcasters = dict(self._upcasters)
        return copy

    def upcast(self, event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        """Bring stored ``data`` of ``version`` up to the current schema version."""
        current = self.schema(event_type).version
        while version < current:
            try:
                step = self._upcasters[(event_type, version)]
            except KeyError:
                raise SchemaError(
                    event_type,
                    "<schema_version>",
                    f"no upcaster from version {version} to {version + 1}",
                ) from None
            data = step(dict(data))
            version += 1
        if version > current:
            raise SchemaError(
                event_type,
                "<schema_version>",
                f"stored version {version} is newer than this code's version {current}",
            )
        return data


DEFAULT_CATALOG = Catalog()


@dataclass_transform(frozen_default=True)
def event_type(
    name: str, version: int = 1, *, personal: Iterable[str] = (), catalog: Catalog | None = None
) -> Callable[[type[R]], type[R]]:
    """Class decorator: make ``cls`` a frozen slotted dataclass and register it."""

    def wrap(cls: type[R]) -> type[R]:
        data_cls = dataclass(frozen=True, slots=True)(cls)
        (catalog or DEFAULT_CATALOG).register(data_cls, name, version, personal)
        return data_cls

    return wrap
