"""Event schemas: field specs from type hints, validation, the catalog and upcaster chains."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hermes_fed.errors import SchemaError, UnknownEventTypeError
from hermes_fed.events import DEFAULT_CATALOG, Catalog, EventRecord, event_type, new_event
from hermes_fed.events.session import OutputEdited, SessionStarted, TrajectoryRecorded


def _catalog_with_note() -> tuple[Catalog, type[EventRecord]]:
    catalog = Catalog()

    @event_type("Note", catalog=catalog, personal=["author"])
    class Note(EventRecord):
        text: str
        count: int
        weight: float
        flag: bool
        tags: list[str]
        extra: dict[str, Any]
        author: str | None = None
        anything: Any = None

    return catalog, Note


VALID = {"text": "t", "count": 1, "weight": 0.5, "flag": True, "tags": ["a"], "extra": {"k": [1]}}


def test_schema_is_derived_from_type_hints() -> None:
    # Execute
    catalog, note = _catalog_with_note()
    schema = catalog.schema("Note")

    # Assert
    specs = {f.name: f for f in schema.fields}
    assert specs["text"].kinds == (str,) and specs["text"].required and not specs["text"].nullable
    assert specs["weight"].kinds == (int, float)
    assert specs["author"].nullable and not specs["author"].required
    assert specs["anything"].kinds is None
    assert schema.personal == frozenset({"author"})
    assert (note.TYPE, note.VERSION) == ("Note", 1)


def test_validate_fills_defaults_and_any_field_accepts_null() -> None:
    # Bug found: a field typed ``Any`` (any JSON value) refused null.
    catalog, _ = _catalog_with_note()
    out = catalog.schema("Note").validate(VALID)
    assert out == {**VALID, "author": None, "anything": None}


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"text": 3}, "text", "expected str, got int"),
        ({"count": True}, "count", "expected int, got bool"),
        ({"count": 1.5}, "count", "expected int, got float"),
        ({"weight": "0.5"}, "weight", "expected int|float, got str"),
        ({"weight": float("nan")}, "weight", "non-finite"),
        ({"flag": 1}, "flag", "expected bool, got int"),
        ({"tags": "a"}, "tags", "expected list, got str"),
        ({"extra": [1]}, "extra", "expected dict, got list"),
        ({"extra": {"k": {1, 2}}}, "extra", "type set"),
        ({"text": None}, "text", "must not be null"),
        ({"surprise": 1}, "surprise", "unknown field"),
        # Bug found: the next two passed validation and then failed in the encoder with a
        # bare ValueError naming no field.
        ({"count": 2**80}, "count", "64-bit"),
        ({"text": "\ud800"}, "text", "UTF-8"),
        ({"anything": object()}, "anything", "type object"),
    ],
)
def test_validate_names_field_and_type(change: dict[str, Any], field: str, words: str) -> None:
    # Prepare
    catalog, _ = _catalog_with_note()

    # Execute
    with pytest.raises(SchemaError) as caught:
        catalog.schema("Note").validate({**VALID, **change})

    # Assert
    assert caught.value.field == field
    assert caught.value.event_type == "Note"
    assert words in str(caught.value)


def test_validate_reports_missing_required_field() -> None:
    catalog, _ = _catalog_with_note()
    data = {k: v for k, v in VALID.items() if k != "count"}
    with pytest.raises(SchemaError, match=r"Note\.count: required field missing"):
        catalog.schema("Note").validate(data)


def test_validate_refuses_non_object() -> None:
    catalog, _ = _catalog_with_note()
    with pytest.raises(SchemaError, match="expected an object, got list"):
        catalog.schema("Note").validate([1, 2])  # type: ignore[arg-type]


@given(st.text(), st.sampled_from(["text", "count", "tags", "flag", "extra"]))
def test_schema_error_never_contains_the_value(planted: str, field: str) -> None:
    # Prepare: a wrong-typed value carrying a marker that cannot occur in a message by chance
    catalog, _ = _catalog_with_note()
    marker = "PLANTED<" + planted + ">"
    bad: Any = {
        "text": [marker],
        "count": marker,
        "tags": marker,
        "flag": marker,
        "extra": {"k": [marker, {marker}]},
    }[field]

    # Execute
    with pytest.raises(SchemaError) as caught:
        catalog.schema("Note").validate({**VALID, field: bad})

    # Assert
    assert caught.value.field == field
    assert marker not in str(caught.value)


def test_unsupported_hint_and_unknown_personal_field_are_refused_at_registration() -> None:
    catalog = Catalog()
    with pytest.raises(TypeError, match="unsupported type"):

        @event_type("Bad", catalog=catalog)
        class Bad(EventRecord):
            when: set[int]

    with pytest.raises(TypeError, match="personal fields"):

        @event_type("Bad2", catalog=catalog, personal=["nope"])
        class Bad2(EventRecord):
            text: str


def test_unknown_event_type_is_named() -> None:
    with pytest.raises(UnknownEventTypeError, match="'NoSuchEvent'"):
        DEFAULT_CATALOG.schema("NoSuchEvent")
    assert "NoSuchEvent" not in DEFAULT_CATALOG
    assert "TrajectoryRecorded" in DEFAULT_CATALOG.types()


def _versioned_catalog() -> Catalog:
    catalog = Catalog()

    @event_type("Doc", 3, catalog=catalog)
    class Doc(EventRecord):
        title: str
        words: int
        lang: str

    catalog.add_upcaster("Doc", 1, lambda d: {"title": d.pop("name"), **d})
    catalog.add_upcaster("Doc", 2, lambda d: {**d, "words": len(d["title"].split()), "lang": "en"})
    return catalog


def test_upcaster_chain_runs_every_step_in_order() -> None:
    # Prepare
    catalog = _versioned_catalog()

    # Execute
    from_v1 = catalog.upcast("Doc", 1, {"name": "two words"})
    from_v2 = catalog.upcast("Doc", 2, {"title": "one"})
    from_v3 = catalog.upcast("Doc", 3, {"title": "x", "words": 9, "lang": "fr"})

    # Assert
    assert from_v1 == {"title": "two words", "words": 2, "lang": "en"}
    assert from_v2 == {"title": "one", "words": 1, "lang": "en"}
    assert from_v3 == {"title": "x", "words": 9, "lang": "fr"}
    assert catalog.schema("Doc").validate(from_v1) == from_v1


def test_upcast_does_not_mutate_the_stored_data() -> None:
    catalog = _versioned_catalog()
    stored = {"name": "a b c"}
    catalog.upcast("Doc", 1, stored)
    assert stored == {"name": "a b c"}


@pytest.mark.parametrize(
    ("version", "words"),
    [(0, "no upcaster from version 0 to 1"), (4, "stored version 4 is newer than this code's version 3")],
)
def test_upcast_gaps_and_future_versions_are_schema_errors(version: int, words: str) -> None:
    with pytest.raises(SchemaError, match=words):
        _versioned_catalog().upcast("Doc", version, {})


def test_catalog_records_round_trip_through_new_event() -> None:
    # Prepare
    record = TrajectoryRecorded(
        trajectory_id="t-1",
        task="add",
        task_type="arithmetic",
        messages=[{"role": "user", "content": "2+3"}],
        tools=[],
        final_response="5",
    )

    # Execute
    event = new_event(record, stream_id="session-1", subject="u-1")
    back = DEFAULT_CATALOG.schema(event.type).record(
        **DEFAULT_CATALOG.schema(event.type).validate(event.data)
    )

    # Assert
    assert back == record
    assert event.type == "TrajectoryRecorded" and event.subject == "u-1"
    assert {"task", "messages", "final_response"} == TrajectoryRecorded.PERSONAL
    assert {"user_ref"} == SessionStarted.PERSONAL
    assert frozenset() == OutputEdited.PERSONAL


def test_ranges_and_lengths_are_refused_on_append_and_ignored_on_read() -> None:
    # Prepare
    edited = DEFAULT_CATALOG.schema("OutputEdited")
    judged = DEFAULT_CATALOG.schema("TrajectoryJudged")
    labeled = DEFAULT_CATALOG.schema("HumanLabeled")

    # Execute / Assert: the scales the quality pipeline reads, with the value (a number)
    for schema, data, message in [
        (edited, {"trajectory_id": "t", "edit_ratio": -0.5}, "must be in [0, 1], got -0.5"),
        (edited, {"trajectory_id": "t", "edit_ratio": 1.5}, "must be in [0, 1], got 1.5"),
        (judged, {"trajectory_id": "t", "judge": "j", "score": 7}, "must be in [0, 1], got 7"),
        (labeled, {"trajectory_id": "t", "score": 5.0}, "must be in [-1, 1], got 5"),
        (labeled, {"trajectory_id": "t" * 201, "score": 0.5}, "longer than 200 characters"),
    ]:
        for deep in (True, False):  # the store's shallow path checks limits too
            with pytest.raises(SchemaError, match=re.escape(message)):
                schema.validate(data, deep=deep)
        assert schema.validate(data, check_limits=False).items() >= data.items()
        assert DEFAULT_CATALOG.without_limits().schema(schema.type).validate(
            data).items() >= data.items()
    assert edited.validate({"trajectory_id": "t", "edit_ratio": 1}, deep=False)["edit_ratio"] == 1


@pytest.mark.parametrize(("depth", "ok"), [(61, True), (62, False), (300, False), (5000, False)])
def test_nesting_is_bounded_counting_from_the_event_data(depth: int, ok: bool) -> None:
    # Prepare: a tool's parameters nested `depth` levels, under data(1) tools(2) tool(3)
    parameters: Any = 1
    for _ in range(depth):
        parameters = {"a": parameters}
    data = {"trajectory_id": "t", "task": "q", "task_type": "k", "final_response": "a",
            "messages": [], "tools": [{"name": "f", "parameters": parameters}]}
    schema = DEFAULT_CATALOG.schema("TrajectoryRecorded")

    # Execute / Assert: data(1) + tools(2) + tool(3) + depth <= 64 is fine, never a crash
    if ok:
        schema.validate(data)
    else:
        with pytest.raises(SchemaError, match="nested deeper than 64 levels"):
            schema.validate(data)


def test_a_federated_round_record_holds_ids_counts_and_versions_only() -> None:
    from hermes_fed.events.training import FederatedRoundTrained

    # Prepare: what a node records after a round (Flower run ids are uint64)
    schema = DEFAULT_CATALOG.schema("FederatedRoundTrained")
    good = {"flower_run_id": 2**64 - 1, "round": 3, "parent_version": None,
            "dataset_manifest_sha256": "a" * 64, "num_examples": 40,
            "n_by_tier": {"gold": 40}, "log_position": 123}
    # Execute / Assert
    assert schema.validate(good) == good
    assert schema.record is FederatedRoundTrained and schema.personal == frozenset()
    for field, bad, problem in [
            ("round", -1, "must be in"), ("num_examples", True, "expected int"),
            ("flower_run_id", 2**64, "must be in"), ("parent_version", "v" * 201, "longer"),
            ("dataset_manifest_sha256", "a" * 65, "longer"), ("log_position", "1", "expected")]:
        with pytest.raises(SchemaError, match=problem):
            schema.validate({**good, field: bad})
    with pytest.raises(SchemaError, match="unknown field"):
        schema.validate({**good, "task": "a user's text"})
