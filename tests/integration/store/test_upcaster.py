"""An event stored as v1 of a type is read back as v2 once a v2 schema and an upcaster land;
the stored bytes are never rewritten (the chain still verifies)."""

from __future__ import annotations

from typing import Any

import pytest

from hermes_fed.errors import SchemaError
from hermes_fed.events import Catalog, EventRecord, NewEvent, event_type
from hermes_fed.store import Keyring

from .helpers import MakeStore, snapshot


def _catalog_v1() -> Catalog:
    catalog = Catalog()

    @event_type("Feedback", 1, catalog=catalog)
    class FeedbackV1(EventRecord):
        trajectory_id: str
        thumbs_up: bool

    return catalog


def _catalog_v2(with_upcaster: bool = True) -> tuple[Catalog, type[EventRecord]]:
    catalog = Catalog()

    @event_type("Feedback", 2, catalog=catalog)
    class FeedbackV2(EventRecord):
        trajectory_id: str
        score: float
        source: str

    def v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
        return {
            "trajectory_id": data["trajectory_id"],
            "score": 1.0 if data["thumbs_up"] else -1.0,
            "source": "thumbs",
        }

    if with_upcaster:
        catalog.add_upcaster("Feedback", 1, v1_to_v2)
    return catalog, FeedbackV2


def test_v1_event_is_read_back_as_v2(make_store: MakeStore) -> None:
    # Prepare: written by code that knew only v1
    ring = Keyring.generate("acme")
    old = make_store(keyring=ring, catalog=_catalog_v1())
    old.append(
        [
            NewEvent("session-1", "Feedback", {"trajectory_id": "t-1", "thumbs_up": True}),
            NewEvent("session-1", "Feedback", {"trajectory_id": "t-2", "thumbs_up": False}),
        ]
    )
    stored = snapshot(old)
    catalog_v2, feedback_v2 = _catalog_v2()

    # Execute: the v2 code reads the log and appends a native v2 event
    new = make_store(keyring=ring, catalog=catalog_v2)
    new.append([NewEvent("session-1", "Feedback", {"trajectory_id": "t-3", "score": 0.5, "source": "ui"})])
    events = list(new.read())

    # Assert
    assert [e.data for e in events] == [
        {"trajectory_id": "t-1", "score": 1.0, "source": "thumbs"},
        {"trajectory_id": "t-2", "score": -1.0, "source": "thumbs"},
        {"trajectory_id": "t-3", "score": 0.5, "source": "ui"},
    ]
    assert [e.schema_version for e in events] == [1, 1, 2]  # as stored
    assert events[0].record(catalog_v2) == feedback_v2(trajectory_id="t-1", score=1.0, source="thumbs")
    assert snapshot(new)[:2] == stored  # old rows untouched
    assert new.verify().ok


def test_missing_upcaster_is_a_named_schema_error(make_store: MakeStore) -> None:
    make_store(catalog=_catalog_v1()).append(
        [NewEvent("session-1", "Feedback", {"trajectory_id": "t-1", "thumbs_up": True})]
    )
    reader = make_store(catalog=_catalog_v2(with_upcaster=False)[0])
    with pytest.raises(SchemaError, match=r"Feedback\.<schema_version>: no upcaster from version 1 to 2"):
        list(reader.read())


def test_event_newer_than_the_code_is_a_named_schema_error(make_store: MakeStore) -> None:
    make_store(catalog=_catalog_v2()[0]).append(
        [NewEvent("session-1", "Feedback", {"trajectory_id": "t", "score": 1.0, "source": "ui"})]
    )
    with pytest.raises(SchemaError, match="stored version 2 is newer than this code's version 1"):
        list(make_store(catalog=_catalog_v1()).read())


def test_v1_data_is_refused_by_the_v2_writer(make_store: MakeStore) -> None:
    # Appends are validated against the current schema only; upcasting is for reads
    store = make_store(catalog=_catalog_v2()[0])
    with pytest.raises(SchemaError, match=r"Feedback\.thumbs_up: unknown field"):
        store.append([NewEvent("session-1", "Feedback", {"trajectory_id": "t", "thumbs_up": True})])
    assert store.head() == 0
