"""The flywheel benchmark: federated vs local-only vs centralized on the same tasks.

One run, same tenants, seeds, cold start and compute budget for every regime:

- ``federated-<mode>`` for each aggregation mode (fedavg, exact, frozen-a), in process:
  each tenant trains ``--steps`` LoRA steps from the global adapter on its own selection,
  the aggregator combines the adapters (weights = examples), everyone uses the result;
- ``local``: each tenant alone, ``--steps`` steps per round from its own previous adapter;
- ``centralized``: one adapter trained on the pooled selections of all tenants with
  ``--steps * tenants`` steps per round (the upper bound a federation cannot use);
- ``personal-<mode>``: federated as above, but each tenant serves its own round update (the
  ``--steps`` it trained from the last global adapter on its own selection) instead of the
  aggregate, and the next round trains from the aggregate again: personalisation by local
  adaptation of the global model, at the same compute (Yu et al. 2020, "Salvaging federated
  learning by local adaptation").

A round is the flywheel: usage with the current model (real sampling, simulated users
with noisy feedback) -> session events -> redaction gate -> implicit scores -> tiers ->
selection -> local LoRA -> aggregation. After every round each tenant's model is evaluated
on its fixed held-out tasks: task success of the full agent loop (greedy: tool call,
real tool, final answer, verifier) and the mean assistant log-likelihood of the held-out
golden trajectories. Prints JSON (and writes ``--out``); asserts nothing.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/flywheel/bench_flywheel.py --out fw.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")

import numpy as np
import torch

from examples.flywheel.agent import AgentConfig, LocalAgent
from examples.flywheel.coldstart import cold_start_trajectories
from examples.flywheel.flywheel import TenantPool, leaked, redact_batches
from examples.flywheel.pretrain import PretrainConfig, init_sim_base, pretrain_base
from examples.flywheel.sessions import outcome_counts, run_sessions
from examples.flywheel.tasks import golden_trajectory, trajectory_id_for
from examples.flywheel.tenants import SimTenant, default_tenants
from hermes_fed.aggregation import ClientUpdate, make_aggregator
from hermes_fed.privacy import RedactionConfig, Redactor
from hermes_fed.training.config import LoraTrainingConfig
from hermes_fed.training.evaluation import evaluate
from hermes_fed.training.learning_rate import LR_SCHEDULES
from hermes_fed.training.trainer import train_adapter
from hermes_fed.training.verifiers import VerifierRegistry

Adapter = dict[str, np.ndarray]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def prepare_base(work: Path, size: str, pretrain: PretrainConfig, seed: int,
                 copy_friendly: bool = True, copy_steps: int = 0,
                 copy_echo: float = 0.8) -> tuple[Path, dict]:
    """The tiny model, pre-trained on the generic tool-use corpus (cached in ``work``).

    Stage 1: ``pretrain`` from the random base. Stage 2 (``copy_steps`` > 0): the same
    pre-training continued with a share ``copy_echo`` of echo dialogs (seed + 2), which is
    what taught the 1m base to copy values (bench/flywheel/README.md).
    """
    tag = f"{size}-cf" if copy_friendly else size
    raw = work / f"base-{tag}-random-s{seed}"
    if not (raw / "config.json").exists():
        init_sim_base(raw, size, seed=seed, copy_friendly=copy_friendly)
    out = work / (f"base-{tag}-c{pretrain.corpus}-e{pretrain.echo:g}-pre{pretrain.steps}"
                  f"-lr{pretrain.lr:g}-s{seed}")
    info_path = out / "pretrain.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
    else:
        info = pretrain_base(raw, out, replace(pretrain, seed=seed))
        info_path.write_text(json.dumps(info))
    if copy_steps == 0:
        return out, info
    stage2 = out.with_name(f"{out.name}-echo{copy_echo:g}x{copy_steps}")
    info2_path = stage2 / "pretrain.json"
    if not info2_path.exists():
        info2 = pretrain_base(out, stage2, replace(pretrain, steps=copy_steps, seed=seed + 2,
                                                   echo=copy_echo))
        info2_path.write_text(json.dumps({"stage1": info, "stage2": info2}))
    return stage2, json.loads(info2_path.read_text())


class Evaluator:
    """Fixed held-out tasks per tenant: agent-loop success and golden log-likelihood."""

    def __init__(self, base: Path, tenants: tuple[SimTenant, ...], n: int,
                 lora: LoraTrainingConfig, *, style: str = "clean",
                 temperature: float = 0.0) -> None:
        self.base, self.lora, self.temperature = base, lora, temperature
        self.tasks = {t.tenant_id: t.draw_tasks(n, seed=10**6) for t in tenants}
        # "users": each request as the tenant's users write it (contact details appended to
        # most), fixed per tenant, so every regime and round answers the same text
        self.requests = {t.tenant_id: [x.request if style == "clean" else
                                       t.user_turn(x.request, rng)[1]
                                       for x in self.tasks[t.tenant_id]]
                         for t in tenants
                         for rng in (random.Random(f"eval-users/{t.tenant_id}"),)}
        self.golden = {tid: [golden_trajectory(x, trajectory_id_for(f"eval/{tid}", i))
                             for i, x in enumerate(tasks)] for tid, tasks in self.tasks.items()}

    def __call__(self, tenant_id: str, adapter: Adapter | None) -> dict[str, float]:
        agent = LocalAgent(self.base, adapter, self.lora,
                           AgentConfig(temperature=self.temperature))
        tasks = self.tasks[tenant_id]
        outcomes = agent.solve(list(zip(tasks, self.requests[tenant_id], strict=True)), seed=0)
        result = evaluate(self.base, adapter, self.golden[tenant_id], config=self.lora,
                          verifiers=VerifierRegistry())
        metrics = result.metrics()
        by_type: dict[str, list[bool]] = {}
        for x, o in zip(tasks, outcomes, strict=True):
            by_type.setdefault(x.task_type, []).append(o.correct)
        return {
            "correct": [bool(o.correct) for o in outcomes],  # per held-out task, for pairing
            "success": float(np.mean([o.correct for o in outcomes])),
            "tool_call_ok": float(np.mean([o.tool_call is not None and not o.tool_error
                                           for o in outcomes])),
            "loglik": metrics["heldout_loglik_adapter" if adapter is not None
                              else "heldout_loglik_base"],
            **{f"success_{k}": float(np.mean(v)) for k, v in sorted(by_type.items())},
        }


def train(base: Path, examples: list, lora: LoraTrainingConfig, steps: int, seed: int,
          init: Adapter | None) -> tuple[Adapter, int, dict[str, float]]:
    cfg = replace(lora, max_steps=steps, seed=seed)
    result = train_adapter(base, examples, cfg, init_adapter=init)
    return result.adapter, result.num_examples, {
        "loss_first": result.metrics["train_loss_first"],
        "loss_last": result.metrics["train_loss_last"]}


def run_regime(name: str, args: argparse.Namespace, base: Path, tenants: tuple[SimTenant, ...],
               evaluator: Evaluator, baseline: dict[str, dict[str, float]],
               run_seed: int) -> dict[str, Any]:
    kind, _, mode_name = name.partition("-")
    if kind not in ("federated", "personal", "local", "centralized") or \
            (kind in ("federated", "personal")) != bool(mode_name):
        raise SystemExit(f"unknown regime {name!r}")
    mode = mode_name or None
    lora = replace(evaluator.lora, frozen_a=mode == "frozen-a")
    pools = {}
    for t in tenants:
        pools[t.tenant_id] = TenantPool(t.tenant_id)
        pools[t.tenant_id].add_golden(cold_start_trajectories(
            t.task_types, t.golden_per_type, run_seed, table=t.table))
    redactors = {t.tenant_id: Redactor(RedactionConfig(deny_terms=t.deny_terms()),
                                       tenant_secret=f"secret-{t.tenant_id}".encode() * 4)
                 for t in tenants}
    models: dict[str, Adapter | None] = {t.tenant_id: None for t in tenants}  # served
    start: dict[str, Adapter | None] = dict(models)  # where each tenant's next round starts
    rounds = []
    for rnd in range(1, args.rounds + 1):
        started = time.perf_counter()
        usage, leaks = {}, 0
        for t in tenants:  # usage with the current model -> events -> redaction -> scores
            agent = LocalAgent(base, models[t.tenant_id], lora,
                               AgentConfig(temperature=args.temperature))
            n = max(1, round(t.sessions_per_round * args.sessions_scale))
            records = run_sessions(t, agent, n, seed=run_seed * 1000 + rnd,
                                   model_version=f"{name}-r{rnd - 1}")
            events = redact_batches(redactors[t.tenant_id], [r.events for r in records])
            leaks += len(leaked([v for r in records for v in r.planted.values()], events))
            pools[t.tenant_id].add_events(events)
            usage[t.tenant_id] = outcome_counts(records)
        train_info: dict[str, Any] = {}
        selections = {t.tenant_id: pools[t.tenant_id].select(seed=run_seed + rnd)
                      for t in tenants}
        train_info["selected"] = {tid: dict(Counter(e.tier for e in sel))
                                  for tid, sel in selections.items()}
        seed = run_seed * 100 + rnd
        if name == "centralized":
            pooled = [e for t in tenants for e in selections[t.tenant_id]]
            shared, n_ex, info = train(base, pooled, lora, args.steps * len(tenants), seed,
                                       start[tenants[0].tenant_id])
            models = {t.tenant_id: shared for t in tenants}
            start = dict(models)
            train_info["pooled"] = {"examples": n_ex, **info}
        else:
            updates = []
            for t in tenants:
                adapter, n_ex, info = train(base, selections[t.tenant_id], lora, args.steps,
                                            seed, start[t.tenant_id])
                train_info[t.tenant_id] = {"examples": n_ex, **info}
                updates.append(ClientUpdate(t.tenant_id, n_ex, adapter))
            if mode is None:
                models = {u.node_id: dict(u.tensors) for u in updates}
                start = dict(models)
            else:
                previous = start[tenants[0].tenant_id]
                agg = make_aggregator(mode).aggregate(updates, scale=lora.scaling,
                                                      previous=previous)
                start = {t.tenant_id: agg.tensors for t in tenants}
                train_info["aggregation"] = {
                    k: v for k, v in agg.report.to_dict().items() if not isinstance(v, list)}
                models = {u.node_id: dict(u.tensors) for u in updates} \
                    if kind == "personal" else dict(start)
        evals = {t.tenant_id: evaluator(t.tenant_id, models[t.tenant_id]) for t in tenants}
        rounds.append({
            "round": rnd, "seconds": time.perf_counter() - started, "usage": usage,
            "pii_leaks": leaks, "training": train_info, "eval": evals,
            "pool_tiers": {tid: p.tier_counts(golden=False) for tid, p in pools.items()},
        })
        log(f"seed {run_seed} {name} round {rnd}: " + ", ".join(
            f"{tid} success {e['success']:.2f} loglik {e['loglik']:.3f}"
            for tid, e in evals.items()) + f" ({rounds[-1]['seconds']:.0f}s)")
    return {"rounds": rounds, "baseline": baseline}


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs (a binomial
    test of b against Bin(b + c, 1/2))."""
    from scipy.stats import binomtest

    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def summarise(runs: dict[int, dict[str, Any]], tenants: tuple[SimTenant, ...],
              baseline: dict[str, dict[str, float]]) -> dict[str, Any]:
    """Over every seed: recovery of the centralized gain, and each regime against local-only
    on the smallest tenant, paired task by task (same held-out tasks in every run)."""
    seeds = sorted(runs)
    regimes = list(runs[seeds[0]])

    def final(seed: int, regime: str, tid: str) -> dict[str, Any]:
        return dict(runs[seed][regime]["rounds"][-1]["eval"][tid])

    smallest = min(tenants, key=lambda t: t.sessions_per_round).tenant_id
    out: dict[str, Any] = {"smallest_tenant": smallest, "seeds": seeds}
    for key in ("success", "loglik"):
        base = float(np.mean([baseline[t.tenant_id][key] for t in tenants]))
        per_seed = {r: [float(np.mean([final(s, r, t.tenant_id)[key] for t in tenants]))
                        for s in seeds] for r in regimes}
        central = float(np.mean(per_seed["centralized"])) if "centralized" in per_seed \
            else float("nan")
        gain = central - base
        block: dict[str, Any] = {"base_mean": base, "centralized_mean": central}
        for regime in regimes:
            mean = float(np.mean(per_seed[regime]))
            block[regime] = {
                "mean": mean,
                "per_seed": per_seed[regime],
                "recovery_of_centralized_gain": (mean - base) / gain if gain else None,
                "smallest_tenant_per_seed": [final(s, regime, smallest)[key] for s in seeds],
                "smallest_tenant": float(np.mean([final(s, regime, smallest)[key]
                                                  for s in seeds])),
            }
        out[key] = block
    if "local" in regimes:
        paired: dict[str, Any] = {}
        for regime in regimes:
            if regime == "local":
                continue
            b = c = 0
            for s in seeds:
                mine = final(s, regime, smallest)["correct"]
                local = final(s, "local", smallest)["correct"]
                b += sum(x and not y for x, y in zip(mine, local, strict=True))
                c += sum(y and not x for x, y in zip(mine, local, strict=True))
            paired[regime] = {"only_this_correct": b, "only_local_correct": c,
                              "mcnemar_p": mcnemar_exact(b, c)}
        out["smallest_tenant_vs_local"] = paired
    return out


def merge_reports(paths: list[Path], out: str) -> int:
    """One summary over the seeds and regimes of several reports of the same configuration
    (seeds or regimes run in separate processes): prints (and writes ``out``) the summary.
    Every seed must have every regime; a (seed, regime) in two reports is refused."""
    reports = [json.loads(p.read_text()) for p in paths]
    ignored = {"seeds", "regimes", "out", "work_dir", "merge"}
    configs = [{k: v for k, v in r["config"].items() if k not in ignored} for r in reports]
    if any(c != configs[0] for c in configs[1:]):
        raise SystemExit("--merge: the reports' configurations differ")
    runs: dict[int, dict[str, Any]] = {}
    for r in reports:
        for seed, regimes in r["runs"].items():
            have = runs.setdefault(int(seed), {})
            for regime, rounds in regimes.items():
                if regime in have:
                    raise SystemExit(f"--merge: seed {seed}, {regime} is in more than one "
                                     "report")
                have[regime] = {"rounds": rounds}
    names = {frozenset(v) for v in runs.values()}
    if len(names) != 1:
        raise SystemExit("--merge: the seeds do not all have the same regimes: "
                         + "; ".join(f"seed {s}: {','.join(sorted(v))}"
                                     for s, v in sorted(runs.items())))
    tenants = tuple(SimTenant(t["tenant_id"], t["task_mix"],
                              sessions_per_round=t["sessions_per_round"])
                    for t in reports[0]["tenants"])
    regimes = sorted(next(iter(names)))
    merged = {"merged_from": [str(p) for p in paths],
              "config": {**configs[0], "regimes": ",".join(regimes),
                         "seeds": ",".join(str(s) for s in sorted(runs))},
              "baseline": reports[0]["baseline"],
              "summary": summarise(runs, tenants, reports[0]["baseline"]),
              "seconds": sum(r["seconds"] for r in reports)}
    text = json.dumps(merged, indent=2, default=float)
    if out:
        Path(out).write_text(text + "\n")
    print(text)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work-dir", default="var/bench-flywheel",
                   help="cache of the base models (re-used across runs)")
    p.add_argument("--model-size", default="1m", choices=("1m", "2m", "10m"))
    p.add_argument("--pretrain-steps", type=int, default=2000,
                   help="generic tool-use pre-training of the base (0: random base)")
    p.add_argument("--pretrain-lr", type=float, default=3e-3)
    p.add_argument("--pretrain-echo", type=float, default=0.3,
                   help="share of echo dialogs in the generic corpus (PretrainConfig.echo)")
    p.add_argument("--copy-steps", type=int, default=800,
                   help="second pre-training stage, mostly echo dialogs (0: none)")
    p.add_argument("--copy-echo", type=float, default=0.8,
                   help="share of echo dialogs in the second stage")
    p.add_argument("--corpus", type=int, default=2, choices=(1, 2),
                   help="generic corpus version (examples.flywheel.pretrain.generic_trajectory)")
    p.add_argument("--tokenizer", default="copy", choices=("copy", "bpe"),
                   help="copy: digits and spaces isolated (train_tokenizer copy_friendly); "
                        "bpe: GPT-2 style pre-tokenizer (spaces glued to words and numbers)")
    p.add_argument("--max-length", type=int, default=320, help="tokens per training example")
    p.add_argument("--base-dir", default="",
                   help="use this base model directory as is (skips init and pre-training)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=200, help="LoRA steps per tenant per round")
    p.add_argument("--lr", type=float, default=5e-3, help="peak local learning rate")
    p.add_argument("--schedule", default="cosine", choices=LR_SCHEDULES,
                   help="local learning-rate schedule, restarted every round (seed_spread.py: "
                        "constant 5e-3 collapsed on 3 of 10 seeds, cosine on none)")
    p.add_argument("--warmup", type=int, default=20, help="local warmup steps per round")
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--sessions-scale", type=float, default=0.5,
                   help="multiplies every tenant's sessions per round")
    p.add_argument("--eval-tasks", type=int, default=12, help="held-out tasks per tenant")
    p.add_argument("--golden-scale", type=int, default=8,
                   help="multiplies every tenant's cold-start goldens per task type")
    p.add_argument("--temperature", type=float, default=0.3,
                   help="usage sampling temperature (the demo serves at 0.3; at 0.7 usage "
                        "never produced a correct first attempt)")
    p.add_argument("--regimes", default="federated-fedavg,federated-exact,federated-frozen-a,"
                   "local,centralized",
                   help="comma-separated: federated-<mode>, personal-<mode> (mode: fedavg, "
                        "exact, frozen-a), local, centralized")
    p.add_argument("--seed", type=int, default=0, help="seed of the base model's pre-training")
    p.add_argument("--seeds", default="0",
                   help="comma-separated run seeds: every regime runs once per seed (cold "
                        "start, usage, selection and training seeds); the held-out tasks are "
                        "the same for all")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--eval-style", default="clean", choices=("clean", "users"),
                   help="held-out requests: clean, or as the tenant's users write them "
                        "(contact details appended to --pii-rate of them, as in the demo)")
    p.add_argument("--pii-rate", type=float, default=0.3,
                   help="share of the users' requests (in usage and in --eval-style users) "
                        "that carry their contact details (the demo's default, 0.3)")
    p.add_argument("--eval-temperature", type=float, default=0.0,
                   help="sampling temperature of the held-out evaluation (0: greedy; the "
                        "demo serves at 0.3)")
    p.add_argument("--merge", nargs="+", default=None, metavar="REPORT",
                   help="summarise the seeds of these reports (same config) together; "
                        "trains nothing")
    p.add_argument("--out", default="")
    args = p.parse_args()
    if args.merge:
        return merge_reports([Path(f) for f in args.merge], args.out)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.base_dir:
        base, pretrain_info = Path(args.base_dir), {"given": args.base_dir}
        if (base / "pretrain.json").exists():
            pretrain_info.update(json.loads((base / "pretrain.json").read_text()))
    else:
        if args.pretrain_steps == 0:
            base = work / f"base-{args.model_size}-random-{args.tokenizer}-s{args.seed}"
            if not (base / "config.json").exists():
                init_sim_base(base, args.model_size, seed=args.seed,
                              copy_friendly=args.tokenizer == "copy")
            pretrain_info: dict[str, Any] = {}
        else:
            base, pretrain_info = prepare_base(
                work, args.model_size, PretrainConfig(steps=args.pretrain_steps,
                                                      lr=args.pretrain_lr, corpus=args.corpus,
                                                      echo=args.pretrain_echo),
                args.seed, copy_friendly=args.tokenizer == "copy", copy_steps=args.copy_steps,
                copy_echo=args.copy_echo)
    log(f"base {base} {pretrain_info}")
    tenants = tuple(replace(t, golden_per_type=t.golden_per_type * args.golden_scale,
                            pii_rate=args.pii_rate)
                    for t in default_tenants())
    lora = LoraTrainingConfig(r=args.rank, alpha=2.0 * args.rank, lr=args.lr,
                              lr_schedule=args.schedule, warmup_steps=args.warmup,
                              batch_size=args.batch_size, max_length=args.max_length,
                              device="cpu")
    evaluator = Evaluator(base, tenants, args.eval_tasks, lora, style=args.eval_style,
                          temperature=args.eval_temperature)
    baseline = {t.tenant_id: evaluator(t.tenant_id, None) for t in tenants}
    log(f"baseline {baseline}")
    runs: dict[int, dict[str, Any]] = {}
    for run_seed in (int(x) for x in args.seeds.split(",")):
        runs[run_seed] = {name: run_regime(name, args, base, tenants, evaluator, baseline,
                                           run_seed)
                          for name in args.regimes.split(",")}
    report = {
        "config": {k: v for k, v in vars(args).items()},
        "tenants": [{"tenant_id": t.tenant_id, "task_mix": dict(t.task_mix),
                     "sessions_per_round": t.sessions_per_round,
                     "golden_per_type": t.golden_per_type} for t in tenants],
        "pretrain": pretrain_info,
        "baseline": baseline,
        "runs": {str(seed): {k: v["rounds"] for k, v in regimes.items()}
                 for seed, regimes in runs.items()},
        "summary": summarise(runs, tenants, baseline),
        "seconds": time.perf_counter() - started,
    }
    text = json.dumps(report, indent=2, default=float)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
