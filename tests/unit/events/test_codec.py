"""Canonical JSON, the JSON checker and time-ordered ids (the bytes the hash chain covers)."""

from __future__ import annotations

import math
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hermes_fed.events import canonical_json, from_micros, to_micros, uuid7
from hermes_fed.events.codec import json_problem, loads

# JSON values orjson can hold exactly: 64-bit ints, finite floats, UTF-8 strings.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


def _shuffled(value: object, rng: random.Random) -> object:
    """The same JSON value with every object's keys inserted in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: _shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rng) for v in value]
    return value


@given(json_values)
def test_canonical_json_round_trips(value: object) -> None:
    # Execute
    decoded = loads(canonical_json(value))

    # Assert
    assert decoded == value or (isinstance(value, float) and math.isclose(decoded, value))
    assert canonical_json(decoded) == canonical_json(value)


@given(json_values, st.randoms(use_true_random=False))
def test_canonical_json_is_key_order_independent(value: object, rng: random.Random) -> None:
    # Prepare
    reordered = _shuffled(value, rng)

    # Execute / Assert
    assert canonical_json(reordered) == canonical_json(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [1, 2]}, b'{"a":[1,2],"b":1}'),
        ({"z": {"y": None, "x": True}}, b'{"z":{"x":true,"y":null}}'),
        ({"é": "ü"}, '{"é":"ü"}'.encode()),
        ([], b"[]"),
    ],
)
def test_canonical_json_is_sorted_compact_utf8(value: object, expected: bytes) -> None:
    assert canonical_json(value) == expected


@pytest.mark.parametrize("value", [{1: "a"}, {"a": object()}, {"a": {1, 2}}])
def test_canonical_json_refuses_non_json_with_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        canonical_json(value)


@pytest.mark.parametrize(
    ("value", "expected_path", "expected_words"),
    [
        ({"a": [1, {"b": float("nan")}]}, "a[1].b", "non-finite float"),
        ({"a": {1: "x"}}, "a", "key of type int"),
        ({"a": object()}, "a", "type object"),
        ({"a": [2**64]}, "a[0]", "64-bit"),
        ({"a": -(2**63) - 1}, "a", "64-bit"),
        ({"a": "x\ud800y"}, "a", "UTF-8"),
        ({"a": {"\udfff": 1}}, "a", "UTF-8"),
        (float("inf"), "<root>", "non-finite"),
    ],
)
def test_json_problem_names_path_and_kind(value: object, expected_path: str, expected_words: str) -> None:
    # Execute
    problem = json_problem(value)

    # Assert
    assert problem is not None
    assert problem.startswith(expected_path + ":")
    assert expected_words in problem


@given(json_values)
def test_json_problem_accepts_everything_canonical_json_encodes(value: object) -> None:
    assert json_problem(value) is None
    canonical_json(value)


def test_json_problem_never_quotes_the_value() -> None:
    # Prepare
    planted = "PLANTED-4f1d secret \ud800"

    # Execute
    problem = json_problem({"messages": [{"content": planted}]})

    # Assert
    assert problem is not None and "PLANTED" not in problem


def test_uuid7_has_version_variant_and_time_order() -> None:
    # Execute
    ids = []
    for _ in range(50):
        ids.append(uuid7())

    # Assert
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert len(set(ids)) == len(ids)
    millis = [int.from_bytes(u.bytes[:6], "big") for u in ids]
    assert millis == sorted(millis)  # time prefix never goes backwards
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    assert abs(millis[-1] - now_ms) < 60_000


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1)))
def test_micros_round_trip_exactly(moment: datetime) -> None:
    # Bug found: to_micros went through float timestamp() * 1e6 and lost a microsecond
    # (2004-02-01 00:00:00.000110 came back as .000109), so occurred_at changed on storage.
    assert from_micros(to_micros(moment)) == moment


def test_to_micros_normalises_offsets_and_refuses_naive() -> None:
    # Prepare
    plus_two = datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))

    # Execute / Assert
    assert from_micros(to_micros(plus_two)) == datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        to_micros(datetime(2026, 1, 1))


def test_orjson_writes_nan_as_null_so_validation_must_refuse_it_first() -> None:
    # Documents why json_problem exists: the encoder alone would lose the value silently.
    assert orjson.dumps(float("nan")) == b"null"
    assert json_problem(float("nan")) is not None


faulty_leaves = st.sampled_from(
    [float("nan"), float("-inf"), 2**64, -(2**63) - 1, "a\udc80", b"raw", {1, 2}, (1, "t"), 3j, None]
)
mixed_values = st.recursive(
    scalars | faulty_leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.integers(0, 3) | st.just("\ud800"), inner, max_size=4)
    ),  # type: ignore[arg-type]
    max_leaves=20,
)


@given(mixed_values)
def test_json_problem_fast_path_agrees_with_the_full_walk(value: object) -> None:
    # The fast path (no paths built) must accept exactly what the describing walk accepts.
    from hermes_fed.events.codec import _describe

    # Execute
    fast, full = json_problem(value), _describe(value)

    # Assert
    assert fast == full


@given(mixed_values)
def test_json_problem_none_means_canonical_json_encodes_it_exactly(value: object) -> None:
    if json_problem(value) is not None:
        return
    decoded = loads(canonical_json(value))
    assert canonical_json(decoded) == canonical_json(value)
