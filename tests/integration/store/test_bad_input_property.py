"""Property: any data dict is either accepted and read back equal (defaults filled in), or
refused with ``SchemaError`` naming a field, never quoting a value, and nothing is written."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hermes_fed.errors import SchemaError
from hermes_fed.events import DEFAULT_CATALOG, NewEvent
from hermes_fed.store import Keyring

from .helpers import MakeStore, snapshot

TYPES = ["OutputEdited", "TrajectoryJudged", "TrainingRunStarted", "SessionStarted", "TrajectoryRecorded"]


def _marked(text: str) -> str:
    return f"V<{text}>"


# Leaves: valid JSON scalars, and values the store must refuse (non-finite floats, integers
# beyond 64 bits, lone surrogates, non-JSON objects). Text values carry a V<...> marker so
# that a message quoting one is detectable; keys are plain letters (paths may name keys).
good_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20).map(_marked)
)
bad_leaf = (
    st.sampled_from([float("nan"), float("inf"), 2**64, -(2**63) - 1, b"bytes", (1, 2j)])
    | st.text(max_size=5).map(lambda t: _marked(t + "\ud800"))
    | st.frozensets(st.integers(), max_size=2)
)
keys = st.text(alphabet="abcdefgh_", min_size=1, max_size=6)
values = st.recursive(
    st.one_of(good_leaf, good_leaf, good_leaf, bad_leaf),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=8,
)


def _fitting(kinds: tuple[type, ...] | None) -> st.SearchStrategy[Any]:
    """Values of the field's JSON kind (still possibly holding a bad leaf inside)."""
    if kinds is None:
        return values
    kind = kinds[-1]
    by_kind: dict[type, st.SearchStrategy[Any]] = {
        str: st.text(max_size=20).map(_marked),
        int: st.integers(min_value=-(2**63), max_value=2**64 - 1),
        float: st.floats(allow_nan=False, allow_infinity=False) | st.integers(-100, 100),
        bool: st.booleans(),
        list: st.lists(values, max_size=3),
        dict: st.dictionaries(keys, values, max_size=3),
    }
    return by_kind[kind]


@st.composite
def event_data(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """Mostly well-formed data for a catalog type, with random faults mixed in: a field of
    the wrong kind, a missing or unknown field, a bad leaf deep inside a list or dict."""
    etype = draw(st.sampled_from(TYPES))
    data: dict[str, Any] = {}
    for spec in DEFAULT_CATALOG.schema(etype).fields:
        roll = draw(st.integers(0, 19))
        if roll == 0 or (roll == 1 and spec.required):
            continue  # left out (its default, or a missing required field)
        if roll == 2:
            data[spec.name] = draw(values)  # anything at all
        elif roll == 3 and spec.nullable:
            data[spec.name] = None
        else:
            data[spec.name] = draw(_fitting(spec.kinds))
    if draw(st.integers(0, 9)) == 0:
        data[draw(keys)] = draw(values)
    return etype, data


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple, frozenset)):
        return [s for v in value for s in _strings(v)]
    return []


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=event_data())
def test_any_data_is_accepted_and_read_back_equal_or_refused_with_nothing_written(
    make_store: MakeStore, case: tuple[str, dict[str, Any]]
) -> None:
    # Prepare (one store per test run; examples accumulate, so compare against the head)
    etype, data = case
    store = _store(make_store)
    before_head = store.head()
    before = snapshot(store) if before_head < 5 else None

    # Execute
    try:
        store.append([NewEvent("session-p", etype, data, subject="user-p")])
    except SchemaError as exc:
        # Assert: refused, named, nothing quoted, nothing written
        message = str(exc)
        assert message.startswith(f"{etype}.{exc.field}:")
        assert all(s not in message for s in _strings(data) if s.startswith("V<"))
        assert store.head() == before_head
        if before is not None:
            assert snapshot(store) == before
        event(f"refused: {exc.problem.split(':')[-1].strip()[:30]}")
        return

    # Assert: accepted means read back equal
    (stored,) = list(store.read(after=before_head))
    assert stored.data == DEFAULT_CATALOG.schema(etype).validate(data)
    assert stored.type == etype
    event("accepted")


_STORES: dict[int, Any] = {}


def _store(make_store: MakeStore) -> Any:
    # make_store is per test run; hypothesis calls the body many times within one run
    key = id(make_store)
    if key not in _STORES:
        _STORES.clear()
        _STORES[key] = make_store(keyring=Keyring.generate("acme"))
    return _STORES[key]
