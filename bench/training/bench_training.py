"""Training throughput: hermes-fed's trainer vs a bare torch+peft loop on the same batches.

For each tiny model size a fresh subprocess builds the model, tokenizes one synthetic
agent dataset, and then alternates ``train_adapter`` (ours: weighted SFT, NaN guard,
gradient clipping, LoRA head-only-at-loss-positions) with a bare loop (``get_peft_model`` +
``model(..., labels=...).loss.backward()`` + AdamW) over exactly the same micro-batches.
Tokens/s counts non-padding tokens of steps 2..N (model loading and the warm-up step
excluded), by wall clock and by process CPU time — the CPU-time ratio is the steadier one
when the cores are shared. Peak RSS per loop comes from VmHWM, reset before each loop.
Prints JSON; never asserts a speed.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python bench/training/bench_training.py --out results.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def synthetic_trajectories(n: int, seed: int) -> list[dict[str, Any]]:
    """Agent trajectories with tool calls, of varied length (about 60-400 tokens)."""
    rng = random.Random(seed)
    words = [
        "invoice",
        "order",
        "customer",
        "ticket",
        "deploy",
        "server",
        "query",
        "table",
        "total",
        "error",
        "retry",
        "status",
        "latency",
        "request",
        "response",
        "report",
        "balance",
        "account",
        "config",
        "file",
    ]
    out = []
    for i in range(n):
        a, b = rng.randint(1, 999), rng.randint(1, 999)
        blurb = " ".join(rng.choice(words) for _ in range(rng.randint(5, 120)))
        out.append(
            {
                "trajectory_id": f"b-{i}",
                "task_type": "arithmetic",
                "task": f"What is {a}+{b}?",
                "messages": [
                    {"role": "system", "content": "You are a helpful agent."},
                    {"role": "user", "content": f"What is {a}+{b}? Context: {blurb}"},
                    {
                        "role": "assistant",
                        "content": "Let me compute that.",
                        "tool_calls": [
                            {"id": "c1", "name": "calculator", "arguments": {"expression": f"{a}+{b}"}}
                        ],
                    },
                    {
                        "role": "tool",
                        "tool_call_id": "c1",
                        "name": "calculator",
                        "content": json.dumps({"result": a + b}),
                    },
                    {"role": "assistant", "content": f"{a}+{b} = {a + b}. Summary: {blurb}"},
                ],
                "tools": [
                    {"name": "calculator", "description": "arithmetic", "parameters": {"type": "object"}}
                ],
            }
        )
    return out


class _Clock:
    """Wall and CPU time at the end of each step; throughput skips the first (warm-up) step."""

    def __init__(self, tokens_per_step: list[int]) -> None:
        self.tokens = tokens_per_step
        self.marks: list[tuple[float, float]] = []

    def tick(self, *_: object) -> None:
        self.marks.append((time.perf_counter(), time.process_time()))

    def rates(self) -> dict[str, float]:
        (w0, c0), (w1, c1) = self.marks[0], self.marks[-1]
        tokens = sum(self.tokens[1 : len(self.marks)])
        return {"wall_tokens_per_second": tokens / (w1 - w0), "cpu_tokens_per_second": tokens / (c1 - c0)}


def _reset_peak_rss() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM, so each loop gets its own peak.
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def _peak_rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bare_loop(base_dir: Path, batches: list[dict[str, Any]], config: Any, clock: _Clock) -> None:
    """The baseline: plain peft + HF loss with -100 labels + AdamW, nothing else."""
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype="float32")
    model = get_peft_model(model, config.to_peft())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.lr)
    model.train()
    for batch in batches:
        ids = torch.from_numpy(batch["input_ids"])
        attention = torch.from_numpy(batch["attention_mask"])
        labels = ids.masked_fill(torch.from_numpy(batch["loss_weights"]) == 0, -100)
        loss = model(input_ids=ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        clock.tick()


def measure(size: str, steps: int, batch_size: int, repeats: int, threads: int) -> dict[str, Any]:
    """Run in a subprocess: one model size, ours and bare alternating ``repeats`` times."""
    import torch

    torch.set_num_threads(threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hermes_fed.training.config import LoraTrainingConfig
    from hermes_fed.training.dataset import TrainingExample, build_dataset, collate
    from hermes_fed.training.tiny_model import init_tiny_model
    from hermes_fed.training.trainer import _Schedule, train_adapter

    with tempfile.TemporaryDirectory() as tmp:
        base = init_tiny_model(Path(tmp) / size, size, seed=0)
        examples = [
            TrainingExample(t, 1.0, "gold") for t in synthetic_trajectories(steps * batch_size, seed=1)
        ]
        config = LoraTrainingConfig(
            r=8, lr=1e-3, max_steps=steps, batch_size=batch_size, max_length=512, device="cpu", seed=0
        )
        tokenizer = AutoTokenizer.from_pretrained(str(base))
        data = build_dataset(tokenizer, examples, max_length=config.max_length)
        schedule = _Schedule(data, config)
        batches = [collate(schedule.micro_batch(i), tokenizer.pad_token_id) for i in range(steps)]
        tokens = [int(b["attention_mask"].sum()) for b in batches]
        ours: list[dict[str, float]] = []
        bare: list[dict[str, float]] = []
        for _ in range(repeats):
            _reset_peak_rss()
            clock = _Clock(tokens)
            train_adapter(base, examples, config, progress=clock.tick)
            ours.append({**clock.rates(), "peak_rss_mb": _peak_rss_mb()})
            _reset_peak_rss()
            clock = _Clock(tokens)
            bare_loop(base, batches, config, clock)
            bare.append({**clock.rates(), "peak_rss_mb": _peak_rss_mb()})
        n_params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(str(base)).parameters())

    def med(runs: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in runs)

    return {
        "size": size,
        "base_parameters": n_params,
        "steps": steps,
        "batch_size": batch_size,
        "mean_tokens_per_batch": statistics.mean(tokens),
        "mean_padded_width": statistics.mean(b["input_ids"].shape[1] for b in batches),
        "repeats": repeats,
        "ours": ours,
        "bare": bare,
        "ratio_wall_median": med(ours, "wall_tokens_per_second") / med(bare, "wall_tokens_per_second"),
        "ratio_cpu_median": med(ours, "cpu_tokens_per_second") / med(bare, "cpu_tokens_per_second"),
        "ours_wall_tokens_per_second_median": med(ours, "wall_tokens_per_second"),
        "bare_wall_tokens_per_second_median": med(bare, "wall_tokens_per_second"),
        "ours_cpu_tokens_per_second_median": med(ours, "cpu_tokens_per_second"),
        "bare_cpu_tokens_per_second_median": med(bare, "cpu_tokens_per_second"),
        "ours_peak_rss_mb_max": max(r["peak_rss_mb"] for r in ours),
        "bare_peak_rss_mb_max": max(r["peak_rss_mb"] for r in bare),
        "process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1m,10m", help="comma-separated tiny sizes")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per batch")
    parser.add_argument("--repeats", type=int, default=3, help="alternating repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # subprocess mode
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.steps, args.batch_size, args.repeats, args.threads)))
        return 0
    import torch

    results = []
    for size in args.sizes.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--one",
            size,
            "--steps",
            str(args.steps),
            "--batch-size",
            str(args.batch_size),
            "--repeats",
            str(args.repeats),
            "--threads",
            str(args.threads),
        ]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    report = {
        "benchmark": "training_tokens_per_second",
        "target": "ours >= 0.9 x bare torch+peft loop",
        "torch": torch.__version__,
        "threads": args.threads,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "cpu_count": os.cpu_count(),
        "loadavg_at_end": os.getloadavg(),
        "cuda": torch.cuda.is_available(),
        "results": results,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
