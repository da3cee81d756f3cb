# ruff: noqa: E501  (SVG markup reads better on one line per element)
"""The demo report: JSON and one self-contained HTML page with inline SVG plots.

First plot: usage task success by simulated day and arm (users the production version
served vs users the candidate served, all tenants pooled) with 95% Wilson bands; then
success and session quality per tenant by day, each day's quality tiers, and a table of
every day: the plan the gateways served, each tenant's arms, and the autopilot's decisions
with their reasons. Inline SVG keeps the page dependency-free and readable offline.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
TIERS = ("platinum", "gold", "silver", "bronze")
TIER_COLOURS = {"platinum": "#6a5acd", "gold": "#d4a017", "silver": "#a0a0a0", "bronze": "#cd7f32"}
W, H, PAD = 520, 260, 44


def _scale(lo: float, hi: float, a: float, b: float) -> Any:
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def line_chart(
    title: str, series: Mapping[str, Sequence[float | None]], y_range: tuple[float, float], y_label: str,
    labels: Sequence[str] = (), bands: Mapping[str, Sequence[tuple[float, float] | None]] | None = None,
) -> str:
    """One line per series over the x labels; ``bands`` shades an interval around a series."""
    n = max((len(v) for v in series.values()), default=1)
    x = _scale(0, max(1, n - 1), PAD + 10, W - 40)
    y = _scale(y_range[0], y_range[1], H - PAD, 20)
    parts = [_frame(title, y_range, y, y_label)]
    every = max(1, n // 12)
    for i in range(0, n, every):
        label = labels[i] if i < len(labels) else str(i)
        parts.append(
            f'<text x="{x(i):.1f}" y="{H - PAD + 16}" font-size="11" text-anchor="middle">{html.escape(label)}</text>'
        )
    for k, name in enumerate(series):
        band = (bands or {}).get(name)
        if band:
            runs: list[list[tuple[int, tuple[float, float]]]] = [[]]
            for i, b in enumerate(band):
                if b is None:
                    runs.append([])
                else:
                    runs[-1].append((i, b))
            for run in (r for r in runs if r):
                upper = [f"{x(i):.1f},{y(b[1]):.1f}" for i, b in run]
                lower = [f"{x(i):.1f},{y(b[0]):.1f}" for i, b in reversed(run)]
                parts.append(f'<polygon points="{" ".join(upper + lower)}" '
                             f'fill="{COLOURS[k % len(COLOURS)]}" fill-opacity="0.15" stroke="none"/>')
    for k, (name, values) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        points = [(x(i), y(v)) for i, v in enumerate(values) if v is not None]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{path}"/>')
            parts += [f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>' for px, py in points]
        parts.append(
            f'<text x="{W - 110}" y="{24 + 14 * k}" font-size="11" fill="{colour}">{html.escape(name)}</text>'
        )
    return _svg(parts)


def _frame(title: str, y_range: tuple[float, float], y: Any, y_label: str) -> str:
    ticks = []
    lo, hi = y_range
    for j in range(5):
        v = lo + (hi - lo) * j / 4
        ticks.append(
            f'<line x1="{PAD}" x2="{W - 16}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>'
            f'<text x="{PAD - 4}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end">{v:.2g}</text>'
        )
    return (
        f'<text x="{W / 2}" y="14" font-size="13" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>'
        f'<text x="10" y="{H / 2}" font-size="11" transform="rotate(-90 10 {H / 2})" text-anchor="middle">'
        f"{html.escape(y_label)}</text>" + "".join(ticks)
    )


def _svg(parts: Sequence[str]) -> str:
    return f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}">{"".join(parts)}</svg>'


def tier_chart(title: str, counts: Mapping[str, Mapping[str, int]]) -> str:
    """Stacked bars: one per (tenant, round) label, stacked by tier."""
    labels = list(counts)
    top = max([sum(c.values()) for c in counts.values()] + [1])
    y = _scale(0, top, H - PAD, 20)
    width = (W - PAD - 16) / max(1, len(labels))
    parts = [_frame(title, (0, top), y, "trajectories")]
    for i, label in enumerate(labels):
        x0 = PAD + i * width + 2
        base = 0.0
        for tier in TIERS:
            v = counts[label].get(tier, 0)
            if v:
                parts.append(
                    f'<rect x="{x0:.1f}" y="{y(base + v):.1f}" width="{width - 4:.1f}" '
                    f'height="{y(base) - y(base + v):.1f}" fill="{TIER_COLOURS[tier]}"/>'
                )
                base += v
        parts.append(
            f'<text x="{x0 + width / 2 - 2:.1f}" y="{H - PAD + 14}" font-size="9" '
            f'text-anchor="middle">{html.escape(label)}</text>'
        )
    for k, tier in enumerate(TIERS):
        parts.append(
            f'<text x="{W - 80}" y="{24 + 13 * k}" font-size="11" fill="{TIER_COLOURS[tier]}">{tier}</text>'
        )
    return _svg(parts)


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (None without sessions)."""
    if n <= 0:
        return None
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


ROLES = ("production", "candidate")


def role(arm: str) -> str:
    """Users the candidate served (a canary's or an A/B's treatment) vs the rest."""
    return "candidate" if arm == "treatment" else "production"


def success_by_role(days: Sequence[Mapping[str, Any]]) -> dict[str, list[tuple[int, int]]]:
    """Per role, per day: (correct, sessions) over every tenant."""
    out: dict[str, list[tuple[int, int]]] = {r: [] for r in ROLES}
    for day in days:
        totals = {r: [0, 0] for r in ROLES}
        for tenant in day["tenants"].values():
            for arm, cell in tenant["arms"].items():
                totals[role(arm)][0] += int(cell["correct"])
                totals[role(arm)][1] += int(cell["sessions"])
        for r in ROLES:
            out[r].append((totals[r][0], totals[r][1]))
    return out


def _cells(tenant: Mapping[str, Any]) -> str:
    return "<br>".join(
        f"{html.escape(arm)} {html.escape(str(c['version']))}: {c['correct']}/{c['sessions']}"
        + (f" q {c['quality']:+.2f}" if c.get("quality") is not None else "")
        for arm, c in sorted(tenant["arms"].items()))


def _decisions(day: Mapping[str, Any]) -> str:
    out = []
    for d in day["decisions"]:
        if d["event"] == "AutopilotStepIntended":
            what = d["action"] + (f" ({d['stage']})" if d.get("stage") else "")
            out.append(f"<b>{html.escape(what)}</b>: {html.escape(str(d.get('reason', ''))[:400])}")
        elif d["event"] == "AutopilotStepCompleted" and (d.get("verdict") or not d.get("ok")):
            status = d.get("verdict") or ("failed" if not d.get("ok") else "ok")
            out.append(f"&rarr; {html.escape(str(status))} {html.escape(str(d.get('reason') or '')[:300])}")
        elif d["event"] in ("AutopilotCycleEnded", "AutopilotWaited"):
            out.append(f"<i>{html.escape(d['event'][9:])}</i>: {html.escape(str(d.get('reason', ''))[:300])}")
    return "<br>".join(out) or "waits"


def render_html(report: Mapping[str, Any]) -> str:
    tenants: list[str] = list(report["tenants"])
    days: list[Mapping[str, Any]] = list(report["days"])
    labels = [f"d{d['day']}" for d in days]
    by_role = success_by_role(days)
    success = {r: [c / n if n else None for c, n in by_role[r]] for r in ROLES}
    bands = {r: [wilson(c, n) for c, n in by_role[r]] for r in ROLES}
    per_tenant = {t: [d["tenants"][t]["success"] for d in days] for t in tenants}
    quality: dict[str, list[float | None]] = {}
    for t in tenants:
        quality[t] = []
        for d in days:
            cells = [c for c in d["tenants"][t]["arms"].values() if c.get("quality") is not None]
            n = sum(c["scored"] for c in cells)
            quality[t].append(sum(c["quality"] * c["scored"] for c in cells) / n if n else None)
    tiers = {f"d{d['day']}": {k: sum(d["tenants"][t]["tiers"].get(k, 0) for t in tenants)
                             for k in TIERS} for d in days}
    rows = "".join(
        f"<tr><td>{d['day']}</td><td>{html.escape(str((d.get('plan') or {}).get('test_id', 'none')))}"
        f"<br>{html.escape(_arms(d.get('plan')))}</td>"
        + "".join(f"<td>{_cells(d['tenants'][t])}</td>" for t in tenants)
        + f"<td>{_decisions(d)}</td><td>{d.get('seconds', 0):.0f}s</td></tr>"
        for d in days)
    head = "".join(f"<th>{html.escape(t)}: arm version correct/sessions, quality</th>" for t in tenants)
    long_tail = min(tenants, key=lambda t: sum(d["tenants"][t]["usage"]["sessions"] for d in days)) \
        if tenants and days else ""
    charts = [
        line_chart("Usage task success by day and arm (all tenants, 95% Wilson band)", success,
                   (0.0, 1.0), "share correct", labels, bands),
        line_chart(f"Task success per tenant by day ({long_tail}: the long tail)", per_tenant,
                   (0.0, 1.0), "share correct", labels),
        line_chart("Session quality per tenant by day (mean combined score)", quality, (-1.0, 1.0),
                   "combined score", labels),
        tier_chart("Quality tiers of each day's trajectories (all tenants)", tiers),
    ]
    status = report.get("status") or {}
    ended = "; ".join(f"cycle {c.get('cycle')}: {c.get('outcome')} {c.get('version') or ''}"
                      for c in status.get("cycles", []) if c.get("outcome"))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>hermes-fed demo report</title>"
        "<style>body{font-family:sans-serif;margin:24px;max-width:1400px}svg{margin:6px;border:1px solid #ddd}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;font-size:12px;vertical-align:top}</style>"
        "</head><body><h1>hermes-fed: the flywheel on the production path</h1>"
        f"<p>{len(tenants)} tenant nodes, each with its gateway in front of its model server; "
        f"{len(days)} simulated days turned by the coordinator's autopilot "
        f"({html.escape(str(report['config'].get('mode')))} aggregation), {report.get('seconds', 0):.0f} s in all. "
        f"Production now: <b>{html.escape(str(report.get('production') or 'base'))}</b>. "
        f"Cycles: {html.escape(ended or 'none ended')}. "
        "Every figure here is an aggregate or was read on the node that holds it; no trajectory left a node.</p>"
        f"<div>{''.join(charts)}</div>"
        f"<table><tr><th>day</th><th>plan (arms, shares)</th>{head}<th>autopilot decisions</th><th>time</th></tr>"
        f"{rows}</table>"
        f"<h2>The autopilot's settings</h2><pre>{html.escape(str(report.get('autopilot_toml', '')))}</pre>"
        f"<h2>Registry</h2><pre>{html.escape(json.dumps(report.get('registry', []), indent=1)[:20000])}</pre>"
        "</body></html>"
    )


def _arms(plan: Mapping[str, Any] | None) -> str:
    if not plan:
        return ""
    return ", ".join(f"{a.get('name')} {a.get('version')} {float(a.get('share', 0)):.0%}"
                     for a in plan.get("arms", []))


def write_report(report: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "report.json", directory / "report.html"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    html_path.write_text(render_html(report))
    return json_path, html_path
