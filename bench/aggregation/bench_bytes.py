"""Bytes per round per node, aggregation time, and exact vs fedavg error, per mode.

Usage::

    .venv/bin/python bench/aggregation/bench_bytes.py [--shapes bench/aggregation/shapes.toml]
        [--ranks 8 16] [--nodes 3] [--repeats 5] [--out results.json]

Prints one JSON document (and writes it to ``--out`` when given):

- ``bytes``: for each model shape and rank, what one node uploads and downloads per round
  in each mode (raw fp32 tensor bytes, and the size of the same tensors as a safetensors
  file), against sending the full model (full fine-tuning FedAvg). ``exact-stacked`` is the
  un-compressed stacked adapter (rank = nodes × r) a coordinator could send instead.
- ``aggregation``: wall time of ``aggregate()`` per mode (median of ``--repeats``) and its
  ratio to fedavg measured in the same process, with the relative error of each mode
  against the exact weighted mean of ``B·A``, on synthetic adapters trained (Adam on a
  least-squares target per node, shared plus node-specific part) from a shared LoRA init,
  from separate inits, and with A frozen (FFA-LoRA). ``exact-no-fedavg-compare`` times
  exact without the fedavg comparison; ``dense-svd-reference`` times forming every dense
  mean and its full SVD (what the QR route avoids; not part of any mode).

Shapes come from ``shapes.toml``; when ``hermes_fed.training.tiny_model`` is importable its
``TINY_SIZES`` are counted too (``source: training``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.linalg

from hermes_fed.aggregation import AggregationConfig, ClientUpdate, make_aggregator

FP32 = 4
GESDD_FAILURES: list[str] = []
MODES = ("fedavg", "exact", "frozen-a")


@dataclass(frozen=True)
class ModelShape:
    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    tie_word_embeddings: bool
    source: str

    def projections(self) -> list[tuple[str, int, int]]:
        """(peft prefix, out, in) of every adapted Linear, Llama layout."""
        h, i = self.hidden_size, self.intermediate_size
        kv = self.num_key_value_heads * (h // self.num_attention_heads)
        per_layer = [("self_attn.q_proj", h, h), ("self_attn.k_proj", kv, h),
                     ("self_attn.v_proj", kv, h), ("self_attn.o_proj", h, h),
                     ("mlp.gate_proj", i, h), ("mlp.up_proj", i, h), ("mlp.down_proj", h, i)]
        return [(f"base_model.model.model.layers.{n}.{name}", o, k)
                for n in range(self.num_hidden_layers) for name, o, k in per_layer]

    def full_params(self) -> int:
        """All parameters: embeddings, projections, RMSNorm weights, untied head if any."""
        h = self.hidden_size
        linear = sum(o * k for _, o, k in self.projections())
        norms = (2 * self.num_hidden_layers + 1) * h
        head = 0 if self.tie_word_embeddings else self.vocab_size * h
        return self.vocab_size * h + linear + norms + head


def load_shapes(path: Path) -> list[ModelShape]:
    with path.open("rb") as f:
        models = tomllib.load(f)["models"]
    shapes = [ModelShape(name=name, source=str(path), **spec) for name, spec in models.items()]
    try:
        from hermes_fed.training.tiny_model import TINY_SIZES
    except ImportError:
        return shapes
    for size in TINY_SIZES.values():
        shapes.append(ModelShape(
            name=f"{size.name}-training", vocab_size=size.vocab_size,
            hidden_size=size.hidden_size, intermediate_size=size.intermediate_size,
            num_hidden_layers=size.num_hidden_layers,
            num_attention_heads=size.num_attention_heads,
            num_key_value_heads=size.num_key_value_heads, tie_word_embeddings=True,
            source="hermes_fed.training.tiny_model.TINY_SIZES"))
    return shapes


def _safetensors_size(tensors: dict[str, tuple[int, int]]) -> int | None:
    try:
        from safetensors.numpy import save
    except ImportError:
        return None
    return len(save({k: np.zeros(s, dtype=np.float32) for k, s in tensors.items()}))


def bytes_per_node(shape: ModelShape, rank: int, nodes: int) -> dict[str, Any]:
    a = {f"{p}.lora_A.weight": (rank, k) for p, _, k in shape.projections()}
    b = {f"{p}.lora_B.weight": (o, rank) for p, o, _ in shape.projections()}
    stacked = {**{k: (nodes * rank, s[1]) for k, s in a.items()},
               **{k: (s[0], nodes * rank) for k, s in b.items()}}
    full = shape.full_params() * FP32

    def count(tensors: dict[str, tuple[int, int]]) -> int:
        return sum(r * c for r, c in tensors.values()) * FP32

    payloads = {"fedavg": ({**a, **b}, {**a, **b}), "exact": ({**a, **b}, {**a, **b}),
                "exact-stacked": ({**a, **b}, stacked), "frozen-a": (b, b)}
    modes = {}
    for mode, (up, down) in payloads.items():
        modes[mode] = {
            "up_bytes": count(up), "down_bytes": count(down),
            "up_safetensors_bytes": _safetensors_size(up),
            "down_safetensors_bytes": _safetensors_size(down),
            "round_trip_fraction_of_full": (count(up) + count(down)) / (2 * full),
        }
    return {"model": shape.name, "source": shape.source, "rank": rank, "nodes": nodes,
            "full_params": shape.full_params(), "full_model_bytes": full,
            "adapted_modules": len(shape.projections()), "modes": modes}


def _train_pair(rng: np.random.Generator, target: np.ndarray, a: np.ndarray, rank: int,
                scale: float, train_a: bool, steps: int, lr: float) -> tuple[np.ndarray, ...]:
    """Adam (Kingma & Ba, 2015) on 0.5·||scale·B·A − T||², B from zero as in LoRA."""
    b = np.zeros((target.shape[0], rank))
    a = a.copy()
    moments = [np.zeros_like(b), np.zeros_like(b), np.zeros_like(a), np.zeros_like(a)]
    for t in range(1, steps + 1):
        residual = scale * b @ a - target
        grads = [scale * residual @ a.T, scale * b.T @ residual]
        params = [b, a] if train_a else [b]
        for j, (p, g) in enumerate(zip(params, grads, strict=False)):
            m, v = moments[2 * j], moments[2 * j + 1]
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    return b, a


def _low_rank(rng: np.random.Generator, out: int, n_in: int, k: int) -> np.ndarray:
    m = rng.normal(size=(out, k)) @ rng.normal(size=(k, n_in))
    return m / np.linalg.norm(m)


def synthetic_round(shape: ModelShape, rank: int, nodes: int, scenario: str, *, seed: int = 0,
                    target_rank: int = 4, heterogeneity: float = 0.7, steps: int = 40,
                    lr: float = 0.01) -> list[ClientUpdate]:
    """One round of adapters trained towards shared + node-specific low-rank targets."""
    rng = np.random.default_rng(seed)
    scale = 2.0 * 8 / rank  # alpha = 2 r, the usual choice; the mean is scale-invariant
    tensors: list[dict[str, np.ndarray]] = [{} for _ in range(nodes)]
    for prefix, out, n_in in shape.projections():
        bound = 1.0 / np.sqrt(n_in)  # peft's kaiming_uniform(a=√5) bound for lora_A
        shared_target = _low_rank(rng, out, n_in, target_rank)
        a0 = rng.uniform(-bound, bound, size=(rank, n_in))
        for i in range(nodes):
            target = shared_target + heterogeneity * _low_rank(rng, out, n_in, target_rank)
            a_init = a0 if scenario != "separate-init" else rng.uniform(-bound, bound,
                                                                       size=(rank, n_in))
            b, a = _train_pair(rng, target, a_init, rank, scale,
                               scenario != "frozen-a", steps, lr)
            tensors[i][f"{prefix}.lora_A.weight"] = a.astype(np.float32)
            tensors[i][f"{prefix}.lora_B.weight"] = b.astype(np.float32)
    return [ClientUpdate(f"node-{i}", 100 * (i + 1), t) for i, t in enumerate(tensors)]


def dense_svd_reference(updates: list[ClientUpdate], rank: int) -> None:
    """What ``exact`` avoids: form every dense mean ``Σ w_i B_i A_i`` and SVD it."""
    total = sum(u.num_examples for u in updates)
    for key in updates[0].tensors:
        if not key.endswith(".lora_A.weight"):
            continue
        b_key = key.replace(".lora_A.", ".lora_B.")
        mean = sum(u.num_examples / total * u.tensors[b_key].astype(np.float64)
                   @ u.tensors[key].astype(np.float64) for u in updates)
        try:
            u_, s, vt = np.linalg.svd(mean, full_matrices=False)
        except np.linalg.LinAlgError:  # gesdd fails on some rank-deficient means; see lowrank
            GESDD_FAILURES.append(key)
            u_, s, vt = scipy.linalg.svd(mean, full_matrices=False, lapack_driver="gesvd")
        _ = (u_[:, :rank] * np.sqrt(s[:rank]), np.sqrt(s[:rank])[:, None] * vt[:rank])


def time_modes(updates: list[ClientUpdate], modes: tuple[str, ...], rank: int,
               repeats: int) -> dict[str, dict[str, Any]]:
    scale = 2.0 * 8 / rank
    out: dict[str, dict[str, Any]] = {}
    variants = [(m, m, AggregationConfig()) for m in modes]
    if "exact" in modes:
        variants.append(("exact-no-fedavg-compare", "exact",
                         AggregationConfig(compare_fedavg=False)))
    for label, mode, config in variants:
        aggregator = make_aggregator(mode, config)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            result = aggregator.aggregate(updates, scale=scale)
            times.append(time.perf_counter() - start)
        out[label] = {"seconds_median": statistics.median(times), "seconds_min": min(times),
                      "residual_vs_exact_mean": result.report.residual,
                      "fedavg_error": result.report.fedavg_error,
                      "outliers": list(result.report.outliers)}
    if "exact" in modes:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            dense_svd_reference(updates, rank)
            times.append(time.perf_counter() - start)
        out["dense-svd-reference"] = {"seconds_median": statistics.median(times),
                                      "seconds_min": min(times)}
    base = out["fedavg"]["seconds_median"]
    for figures in out.values():
        figures["time_ratio_vs_fedavg"] = figures["seconds_median"] / base
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", type=Path, default=Path(__file__).with_name("shapes.toml"))
    parser.add_argument("--ranks", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-rank", type=int, default=4,
                        help="rank of the shared and of each node's synthetic target")
    parser.add_argument("--heterogeneity", type=float, default=0.7,
                        help="weight of the node-specific target beside the shared one")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    shapes = load_shapes(args.shapes)
    bench_shapes = [s for s in shapes if s.source == str(args.shapes)]
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "numpy": np.__version__, "cpu_count": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "bytes": [bytes_per_node(s, r, args.nodes) for s in shapes for r in args.ranks],
        "aggregation": [],
        "synthetic": {"target_rank": args.target_rank, "heterogeneity": args.heterogeneity,
                      "optimizer": "Adam lr 0.01, 40 steps, B from zero, A kaiming-uniform",
                      "counts": [100 * (i + 1) for i in range(args.nodes)]},
    }
    for shape in bench_shapes:
        for rank in args.ranks:
            for scenario in ("shared-init", "separate-init", "frozen-a"):
                updates = synthetic_round(shape, rank, args.nodes, scenario,
                                          target_rank=args.target_rank,
                                          heterogeneity=args.heterogeneity)
                modes = MODES if scenario == "frozen-a" else ("fedavg", "exact")
                results["aggregation"].append({
                    "model": shape.name, "rank": rank, "nodes": args.nodes,
                    "scenario": scenario, "modes": time_modes(updates, modes, rank, args.repeats),
                })
    results["dense_reference_gesdd_failures"] = len(GESDD_FAILURES)
    text = json.dumps(results, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
