"""Traffic plans and routing by the node's keyed hash (hermes_fed.serving.plan, P1-P3)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from hermes_fed.errors import ConfigError
from hermes_fed.serving.assignment import assignment_point
from hermes_fed.serving.plan import PlanArm, TrafficPlan, parse_arm

SECRET = b"k" * 32


def _plan(shares: tuple[float, ...] = (0.9, 0.1), test_id: str = "ab-1") -> TrafficPlan:
    names = ["control", "treatment", "third"][: len(shares)]
    versions = ["base", "v2-abc", "v3-def"][: len(shares)]
    return TrafficPlan(test_id, tuple(PlanArm(n, v, s) for n, v, s in
                                      zip(names, versions, shares, strict=True)), "control")


def test_p1_a_user_keeps_its_arm_in_another_process() -> None:
    # Prepare
    plan = _plan((0.5, 0.5))
    here = [plan.route(SECRET, f"user-{i}").arm.name for i in range(50)]
    code = ("from hermes_fed.serving.plan import TrafficPlan;"
            "import json,sys;p=TrafficPlan.from_dict(json.loads(sys.argv[1]));"
            "print(','.join(p.route(b'k'*32, f'user-{i}').arm.name for i in range(50)))")
    import json

    # Execute
    there = subprocess.run([sys.executable, "-c", code, json.dumps(plan.to_dict())],
                           capture_output=True, text=True, check=True).stdout.strip().split(",")

    # Assert
    assert here == there
    assert set(here) == {"control", "treatment"}


def test_p1_the_arm_is_the_interval_of_the_users_keyed_point() -> None:
    # Prepare: arm k owns [cumulative share before k, cumulative share through k)
    plan = _plan((0.7, 0.2, 0.1))

    for i in range(200):
        user = f"u{i}"
        point = assignment_point(SECRET, plan.test_id, user)
        expected = "control" if point < 0.7 else "treatment" if point < 0.9 else "third"

        # Execute / Assert
        assert plan.route(SECRET, user).arm.name == expected


@pytest.mark.parametrize("shares", [(0.9, 0.1), (0.5, 0.5), (0.99, 0.01), (0.6, 0.3, 0.1)])
def test_p2_shares_within_binomial_bounds_over_10000_users(shares: tuple[float, ...]) -> None:
    # Prepare
    plan = _plan(shares)
    n = 10_000

    # Execute
    counts: dict[str, int] = {}
    for i in range(n):
        arm = plan.route(SECRET, f"user-{i}").arm.name
        counts[arm] = counts.get(arm, 0) + 1

    # Assert: each count within 4.5 standard deviations of n*p (false alarm ~7e-6 per arm)
    for arm in plan.arms:
        sd = math.sqrt(n * arm.share * (1 - arm.share))
        assert abs(counts.get(arm.name, 0) - n * arm.share) <= 4.5 * sd, (arm, counts)


def test_a_new_test_id_redraws_users_independently() -> None:
    # Prepare
    a, b = _plan((0.5, 0.5), "ab-1"), _plan((0.5, 0.5), "ab-2")

    # Execute
    same = sum(a.route(SECRET, f"u{i}").arm == b.route(SECRET, f"u{i}").arm for i in range(4000))

    # Assert: independent draws agree about half the time (4.5 sd of Binomial(4000, 0.5))
    assert abs(same - 2000) <= 4.5 * math.sqrt(1000)


def test_no_user_goes_to_production() -> None:
    plan = TrafficPlan("ab-1", (PlanArm("a", "base", 0.5), PlanArm("b", "v2", 0.5)), "b")
    route = plan.route(SECRET, None)
    assert (route.arm.name, route.by_user) == ("b", False)
    assert plan.route(SECRET, "").arm.name == "b"


def test_round_trips_through_dict_and_event_data() -> None:
    plan = _plan((0.6, 0.3, 0.1))
    assert TrafficPlan.from_dict(plan.to_dict()) == plan
    assert TrafficPlan.from_event_data(plan.to_event_data()) == plan


@pytest.mark.parametrize(("make", "needle"), [
    (lambda: TrafficPlan("ab", (), "a"), "at least one arm"),
    (lambda: TrafficPlan("ab", (PlanArm("a", "base", 0.5), PlanArm("b", "v2", 0.4)), "a"),
     "sum to 1"),
    (lambda: TrafficPlan("ab", (PlanArm("a", "base", 0.5), PlanArm("a", "v2", 0.5)), "a"),
     "names must be distinct"),
    (lambda: TrafficPlan("ab", (PlanArm("a", "v2", 0.5), PlanArm("b", "v2", 0.5)), "a"),
     "versions must be distinct"),
    (lambda: TrafficPlan("ab", (PlanArm("a", "base", 1.0),), "zzz"), "production"),
    (lambda: PlanArm("a", "../etc", 1.0), "version"),
    (lambda: PlanArm("a", "v1", 0.0), "share"),
    (lambda: PlanArm("a", "v1", float("nan")), "share"),
    (lambda: TrafficPlan("bad id", (PlanArm("a", "base", 1.0),), "a"), "test_id"),
    (lambda: TrafficPlan.from_dict({"test_id": "x", "arms": [{"name": "a"}]}), r"arms\[0\]"),
    (lambda: TrafficPlan.from_dict({"test_id": "x", "arms": [], "extra": 1}), "unknown keys"),
    (lambda: parse_arm("a=v1"), "NAME=VERSION:SHARE"),
    (lambda: parse_arm("a=v1:x"), "share must be a number"),
])
def test_p3_bad_plans_are_refused_naming_the_field(make: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        make()  # type: ignore[operator]


def test_parse_arm_keeps_colons_in_versions() -> None:
    assert parse_arm("t=v3:rc1:0.25") == PlanArm("t", "v3:rc1", 0.25)
