# ruff: noqa: E501  (SVG markup reads better on one line per element)
"""The demo report: JSON and one self-contained HTML page with inline SVG plots.

Plots: task success and session quality per tenant per round, tier histograms, an A/B
forest plot (paired held-out effect per tenant with a 95% interval), bytes per round.
Inline SVG keeps the page dependency-free and readable offline.
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
    title: str, series: Mapping[str, Sequence[float | None]], y_range: tuple[float, float], y_label: str
) -> str:
    n = max((len(v) for v in series.values()), default=1)
    x = _scale(0, max(1, n - 1), PAD + 10, W - 40)
    y = _scale(y_range[0], y_range[1], H - PAD, 20)
    parts = [_frame(title, y_range, y, y_label)]
    for i in range(n):
        parts.append(
            f'<text x="{x(i):.1f}" y="{H - PAD + 16}" font-size="11" text-anchor="middle">round {i}</text>'
        )
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


def paired_interval(arm: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """Mean paired difference and a normal 95% interval from (n, sum, sumsq)."""
    n = float(arm.get("n", 0))
    if n < 2:
        return None
    mean = float(arm["sum"]) / n
    var = max(0.0, (float(arm["sumsq"]) - n * mean * mean) / (n - 1))
    half = 1.96 * math.sqrt(var / n)
    return mean, mean - half, mean + half


def forest_plot(title: str, rows: Sequence[tuple[str, tuple[float, float, float]]]) -> str:
    if not rows:
        return _svg(
            [
                f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" font-size="12">'
                "no A/B look had a cell above k_min</text>"
            ]
        )
    lo = min(r[1][1] for r in [*rows, ("0", (0.0, 0.0, 0.0))])
    hi = max(r[1][2] for r in [*rows, ("0", (0.0, 0.0, 0.0))])
    x = _scale(lo, hi, PAD + 110, W - 20)
    step = (H - PAD - 20) / max(1, len(rows))
    parts = [
        f'<text x="{W / 2}" y="14" font-size="13" text-anchor="middle" font-weight="bold">{html.escape(title)}</text>',
        f'<line x1="{x(0):.1f}" x2="{x(0):.1f}" y1="20" y2="{H - PAD}" stroke="#999" stroke-dasharray="4"/>',
        f'<text x="{(PAD + W) / 2:.1f}" y="{H - 12}" font-size="11" text-anchor="middle">'
        "held-out log-likelihood, candidate minus current (nats/token)</text>",
    ]
    for i, (label, (mean, a, b)) in enumerate(rows):
        cy = 30 + i * step + step / 2
        parts += [
            f'<text x="{PAD + 104}" y="{cy + 4:.1f}" font-size="11" text-anchor="end">{html.escape(label)}</text>',
            f'<line x1="{x(a):.1f}" x2="{x(b):.1f}" y1="{cy:.1f}" y2="{cy:.1f}" stroke="#333" stroke-width="2"/>',
            f'<rect x="{x(mean) - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" fill="#1f77b4"/>',
        ]
    return _svg(parts)


def bytes_chart(title: str, per_round: Sequence[Mapping[str, float]]) -> str:
    top = max([v for r in per_round for v in r.values()] + [1.0])
    y = _scale(0, top, H - PAD, 20)
    width = (W - PAD - 16) / max(1, len(per_round))
    parts = [_frame(title, (0, top), y, "bytes per round")]
    for i, row in enumerate(per_round):
        for k, v in enumerate(row.values()):
            bw = (width - 6) / max(1, len(row))
            x0 = PAD + i * width + 3 + k * bw
            parts.append(
                f'<rect x="{x0:.1f}" y="{y(v):.1f}" width="{bw - 1:.1f}" height="{y(0) - y(v):.1f}" '
                f'fill="{COLOURS[k % len(COLOURS)]}"/>'
            )
        parts.append(
            f'<text x="{PAD + i * width + width / 2:.1f}" y="{H - PAD + 14}" font-size="10" '
            f'text-anchor="middle">round {i}</text>'
        )
    names = list(per_round[0]) if per_round else []
    for k, name in enumerate(names):
        parts.append(
            f'<text x="{W - 120}" y="{24 + 13 * k}" font-size="11" fill="{COLOURS[k % len(COLOURS)]}">'
            f"{html.escape(name)}</text>"
        )
    return _svg(parts)


def _online_cell(r: Mapping[str, Any]) -> str:
    """The round's online look and the arms' first-attempt success over all tenants."""
    look = r.get("online_ab")
    if not look:
        return ""
    rates = []
    for arm in ("control", "treatment"):
        counts = [t["arms"][arm] for t in r["tenants"].values() if "arms" in t]
        n = sum(c["sessions"] for c in counts)
        rates.append(f"{sum(c['correct'] for c in counts) / n:.0%}" if n else "-")
    return f"{look['verdict']} -> {look.get('stage')} ({rates[0]} / {rates[1]})"


def render_html(report: Mapping[str, Any]) -> str:
    tenants: list[str] = list(report["tenants"])
    rounds: list[Mapping[str, Any]] = list(report["rounds"])
    success = {t: [r["tenants"][t]["task_success"] for r in rounds] for t in tenants}
    quality = {t: [r["tenants"][t]["quality"]["mean"] for r in rounds] for t in tenants}
    tiers = {f"{t[:6]} r{r['round']}": r["tenants"][t]["quality"]["tiers"] for r in rounds for t in tenants}
    forest: list[tuple[str, tuple[float, float, float]]] = []
    for r in rounds:
        decision = r.get("decision") or {}
        for tenant, cells in (decision.get("tenants") or {}).items():
            interval = paired_interval(cells.get("paired", {}))
            if interval is not None:
                forest.append((f"r{r['round']} node {str(tenant)[-6:]}", interval))
    traffic = [
        {
            "up": float(sum(n.get("bytes_up", 0) for n in r["federated"]["nodes"])),
            "down": float(sum(n.get("bytes_down", 0) for n in r["federated"]["nodes"])),
        }
        for r in rounds
        if r.get("federated")
    ]
    rows = "".join(
        f"<tr><td>{r['round']}</td><td>{html.escape(str(r.get('production') or 'base'))}</td>"
        + "".join(f"<td>{r['tenants'][t]['task_success']:.0%}</td>" for t in tenants)
        + f"<td>{html.escape(str((r.get('federated') or {}).get('version', '')))}</td>"
        f"<td>{html.escape(str((r.get('decision') or {}).get('verdict', '')))}</td>"
        f"<td>{html.escape(str((r.get('decision') or {}).get('stage', '')))}</td>"
        f"<td>{html.escape(_online_cell(r))}</td>"
        f"<td>{r.get('seconds', 0):.0f}s</td></tr>"
        for r in rounds
    )
    head = "".join(f"<th>{html.escape(t)} success</th>" for t in tenants)
    charts = [
        line_chart("Task success per tenant (first attempt)", success, (0.0, 1.0), "share correct"),
        line_chart(
            "Session quality per tenant (mean combined score)", quality, (-1.0, 1.0), "combined score"
        ),
        tier_chart("Quality tiers of each round's trajectories", tiers),
        forest_plot("Offline A/B: paired held-out effect per node", forest),
        bytes_chart("Bytes on the wire per federated round (all nodes)", traffic),
    ]
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>hermes-fed demo report</title>"
        "<style>body{font-family:sans-serif;margin:24px;max-width:1120px}svg{margin:6px;border:1px solid #ddd}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}</style>"
        "</head><body><h1>hermes-fed: the flywheel, end to end</h1>"
        f"<p>{len(tenants)} tenant nodes, {len(rounds) - 1} federated rounds ({html.escape(str(report['config'].get('mode')))}), "
        f"{report.get('seconds', 0):.0f} s in all. Production now: <b>{html.escape(str(report.get('production') or 'base'))}</b>. "
        "Every figure here is an aggregate; no trajectory left a node.</p>"
        f"<table><tr><th>round</th><th>serving</th>{head}<th>candidate</th><th>offline A/B</th><th>stage</th>"
        f"<th>online A/B (success control / treatment)</th><th>time</th></tr>{rows}</table><div>{''.join(charts)}</div>"
        f"<h2>Registry</h2><pre>{html.escape(json.dumps(report.get('registry', []), indent=1)[:20000])}</pre>"
        "</body></html>"
    )


def write_report(report: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / "report.json", directory / "report.html"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    html_path.write_text(render_html(report))
    return json_path, html_path
