"""The demo report: interval maths by hand, and a page that carries every plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from examples.flywheel.demo_report import success_by_role, wilson, write_report


def test_wilson_matches_a_hand_computed_interval() -> None:
    correct, n, z = 3, 20, 1.96
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    got = wilson(correct, n)
    assert got == pytest.approx((centre - half, centre + half))
    low, high = wilson(0, 10) or (None, None)
    assert low == 0.0 and high is not None and 0.25 < high < 0.35  # zero successes: not [0, 0]
    assert wilson(0, 0) is None


def _cell(version: str, correct: int, sessions: int, quality: float | None) -> dict[str, object]:
    return {"version": version, "sessions": sessions, "correct": correct,
            "success": correct / sessions, "quality": quality, "scored": sessions}


def _day(day: int, arms: dict[str, dict[str, object]]) -> dict[str, object]:
    tenant = {"usage": {"sessions": sum(int(c["sessions"]) for c in arms.values())},  # type: ignore[call-overload]
              "success": 0.1, "arms": arms, "tiers": {"gold": 1, "bronze": 3}}
    small = {"usage": {"sessions": 2}, "success": 0.0,
             "arms": {"production": _cell("base", 0, 2, -0.5)}, "tiers": {"bronze": 2}}
    return {"day": day, "beat": ["wait: x"], "phase": "ab", "production": None,
            "plan": {"test_id": "ab-v2", "production": "base",
                     "arms": [{"name": "control", "version": "base", "share": 0.5},
                              {"name": "treatment", "version": "v2", "share": 0.5}]},
            "gateway_plans": {}, "seconds": 3.0, "timings": {},
            "decisions": [{"event": "AutopilotStepIntended", "action": "promote", "stage": "ab",
                           "reason": "canary clean <b>", "cycle": 1, "at": "x"},
                          {"event": "AutopilotStepCompleted", "action": "ab_look", "ok": True,
                           "verdict": "CONTINUE", "reason": "too few", "cycle": 1, "at": "x"}],
            "tenants": {"acme": tenant, "<script>": small}}


def _report() -> dict[str, object]:
    days = [_day(1, {"production": _cell("base", 1, 10, -0.2)}),
            _day(2, {"control": _cell("base", 1, 5, -0.1), "treatment": _cell("v2", 3, 6, 0.3)})]
    return {"config": {"mode": "exact"}, "tenants": ["acme", "<script>"], "seconds": 12.0,
            "production": None, "days": days, "registry": [{"version": "v2"}],
            "status": {"cycles": [{"cycle": 1, "outcome": "production", "version": "v2"}]},
            "autopilot_toml": "[autopilot]\n"}


def test_success_by_role_pools_tenants_and_splits_the_candidates_users() -> None:
    report = _report()
    got = success_by_role(report["days"])  # type: ignore[arg-type]
    # day 1: every user on production (acme 1/10, the other tenant 0/2); day 2: the A/B's
    # control users with production's, its treatment users as the candidate's
    assert got == {"production": [(1, 12), (1, 7)], "candidate": [(0, 0), (3, 6)]}


def test_write_report_writes_json_and_a_page_with_every_plot(tmp_path: Path) -> None:
    json_path, html_path = write_report(_report(), tmp_path)
    page = html_path.read_text()
    assert json.loads(json_path.read_text())["days"][1]["tenants"]["acme"]["arms"]["treatment"][
        "version"] == "v2"
    assert page.count("<svg") == 4
    first = page.index("<svg")
    assert page.index("Usage task success by day and arm") < page.index("<svg", first + 1)
    assert page.count("<polygon") >= 1  # the confidence band
    for title in ("Task success per tenant", "&lt;script&gt;: the long tail", "Session quality",
                  "Quality tiers", "canary clean &lt;b&gt;", "CONTINUE", "treatment v2"):
        assert title in page, title
    assert "<script>" not in page  # tenant names and reasons are escaped
