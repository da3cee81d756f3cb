"""vLLM's CPU build serving the packaged base and one adapter: start, load, first token.

Through the production path (``hermes_fed.serving.vllm_process``, the official ``openai``
client, vLLM's ``/v1/load_lora_adapter``), on this machine's CPUs:

- ``startup_s``: spawn to the first 200 of ``/health`` (``--starts`` fresh servers);
- ``load_adapter_ms``: ``POST /v1/load_lora_adapter`` of a PEFT adapter written by
  ``save_adapter`` (rank 8, all 7 projections), and the first call after it;
- streaming chat, greedy, ``--max-tokens`` tokens, interleaved base / adapter calls:
  time to the first content token (TTFT) and to the end, p50/p99, decode tokens/s;
- ``--time-venv``: also times ``scripts/vllm_venv.sh`` into a fresh folder (minutes,
  3.5 GB; deleted afterwards) and a second, stamped run.

    .venv/bin/python bench/serving/bench_vllm_cpu.py --out bench/results/vllm_cpu.json

Prints one JSON document; never asserts a speed. One vLLM at a time (~3 GB RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.serving_procs import (  # noqa: E402
    BASE_SERVED_NAME,
    packaged_base_model,
    vllm_server,
    vllm_venv_problem,
    write_test_adapter,
)

MESSAGES = [{"role": "system", "content": "You are a helpful assistant with tools."},
            {"role": "user", "content": "Please look up order 42 for me."}]


def quantiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


def time_venv() -> dict[str, Any]:
    """scripts/vllm_venv.sh into a fresh folder, then again (the stamped no-op)."""
    target = Path(tempfile.mkdtemp(prefix="vllm-venv-bench-")) / "venv"
    try:
        start = time.monotonic()
        subprocess.run([str(ROOT / "scripts" / "vllm_venv.sh"), str(target)], check=True)
        fresh = time.monotonic() - start
        size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file() and not p.is_symlink())
        start = time.monotonic()
        subprocess.run([str(ROOT / "scripts" / "vllm_venv.sh"), str(target)], check=True)
        return {"fresh_s": fresh, "stamped_s": time.monotonic() - start, "size_bytes": size}
    finally:
        shutil.rmtree(target.parent, ignore_errors=True)


def stream_once(client: Any, model: str, max_tokens: int) -> tuple[float, float, int]:
    """(seconds to the first content token, seconds to the end, completion tokens)."""
    start = time.perf_counter()
    first = None
    tokens = 0
    stream = client.chat.completions.create(model=model, messages=MESSAGES, temperature=0,
                                            max_tokens=max_tokens, stream=True,
                                            stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    end = time.perf_counter() - start
    return (first if first is not None else end), end, tokens


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=30, help="streamed calls per model (30)")
    parser.add_argument("--max-tokens", type=int, default=32, help="tokens per answer (32)")
    parser.add_argument("--starts", type=int, default=1, help="fresh server starts to time (1)")
    parser.add_argument("--time-venv", action="store_true", help="also time scripts/vllm_venv.sh afresh")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    problem = vllm_venv_problem()
    if problem is not None:
        raise SystemExit(problem)
    import httpx
    import openai

    result: dict[str, Any] = {"bench": "serving/bench_vllm_cpu",
                              "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                          "loadavg_before": os.getloadavg()},
                              "config": {"calls": args.calls, "max_tokens": args.max_tokens,
                                         "vllm": "vllm-cpu 0.32.0", "dtype": "float32",
                                         "kv_cache_gib": 1, "omp_threads": 1}}
    if args.time_venv:
        result["venv"] = time_venv()
    work = Path(tempfile.mkdtemp(prefix="vllm-bench-"))
    try:
        base = packaged_base_model()
        adapter = write_test_adapter(work / "adapters", base, seed=3, version=1)
        startups: list[float] = []
        for i in range(args.starts):
            server = vllm_server(base, work / f"vllm-{i}.log")
            server.start()
            assert server.startup_s is not None
            startups.append(server.startup_s)
            if i < args.starts - 1:
                server.stop()
        result["startup_s"] = startups
        try:
            client = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
            with httpx.Client(base_url=server.url, timeout=60) as admin:
                start = time.perf_counter()
                response = admin.post("/v1/load_lora_adapter",
                                      json={"lora_name": adapter.name, "lora_path": str(adapter.path)})
                load_s = time.perf_counter() - start
                response.raise_for_status()
            cold_first, cold_end, _ = stream_once(client, adapter.name, args.max_tokens)
            result["load_adapter_ms"] = load_s * 1e3
            result["first_call_after_load"] = {"ttft_ms": cold_first * 1e3, "total_ms": cold_end * 1e3}
            stream_once(client, BASE_SERVED_NAME, args.max_tokens)  # warm the base path too
            series: dict[str, dict[str, list[float]]] = {
                m: {"ttft": [], "total": [], "decode_tok_s": []} for m in (BASE_SERVED_NAME, adapter.name)}
            for _ in range(args.calls):
                for model in series:
                    first, end, tokens = stream_once(client, model, args.max_tokens)
                    series[model]["ttft"].append(first)
                    series[model]["total"].append(end)
                    if tokens > 1 and end > first:
                        series[model]["decode_tok_s"].append((tokens - 1) / (end - first))
            result["streaming"] = {
                ("base" if model == BASE_SERVED_NAME else "adapter"): {
                    "ttft": quantiles(s["ttft"]), "total": quantiles(s["total"]),
                    "decode_tokens_per_s_p50": (float(np.median(s["decode_tok_s"]))
                                                if s["decode_tok_s"] else None)}
                for model, s in series.items()}
            result["rss_mb"] = _group_rss_mb(server.pid)
        finally:
            server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["machine"]["loadavg_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


def _group_rss_mb(pgid: int | None) -> float | None:
    """Resident memory of the server's whole process group, MB."""
    if pgid is None:
        return None
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[2] == str(pgid):
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e6


if __name__ == "__main__":
    main()
