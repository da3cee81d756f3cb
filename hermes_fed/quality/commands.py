"""``hermes-fed quality``: report, explain, judge, select, trigger, rebuild."""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hermes_fed.errors import ConfigError
from hermes_fed.events import utcnow
from hermes_fed.store import SqlEventStore
from hermes_fed.store.commands import add_store_arguments, open_from_args

from . import read_model as rm
from .config import QualityConfig
from .judges import AgreementJudge, Judge, RuleBasedJudge
from .pipeline import (
    decide_training,
    judge_new_trajectories,
    quality_runner,
    record_selection,
    select_from_store,
)
from .projection import rebuild_quality
from .scoring import combined_score, implicit_with_prior, users_rejected
from .signals import TrajectorySignals


@contextlib.contextmanager
def _open(args: argparse.Namespace) -> Iterator[SqlEventStore]:
    store = open_from_args(args)
    try:
        yield store
    finally:
        store.close()


def _config(args: argparse.Namespace) -> QualityConfig:
    return QualityConfig.from_toml(args.config) if args.config else QualityConfig()


def _now(args: argparse.Namespace) -> datetime:
    if not getattr(args, "now", None):
        return utcnow()
    try:
        moment = datetime.fromisoformat(args.now)
    except ValueError:
        raise ConfigError(f"--now must be an ISO 8601 time, got {args.now!r}") from None
    if moment.tzinfo is None:
        raise ConfigError(f"--now must carry a time zone (e.g. +00:00), got {args.now!r}")
    return moment


def _print(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True, default=str) if args.json else text)


def _report(args: argparse.Namespace) -> int:
    config = _config(args)
    with _open(args) as store:
        tenant = store.tenant_id
        runner = quality_runner(store, config)
        with runner.engine.connect() as conn:
            velocity = rm.flywheel_velocity(conn, _now(args), args.window_days, config)
        decision = decide_training(store, _now(args), config)
    payload = {"velocity": velocity.to_json(),
               "trigger": {"train": decision.train, "rule": decision.rule,
                           "reason": decision.reason}}
    lines = [
        f"tenant {tenant}: last {velocity.window_days:g} days",
        f"  trajectories        {velocity.trajectories} ({velocity.trajectories_per_day:.1f}/day)",
        f"  high-quality rate   {velocity.high_quality_rate:.1%}",
        "  tiers               " + ", ".join(f"{k} {v}" for k, v in
                                               velocity.tier_histogram.items()),
        f"  orphan feedback     {velocity.orphans}",
        f"  preference pairs    {velocity.preference_pairs}",
        f"  used in training    {velocity.used_in_training}"
        + ("" if velocity.median_days_to_training is None
           else f" (median {velocity.median_days_to_training:.1f} days to use)"),
        f"  trigger             {'TRAIN' if decision.train else 'wait'} [{decision.rule}] "
        f"{decision.reason}",
    ]
    _print(args, payload, "\n".join(lines))
    return 0


def _explain(args: argparse.Namespace) -> int:
    config = _config(args)
    with _open(args) as store:
        runner = quality_runner(store, config)
        with runner.engine.connect() as conn:
            row = conn.execute(sa.select(rm.trajectories).where(
                rm.trajectories.c.trajectory_id == args.trajectory_id)).mappings().first()
            judges = dict(conn.execute(
                sa.select(rm.judgements.c.judge, rm.judgements.c.score)
                .where(rm.judgements.c.trajectory_id == args.trajectory_id)).all())
    if row is None:
        print(f"no trajectory {args.trajectory_id!r} in the quality read model")
        return 1
    signals = TrajectorySignals(row["trajectory_id"], row["recorded"], row["accepted"],
                                row["retries"], row["edits"], row["edit_ratio"],
                                row["continued"], row["errors"])
    implicit = implicit_with_prior(signals, config.implicit, row["prior_score"])
    combined = combined_score(implicit.score, judges or None, row["human_score"],
                              config.combine, rejected=users_rejected(signals),
                              tool_error=bool(row["tool_error"]))
    payload = {"trajectory_id": row["trajectory_id"], "recorded": row["recorded"],
               "implicit": implicit.score,
               "implicit_terms": [[t.name, t.value, t.reason] for t in implicit.terms],
               "judges": judges, "human": row["human_score"], "prior": row["prior_score"],
               "tool_error": row["tool_error"], "combined": combined.score,
               "combined_source": combined.source, "tier": row["tier"],
               "used_in_run": row["used_in_run"]}
    text = [f"{row['trajectory_id']} ({'recorded' if row['recorded'] else 'ORPHAN'})",
            f"  implicit  {implicit.explain()}",
            f"  judges    {judges or 'none'}",
            f"  human     {row['human_score']}",
            f"  combined  {combined.score:+.3f} from {combined.source}: "
            + "; ".join(f"{t.name} {t.value:+.3f} ({t.reason})" for t in combined.terms),
            f"  tier      {row['tier']}   used in run {row['used_in_run']}"]
    _print(args, payload, "\n".join(text))
    return 0


def _judges(names: str, config: QualityConfig) -> list[Judge]:
    out: list[Judge] = []
    for name in [n.strip() for n in names.split(",") if n.strip()]:
        if name == "rules":
            out.append(RuleBasedJudge())
        elif name == "agreement":
            out.append(AgreementJudge())
        elif name == "http":
            from .http_judge import OpenAICompatibleJudge
            out.append(OpenAICompatibleJudge(config.judge_http))
        else:
            raise ConfigError(f"--judges: unknown judge {name!r}; use rules, agreement, http")
    return out


def _judge(args: argparse.Namespace) -> int:
    config = _config(args)
    judges = _judges(args.judges, config)
    with _open(args) as store:
        report = judge_new_trajectories(store, judges, config=config, limit=args.limit)
    _print(args, {"judged": report.judged, "abstained": report.abstained,
                  "failed": report.failed, "skipped_erased": report.skipped_erased},
           f"judged {report.judged}, abstained {report.abstained}, failed {report.failed}, "
           f"skipped (erased) {report.skipped_erased}")
    return 1 if report.failed else 0


def _select(args: argparse.Namespace) -> int:
    config = _config(args)
    with _open(args) as store:
        manifest = select_from_store(store, args.target_n, args.seed, config)
        position = record_selection(store, manifest) if args.record else None
    payload = {"selection_id": manifest.selection_id, "sha256": manifest.sha256,
               "n": len(manifest.items), "n_by_tier": manifest.n_by_tier,
               "budgets": manifest.budgets, "excluded_used": manifest.excluded_used,
               "excluded_duplicates": len(manifest.excluded_duplicates),
               "recorded_at_position": position}
    text = (f"{manifest.selection_id} sha256 {manifest.sha256}\n"
            f"  {len(manifest.items)} trajectories: "
            + ", ".join(f"{k} {v}/{manifest.budgets[k]}" for k, v in manifest.n_by_tier.items())
            + f"\n  excluded: {manifest.excluded_used} used, "
            f"{len(manifest.excluded_duplicates)} near-duplicates"
            + (f"\n  recorded as TrainingDataSelected at position {position}"
               if position is not None else "\n  (dry run: add --record to append the event)"))
    _print(args, payload, text)
    return 0


def _trigger(args: argparse.Namespace) -> int:
    config = _config(args)
    with _open(args) as store:
        decision = decide_training(store, _now(args), config)
    i = decision.inputs
    payload = {"train": decision.train, "rule": decision.rule, "reason": decision.reason,
               "inputs": {"last_run_at": i.last_run_at, "new_scored": i.new_scored,
                          "new_high_quality": i.new_high_quality,
                          "current_mean": i.current_mean, "baseline_mean": i.baseline_mean}}
    _print(args, payload, f"{'TRAIN' if decision.train else 'wait'} [{decision.rule}] "
                          f"{decision.reason}")
    return 0


def _rebuild(args: argparse.Namespace) -> int:
    config = _config(args)
    with _open(args) as store:
        n = rebuild_quality(store, config)
    print(f"quality read model rebuilt from {n} quality events")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_store_arguments(p)  # --config too: the node TOML (its [quality] table applies)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        p.set_defaults(func=func)
        return p

    p = command("report", "flywheel velocity, tiers and the trigger's decision", _report)
    p.add_argument("--window-days", type=float, default=7.0, help="window of the rates")
    p.add_argument("--now", default=None, help="evaluate at this ISO time (default: now)")
    p = command("explain", "audit one trajectory's score term by term", _explain)
    p.add_argument("trajectory_id")
    p = command("judge", "run judges over trajectories they have not judged", _judge)
    p.add_argument("--judges", default="rules,agreement",
                   help="comma-separated: rules, agreement, http ([quality.judge_http])")
    p.add_argument("--limit", type=int, default=None, help="at most this many trajectories")
    p = command("select", "select training data (a dry run unless --record)", _select)
    p.add_argument("--target-n", type=int, required=True, help="target dataset size N")
    p.add_argument("--seed", type=int, default=0, help="selection seed")
    p.add_argument("--record", action="store_true",
                   help="append the manifest as a TrainingDataSelected event")
    p = command("trigger", "should this node train now, and why", _trigger)
    p.add_argument("--now", default=None, help="evaluate at this ISO time (default: now)")
    command("rebuild", "drop and rebuild the quality read model from the log", _rebuild)
