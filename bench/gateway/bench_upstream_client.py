"""The gateway's upstream hop alone: httpcore (what the gateway used) against aiohttp (what
it uses), one sequential client, same process, same instant upstream.

Starts the stub upstream (``tests/integration/gateway/stub_upstream.py``) on 127.0.0.1,
then alternates the two clients ``--reps`` times, ``--calls`` non-streamed chat calls each
(the first 100 of a block are warm-up), and prints JSON: per client the p50 latency and the
client's CPU per call (process time), and aiohttp's ratio to httpcore. Asserts nothing.

    .venv/bin/python bench/gateway/bench_upstream_client.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import httpcore
import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.integration.gateway.stack import stub_upstream  # noqa: E402

BODY = orjson.dumps({"model": "bench-model", "messages": [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": "my order 4711 has not arrived, where is it?"}]})


async def with_httpcore(url: str, calls: int) -> list[float]:
    pool = httpcore.AsyncConnectionPool(max_connections=256, max_keepalive_connections=64)
    headers = [(b"content-type", b"application/json")]
    timeouts = {"connect": 10.0, "read": 120.0, "write": 120.0, "pool": 120.0}
    out = []
    try:
        for _ in range(calls):
            start = time.perf_counter()
            response = await pool.request("POST", url, headers=headers, content=BODY,
                                          extensions={"timeout": timeouts})
            if response.status != 200 or b"choices" not in response.content:
                raise RuntimeError(f"httpcore: HTTP {response.status}")
            out.append(time.perf_counter() - start)
    finally:
        await pool.aclose()
    return out


async def with_aiohttp(url: str, calls: int) -> list[float]:
    timeout = aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=120.0)
    out = []
    async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256, limit_per_host=0), timeout=timeout,
            headers={"Content-Type": "application/json"},
            skip_auto_headers=("User-Agent",)) as session:
        for _ in range(calls):
            start = time.perf_counter()
            async with session.post(url, data=BODY) as response:
                content = await response.read()
            if response.status != 200 or b"choices" not in content:
                raise RuntimeError(f"aiohttp: HTTP {response.status}")
            out.append(time.perf_counter() - start)
    return out


def measure(run: Callable[[str, int], Coroutine[Any, Any, list[float]]], url: str,
            calls: int) -> tuple[list[float], float]:
    cpu = time.process_time()
    times = asyncio.run(run(url, calls))
    return times[100:], (time.process_time() - cpu) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1500, help="calls per block (1500)")
    parser.add_argument("--reps", type=int, default=3, help="blocks per client (3)")
    args = parser.parse_args()
    stub = stub_upstream(Path(tempfile.mkdtemp(prefix="bench-upstream-client-"))).start()
    url = stub.url + "/v1/chat/completions"
    samples: dict[str, list[float]] = {"httpcore": [], "aiohttp": []}
    cpu: dict[str, list[float]] = {"httpcore": [], "aiohttp": []}
    try:
        for _ in range(args.reps):
            for name, run in (("httpcore", with_httpcore), ("aiohttp", with_aiohttp)):
                times, per_call = measure(run, url, args.calls)
                samples[name].extend(times)
                cpu[name].append(per_call)
    finally:
        stub.stop()
    result: dict[str, Any] = {
        "bench": "gateway/bench_upstream_client", "config": vars(args),
        "clients": {name: {"p50_ms": statistics.median(samples[name]) * 1e3,
                           "cpu_ms_per_call": statistics.median(cpu[name]) * 1e3}
                    for name in samples}}
    clients = result["clients"]
    result["aiohttp_over_httpcore"] = {
        "p50": clients["aiohttp"]["p50_ms"] / clients["httpcore"]["p50_ms"],
        "cpu": clients["aiohttp"]["cpu_ms_per_call"] / clients["httpcore"]["cpu_ms_per_call"]}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
