"""How imported data enters selection, and what judges may do (issue 21, item 7).

* An import carries no user feedback: its trajectories score 0.30 (bronze, never selected)
  unless the deployer marks the file curated (``node import --curated``): each trajectory
  then gets a ``TrajectoryCurated`` event and scores ``[quality.curated] prior`` (0.7,
  gold) while no user reacts to it, or the score given on the command line.
* Judges never lift an answer users retried, edited or reported above its implicit score.
* A trajectory whose last tool result is an error scores ``[quality.combine] tool_error``
  lower than the same trajectory with a successful result.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hermes_fed.formats.importer import CuratedMark, import_lines
from hermes_fed.quality import read_model as rm
from hermes_fed.quality.config import QualityConfig
from hermes_fed.quality.judges import AgreementJudge, RuleBasedJudge
from hermes_fed.quality.pipeline import judge_new_trajectories, quality_runner, select_from_store
from hermes_fed.store import Keyring, SqlEventStore

from .conftest import edited, ev, feedback, judged, started, trajectory

# Selection and judging read projections, which need a database (not the memory log).
pytestmark = pytest.mark.sql

FIXTURE = Path(__file__).parents[2] / "fixtures" / "hermes_function_calling_v1.jsonl"
LINES = FIXTURE.read_text().splitlines()
SUCCESS, DECLINED = "t-d1d5c8b2-3a5e-4f0f-9a55-6a1c9b1e0f01", "t-5c2a9e77-1b3d-4c8e-b2f4-6e8d9a0c1f22"


@pytest.fixture
def store(make_store: Callable[..., Any]) -> SqlEventStore:
    s: SqlEventStore = make_store(keyring=Keyring.generate("acme"))
    return s


def rows(store: SqlEventStore, config: QualityConfig | None = None) -> dict[str, dict[str, Any]]:
    runner = quality_runner(store, config)
    with runner.engine.connect() as conn:
        return {r["trajectory_id"]: dict(r) for r in
                conn.execute(sa.select(rm.trajectories)).mappings()}


def test_uncurated_imports_are_bronze_and_never_selected(store: SqlEventStore) -> None:
    # Execute
    import_lines(LINES, "hermes", store.append)
    manifest = select_from_store(store, 100, 0)

    # Assert: silence is not evidence; nothing to train on
    assert {r["tier"] for r in rows(store).values()} == {"bronze"}
    assert manifest.items == ()


def test_a_curated_import_trains_at_the_configured_prior(store: SqlEventStore) -> None:
    # Execute
    report = import_lines(LINES, "hermes", store.append, curated=CuratedMark())
    manifest = select_from_store(store, 100, 0)

    # Assert: every row selected; the prior 0.7 is gold except where the last tool result
    # is an error (card_declined): 0.7 - 0.2 = 0.5, silver
    assert report.imported == 5
    scored = rows(store)
    assert {t: round(r["combined_score"], 6) for t, r in scored.items()} == {
        t: (0.5 if t == DECLINED else 0.7) for t in scored}
    assert len(manifest.items) == 5
    assert {i.tier for i in manifest.items} == {"gold", "silver"}


def test_the_prior_comes_from_the_config_and_an_explicit_score_wins(
        store: SqlEventStore) -> None:
    # Prepare
    import_lines(LINES[:2], "hermes", store.append, curated=CuratedMark())
    import_lines(LINES[2:3], "hermes", store.append, curated=CuratedMark(score=0.95))
    config = QualityConfig.from_mapping({"curated": {"prior": 0.9}})

    # Execute
    scored = rows(store, config)

    # Assert: the configured prior for the first two, the explicit score for the third
    assert sorted(round(r["combined_score"], 6) for r in scored.values()) == [0.9, 0.9, 0.95]
    assert {r["tier"] for r in scored.values()} == {"platinum"}


def test_reimporting_as_curated_marks_trajectories_imported_before(
        store: SqlEventStore) -> None:
    # Prepare: imported plain first
    import_lines(LINES, "hermes", store.append)

    # Execute
    again = import_lines(LINES, "hermes", store.append, curated=CuratedMark())

    # Assert: nothing new recorded, every trajectory now curated
    assert (again.imported, again.duplicates) == (0, 5)
    assert {r["tier"] for r in rows(store).values()} <= {"gold", "silver"}


def test_judges_never_lift_answers_users_retried_or_edited(store: SqlEventStore) -> None:
    # Prepare: a retried and heavily edited answer that both offline judges like
    store.append([started("s1"), ev(trajectory("t1", 2, 3), "s1"),
                  feedback("retry", "t1", "s1"), edited("t1", 0.8, "s1"),
                  judged("t1", "rules", 1.0, "s1"), judged("t1", "agreement", 1.0, "s1")])

    # Execute
    row = rows(store)["t1"]

    # Assert: 0.5 - 0.3 (not accepted) - 0.3 * 0.8 = -0.04; fused with the judges it
    # would be 0.6 * -0.04 + 0.4 = 0.376 (silver)
    assert row["implicit_score"] == pytest.approx(-0.04)
    assert row["combined_score"] == pytest.approx(-0.04)
    assert row["tier"] == "bronze"


def test_judges_may_still_lower_an_answer_users_retried(store: SqlEventStore) -> None:
    # Prepare
    store.append([started("s1"), ev(trajectory("t1", 2, 3), "s1"),
                  feedback("accept", "t1", "s1"), feedback("retry", "t1", "s1"),
                  judged("t1", "rules", 0.0, "s1")])

    # Execute
    row = rows(store)["t1"]

    # Assert: 0.5 + 0.3 = 0.8 implicit, fused 0.6 * 0.8 + 0.4 * 0 = 0.48
    assert row["combined_score"] == pytest.approx(0.48)


def test_the_judge_command_does_not_lift_retried_imports(store: SqlEventStore) -> None:
    # Prepare: the canonical rows, each then retried and edited by a user
    import_lines(LINES, "hermes", store.append)
    for tid, r in rows(store).items():
        store.append([feedback("retry", tid, r["session_id"].removeprefix("session-")),
                      edited(tid, 0.5, r["session_id"].removeprefix("session-"))])

    # Execute
    judge_new_trajectories(store, [RuleBasedJudge(), AgreementJudge()])
    scored = rows(store)

    # Assert: judged, and still bronze: never SFT data
    assert all(r["n_judges"] >= 1 for r in scored.values())
    assert {r["tier"] for r in scored.values()} == {"bronze"}
    assert select_from_store(store, 100, 0).items == ()


def test_a_tool_error_scores_below_the_same_answer_with_a_success(
        store: SqlEventStore) -> None:
    # Prepare: the same accepted, judged session, once with the tool failing
    ok = trajectory("ok", 2, 3)
    failed = trajectory("failed", 2, 3)
    failed.messages[2]["content"] = '{"error": "card_declined"}'
    for tid, record in (("ok", ok), ("failed", failed)):
        store.append([started(tid), ev(record, tid), feedback("accept", tid, tid),
                      judged(tid, "rules", 1.0, tid)])

    # Execute
    scored = rows(store)

    # Assert
    assert scored["ok"]["tool_error"] is False and scored["failed"]["tool_error"] is True
    assert scored["ok"]["combined_score"] - scored["failed"]["combined_score"] == \
        pytest.approx(0.2)
