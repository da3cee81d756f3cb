"""The demo report: interval maths by hand, and a page that carries every plot."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from examples.flywheel.demo_report import paired_interval, write_report


def test_paired_interval_matches_a_hand_computed_normal_interval() -> None:
    values = [0.1, 0.3, -0.2, 0.4]
    n, total, sq = len(values), sum(values), sum(v * v for v in values)
    mean = total / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    got = paired_interval({"n": n, "sum": total, "sumsq": sq})
    assert got is not None
    assert got[0] == pytest.approx(mean)
    assert got[1] == pytest.approx(mean - 1.96 * sd / math.sqrt(n))
    assert got[2] == pytest.approx(mean + 1.96 * sd / math.sqrt(n))
    assert paired_interval({"n": 1, "sum": 1.0, "sumsq": 1.0}) is None


def _report() -> dict[str, object]:
    tenant = {"task_success": 0.25, "quality": {"n": 4, "mean": 0.1, "tiers": {"gold": 1, "bronze": 3}},
              "usage": {"sessions": 4}}
    federated = {"version": "v2-abc", "residual": 0.0,
                 "nodes": [{"bytes_up": 1000, "bytes_down": 4000}, {"bytes_up": 900, "bytes_down": 4000}]}
    decision = {"verdict": "CONTINUE", "stage": "candidate",
                "tenants": {"node-1": {"paired": {"n": 12, "sum": 0.55, "sumsq": 0.0335}}}}
    return {
        "config": {"mode": "frozen-a"}, "tenants": ["acme", "<script>"], "seconds": 12.0, "production": None,
        "rounds": [
            {"round": 0, "tenants": {"acme": tenant, "<script>": tenant}, "federated": federated,
             "decision": decision, "seconds": 5.0},
            {"round": 1, "tenants": {"acme": tenant, "<script>": tenant}, "seconds": 2.0},
        ],
        "registry": [{"version": "v2-abc"}],
    }


def test_write_report_writes_json_and_a_page_with_every_plot(tmp_path: Path) -> None:
    json_path, html_path = write_report(_report(), tmp_path)
    page = html_path.read_text()
    assert json.loads(json_path.read_text())["rounds"][0]["federated"]["version"] == "v2-abc"
    assert page.count("<svg") == 5
    for title in ("Task success", "Session quality", "Quality tiers", "Offline A/B", "Bytes on the wire"):
        assert title in page
    assert "<script>" not in page and "&lt;script&gt;" in page  # tenant names are escaped
    assert "no A/B look had a cell above k_min" not in page  # the forest plot has its row
