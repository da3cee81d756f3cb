"""Training selection: budgets, reproducibility, balance, dedupe, exclusion, manifest."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hermes_fed.events.schema import DEFAULT_CATALOG
from hermes_fed.quality.config import QualityConfig, SelectionConfig
from hermes_fed.quality.selection import (
    Candidate,
    candidate_signature,
    select_training_data,
    tier_budgets,
)

# DESIGN.md §5's budgets with its bronze budget max(100, N/10) (opt-in: the default trains
# no bronze)
WITH_BRONZE = QualityConfig(selection=SelectionConfig(bronze_min=100, bronze_fraction=0.1))


def make_candidates(n: int, seed: int = 0, types: tuple[str, ...] = ("a", "b", "c"),
                    weights: tuple[float, ...] = (1, 1, 1)) -> list[Candidate]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        task_type = rng.choices(types, weights)[0]
        # Distinct texts: a unique number spelt into both task and answer
        text = f"task {i} {task_type} {rng.random():.12f}"
        out.append(Candidate(f"t{i:05d}", task_type, rng.uniform(-1, 1),
                             candidate_signature(text, f"answer {i * 7919}")))
    return out


@pytest.mark.parametrize(
    ("target_n", "expected"),
    [(1000, {"platinum": 50, "gold": 200, "silver": 500, "bronze": 100}),
     (10_000, {"platinum": 400, "gold": 2000, "silver": 5000, "bronze": 1000}),
     (2600, {"platinum": 104, "gold": 520, "silver": 1300, "bronze": 260})],
)
def test_tier_budgets(target_n: int, expected: dict[str, int]) -> None:
    assert tier_budgets(target_n, WITH_BRONZE.selection) == expected
    assert tier_budgets(target_n) == {**expected, "bronze": 0}


def test_bronze_is_never_selected_by_default() -> None:
    # Prepare: every tier well stocked
    candidates = make_candidates(3000)
    # Execute
    manifest = select_training_data(candidates, target_n=1000, seed=7)
    # Assert: bronze places are never spare places either
    assert manifest.n_by_tier["bronze"] == 0
    assert manifest.n_by_tier["platinum"] > 0 and manifest.n_by_tier["silver"] > 0


def test_budgets_cap_each_tier_and_weights_follow_tiers() -> None:
    # Prepare: plenty of candidates in every tier
    candidates = make_candidates(3000)
    # Execute
    manifest = select_training_data(candidates, target_n=100, seed=7, config=WITH_BRONZE)
    # Assert: N=100 -> floors 50/200/500/100 apply; tiers hold what they can
    by_score = {c.trajectory_id: c.combined_score for c in candidates}
    assert manifest.n_by_tier["platinum"] == 50
    assert manifest.n_by_tier["bronze"] == 100
    for item in manifest.items:
        score = by_score[item.trajectory_id]
        expected = ("platinum", 5.0) if score >= 0.85 else ("gold", 2.0) if score >= 0.6 \
            else ("silver", 1.0) if score >= 0.35 else ("bronze", 0.3)
        assert (item.tier, item.weight) == expected


def test_same_seed_same_manifest_in_any_input_order() -> None:
    candidates = make_candidates(1500)
    shuffled = candidates[:]
    random.Random(3).shuffle(shuffled)
    first = select_training_data(candidates, 200, seed=11)
    second = select_training_data(shuffled, 200, seed=11)
    other = select_training_data(candidates, 200, seed=12)
    assert first == second
    assert first.sha256 != other.sha256


def test_sha256_is_over_the_canonical_manifest_json() -> None:
    manifest = select_training_data(make_candidates(50), 100, seed=1)
    body = {"version": 1, "target_n": 100, "seed": 1,
            "items": [i.to_json() for i in manifest.items]}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert manifest.sha256 == hashlib.sha256(canonical).hexdigest()


def test_balanced_across_task_types_when_over_budget() -> None:
    # Prepare: a 90/8/2 mix; every candidate gold so one budget (200) decides (a target of
    # 200 leaves no spare places)
    rng = random.Random(5)
    types = ["common"] * 900 + ["rare"] * 80 + ["tiny"] * 20
    candidates = [Candidate(f"t{i}", t, 0.7, candidate_signature(f"{t} {i} {rng.random()}", ""))
                  for i, t in enumerate(types)]
    # Execute
    manifest = select_training_data(candidates, 200, seed=0)
    # Assert: the rare types are taken whole-ish, the common one fills the rest
    counts = Counter(item.task_type for item in manifest.items)
    assert counts["tiny"] == 20
    assert counts["rare"] == 80
    assert counts["common"] == 100
    assert manifest.n_by_tier["gold"] == 200


def test_round_robin_equalises_when_all_types_are_large() -> None:
    # Prepare: every candidate silver (budget 500), types of 1000 / 300 / 300
    rng = random.Random(9)
    types = ["a"] * 1000 + ["b"] * 300 + ["c"] * 300
    candidates = [Candidate(f"t{i}", t, 0.4, candidate_signature(f"{t} {i} {rng.random()}", ""))
                  for i, t in enumerate(types)]
    # Execute
    manifest = select_training_data(candidates, 100, seed=0)
    # Assert: 500 split as evenly as possible
    counts = Counter(i.task_type for i in manifest.items)
    assert sorted(counts.values()) == [166, 167, 167]


def test_near_duplicates_removed_keeping_the_best_score() -> None:
    # Prepare: the same task/answer three times with formatting noise
    sig = [candidate_signature("What is 2+3?", "2+3 = 5"),
           candidate_signature("what is  2+3?", "2+3 = 5 "),
           candidate_signature("WHAT IS 2+3?", "2+3 = 5")]
    candidates = [Candidate("low", "math", 0.2, sig[0]), Candidate("best", "math", 0.9, sig[1]),
                  Candidate("mid", "math", 0.5, sig[2]),
                  Candidate("other", "math", 0.5, candidate_signature("Weather in Oslo?", "Rain"))]
    # Execute
    manifest = select_training_data(candidates, 10, seed=0)
    # Assert
    assert manifest.trajectory_ids == ("best", "other")
    assert manifest.excluded_duplicates == (("low", "best"), ("mid", "best"))


def test_used_trajectories_are_excluded() -> None:
    candidates = make_candidates(30)
    used = {c.trajectory_id for c in candidates[:10]}
    marked = [Candidate(c.trajectory_id, c.task_type, c.combined_score, c.signature,
                        c.trajectory_id in used) for c in candidates]
    manifest = select_training_data(marked, 1000, seed=0, config=WITH_BRONZE)
    assert manifest.excluded_used == 10
    assert not used & set(manifest.trajectory_ids)
    assert len(manifest.items) == 20


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 20_000), st.integers(0, 2**32), st.integers(0, 200))
def test_manifest_never_exceeds_budgets_or_repeats(target_n: int, seed: int, n: int) -> None:
    manifest = select_training_data(make_candidates(n, seed=seed % 7), target_n, seed)
    budgets = tier_budgets(target_n)
    total = sum(manifest.n_by_tier.values())
    # a tier grows past its budget only into places the others left spare (never bronze)
    assert all(manifest.n_by_tier[t] <= budgets[t] or (t != "bronze" and total <= target_n)
               for t in budgets)
    ids = manifest.trajectory_ids
    assert len(set(ids)) == len(ids) and list(ids) == sorted(ids)


def test_manifest_becomes_a_valid_training_data_selected_event() -> None:
    manifest = select_training_data(make_candidates(20), 100, seed=3)
    record = manifest.to_event()
    schema = DEFAULT_CATALOG.schema("TrainingDataSelected")
    assert schema.validate(record.to_data())["manifest_sha256"] == manifest.sha256
    assert record.selection_id == manifest.selection_id
    assert sum(record.n_by_tier.values()) == len(record.items)


@pytest.mark.parametrize(("target_n", "seed", "named"),
                         [(0, 1, "target_n"), (10, -1, "seed"), (True, 1, "target_n")])
def test_bad_arguments_are_refused(target_n: int, seed: int, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        select_training_data([], target_n, seed)


def test_bad_candidates_are_refused() -> None:
    sig = candidate_signature("a", "b")
    with pytest.raises(ValueError, match="duplicate candidate id"):
        select_training_data([Candidate("x", "a", 0.1, sig), Candidate("x", "a", 0.2, sig)], 5, 0)
    with pytest.raises(ValueError, match="combined_score"):
        Candidate("x", "a", 1.5, sig)
    config = QualityConfig.from_mapping({"selection": {"minhash_permutations": 32}})
    with pytest.raises(ValueError, match="signature has 64"):
        select_training_data([Candidate("x", "a", 0.2, sig)], 5, 0, config)


def test_spare_places_go_to_the_best_tiers_first() -> None:
    # Arrange: 120 distinct platinum and 30 bronze candidates, a target of 100
    candidates = [Candidate(c.trajectory_id, c.task_type, 0.9, c.signature)
                  for c in make_candidates(120, seed=1)]
    candidates += [Candidate(f"b{c.trajectory_id}", c.task_type, -0.5, c.signature)
                   for c in make_candidates(30, seed=2)]
    # Execute
    manifest = select_training_data(candidates, 100, seed=0, config=WITH_BRONZE)
    small = select_training_data(candidates, 40, seed=0, config=WITH_BRONZE)
    # Assert: platinum fills the spare places up to the target; bronze keeps its budget
    budgets = tier_budgets(100, WITH_BRONZE.selection)
    assert budgets["platinum"] == 50 and budgets["bronze"] == 100
    assert manifest.n_by_tier["bronze"] == 30
    assert manifest.n_by_tier["platinum"] == 100 - 30
    assert small.n_by_tier["platinum"] == 50  # nothing spare: the budget alone
    per_type = Counter(i.task_type for i in manifest.items if i.tier == "platinum")
    assert max(per_type.values()) - min(per_type.values()) <= 12  # still balanced
