"""What an OpenAI-compatible proxy adds over a direct call: LiteLLM's proxy, and any contender.

All contenders stand in front of the same fast local upstream (``fast_upstream.py``, its
own process, answering at once), so the difference to a direct call to that upstream is the
proxy's cost. Measured, per contender, in one run:

- latency with one client, interleaved (each round sends one request to every contender
  in turn, so drift on a shared machine hits all alike): non-streaming (to the last byte)
  and streaming (to the first event and to ``[DONE]``); p50/p90/p99 and the added
  p50/p99 over the direct call (difference of quantiles, and the median of the paired
  per-round differences);
- requests/s with ``--threads`` client threads (non-streaming, persistent connections,
  stdlib ``http.client`` so the client's own CPU stays small) for ``--seconds``, and the
  server's CPU per request (its process group's CPU time over that run, when the bench
  started it: the figure other load on a shared machine disturbs least).

LiteLLM runs with its logging on (``litellm_proxy.py``: a JSONL call logger through its
custom-callback hook, one worker); ``litellm_logged_calls`` checks it logged every call.
Another contender (the node's gateway) joins the same run either already running
(``--contender gateway=http://127.0.0.1:8800/v1``) or started by the bench
(``--contender-cmd 'gateway=hermes-fed node gateway --upstream {upstream} --port {port}'``:
``{upstream}`` is the stub's base URL, ``{port}`` a free port, health at ``/health``).
Each contender must route model ``bench-model`` to the stub.

    .venv/bin/python bench/gateway/bench_litellm.py --out bench/results/gateway_litellm.json

Prints one JSON document (and writes it to ``--out``); never asserts a speed.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

from fast_upstream import start_fast_upstream  # noqa: E402
from litellm_proxy import LitellmProxy, LitellmProxyConfig  # noqa: E402

from hermes_fed.serving.child_process import ChildServer, free_port  # noqa: E402

MODEL = "bench-model"
MESSAGES = [
    {"role": "system", "content": "You are a support agent with tools."},
    {"role": "user", "content": "Where is my order 4711? It was due on Monday."},
]


@dataclass(frozen=True, slots=True)
class Contender:
    """An OpenAI-compatible endpoint in front of the stub."""

    name: str
    base_url: str  # ends in /v1
    api_key: str = ""
    pgid: int | None = None  # its process group, when the bench started it: CPU is measured


def group_cpu_s(pgid: int | None) -> float | None:
    """User + system CPU seconds of a process group's live processes (Linux /proc)."""
    if pgid is None:
        return None
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[2] == str(pgid):
                ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


class Client:
    """One persistent HTTP/1.1 connection to a contender (not thread-safe: one per thread)."""

    def __init__(self, contender: Contender) -> None:
        url = urllib.parse.urlsplit(contender.base_url)
        self._host, self._port = url.hostname or "127.0.0.1", url.port or 80
        self._path = url.path.rstrip("/") + "/chat/completions"
        self._headers = {"Content-Type": "application/json"}
        if contender.api_key:
            self._headers["Authorization"] = f"Bearer {contender.api_key}"
        body = {"model": MODEL, "messages": MESSAGES, "user": "bench-user-1"}
        self._plain = json.dumps(body).encode()
        streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
        self._stream = json.dumps(streamed).encode()
        self._conn = http.client.HTTPConnection(self._host, self._port, timeout=30)

    def _send(self, body: bytes) -> http.client.HTTPResponse:
        try:
            self._conn.request("POST", self._path, body=body, headers=self._headers)
            return self._conn.getresponse()
        except (http.client.HTTPException, OSError):
            # The server closed a kept-alive connection: one retry on a fresh one.
            self._conn.close()
            self._conn = http.client.HTTPConnection(self._host, self._port, timeout=30)
            self._conn.request("POST", self._path, body=body, headers=self._headers)
            return self._conn.getresponse()

    def complete(self) -> float:
        """One non-streaming call; seconds to the last byte."""
        start = time.perf_counter()
        response = self._send(self._plain)
        data = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 200 or b'"choices"' not in data:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        return elapsed

    def stream(self) -> tuple[float, float]:
        """One streaming call; seconds to the first event and to ``[DONE]``."""
        start = time.perf_counter()
        response = self._send(self._stream)
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {response.read()[:200]!r}")
        first = None
        while True:
            line = response.readline()
            if not line:
                raise RuntimeError("stream ended without [DONE]")
            if line.startswith(b"data:"):
                if first is None:
                    first = time.perf_counter() - start
                if line.strip() == b"data: [DONE]":
                    break
        response.read()  # the chunked terminator, so the connection can be reused
        assert first is not None
        return first, time.perf_counter() - start

    def close(self) -> None:
        self._conn.close()


def quantiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"n": len(ms), "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def latency(contenders: list[Contender], rounds: int, warmup: int) -> dict[str, dict[str, Any]]:
    """One client; each round calls every contender once per mode, in rotating order."""
    clients = {c.name: Client(c) for c in contenders}
    for client in clients.values():
        for _ in range(warmup):
            client.complete()
            client.stream()
    plain: dict[str, list[float]] = {c.name: [] for c in contenders}
    first: dict[str, list[float]] = {c.name: [] for c in contenders}
    done: dict[str, list[float]] = {c.name: [] for c in contenders}
    names = [c.name for c in contenders]
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            plain[name].append(clients[name].complete())
        for name in order:
            f, d = clients[name].stream()
            first[name].append(f)
            done[name].append(d)
    for client in clients.values():
        client.close()

    out: dict[str, dict[str, Any]] = {}
    base = names[0]
    for name in names:
        entry: dict[str, Any] = {"non_streaming": quantiles(plain[name]),
                                 "streaming_first_event": quantiles(first[name]),
                                 "streaming_done": quantiles(done[name])}
        if name != base:
            for key, series in (("non_streaming", plain), ("streaming_first_event", first),
                                ("streaming_done", done)):
                mine, theirs = entry[key], out[base][key]
                paired = (np.asarray(series[name]) - np.asarray(series[base])) * 1e3
                mine["added_p50_ms"] = mine["p50_ms"] - theirs["p50_ms"]
                mine["added_p99_ms"] = mine["p99_ms"] - theirs["p99_ms"]
                mine["added_paired_median_ms"] = float(np.median(paired))
                mine["ratio_p50_vs_direct"] = mine["p50_ms"] / theirs["p50_ms"]
        out[name] = entry
    return out


def throughput(contender: Contender, threads: int, seconds: float) -> dict[str, Any]:
    """Requests/s of ``threads`` clients looping non-streaming calls for ``seconds``."""
    stop = threading.Event()
    lock = threading.Lock()
    samples: list[float] = []
    errors: list[str] = []
    ready = threading.Barrier(threads + 1)

    def work() -> None:
        client = Client(contender)
        mine: list[float] = []
        ready.wait()
        while not stop.is_set():
            try:
                mine.append(client.complete())
            except Exception as exc:
                with lock:
                    errors.append(repr(exc)[:200])
        client.close()
        with lock:
            samples.extend(mine)

    workers = [threading.Thread(target=work, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    ready.wait()
    cpu_before = group_cpu_s(contender.pgid)
    start = time.perf_counter()
    stop.wait(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - start
    cpu_after = group_cpu_s(contender.pgid)
    # CPU per request is the figure a busy shared machine disturbs least (wall time is not).
    cpu_ms = (None if cpu_before is None or cpu_after is None or not samples
              else (cpu_after - cpu_before) * 1e3 / len(samples))
    return {"threads": threads, "seconds": elapsed, "requests": len(samples),
            "requests_per_s": len(samples) / elapsed, "errors": len(errors), "first_errors": errors[:3],
            "server_cpu_ms_per_request": cpu_ms,
            "latency_under_load": quantiles(samples) if samples else None}


def start_contender_cmd(spec: str, upstream: str, workdir: Path) -> tuple[ChildServer, Contender]:
    """``NAME=COMMAND`` with ``{upstream}`` and ``{port}``: started, waited for at /health."""
    name, _, command = spec.partition("=")
    port = free_port()
    argv = [part.format(upstream=upstream, port=port) for part in shlex.split(command)]
    child = ChildServer(name, argv, env=dict(os.environ), health_url=f"http://127.0.0.1:{port}/health",
                        log_path=workdir / f"{name}.log")
    child.start(timeout_s=120.0)
    key = os.environ.get(f"BENCH_KEY_{name.upper()}", "")
    return child, Contender(name, f"http://127.0.0.1:{port}/v1", key, pgid=child.pid)


def litellm_version() -> str | None:
    venv = ROOT / ".venv-litellm" / "lib"
    for meta in venv.glob("python*/site-packages/litellm-*.dist-info/METADATA"):
        for line in meta.read_text().splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=400, help="latency rounds per mode (400)")
    parser.add_argument("--warmup", type=int, default=30, help="warm-up calls per contender and mode (30)")
    parser.add_argument("--threads", type=int, default=8, help="client threads of the throughput run (8)")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per throughput run (10)")
    parser.add_argument("--litellm-logging", choices=("file", "none"), default="file",
                        help="LiteLLM's call logging: file (JSONL callback, default) or none")
    parser.add_argument("--no-litellm", action="store_true", help="leave LiteLLM out")
    parser.add_argument("--contender", action="append", default=[], metavar="NAME=URL",
                        help="a running contender's OpenAI base URL (key: env BENCH_KEY_<NAME>)")
    parser.add_argument("--contender-cmd", action="append", default=[], metavar="NAME=COMMAND",
                        help="a contender the bench starts ({upstream}, {port} substituted)")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, LiteLLM's calls)")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    children: list[Any] = []
    try:
        upstream_child, upstream = start_fast_upstream(workdir / "upstream.log")
        children.append(upstream_child)
        contenders = [Contender("direct", upstream, pgid=upstream_child.pid)]
        proxy = None
        if not args.no_litellm:
            proxy = LitellmProxy(LitellmProxyConfig(upstream_base_url=upstream, logging=args.litellm_logging),
                                 workdir=workdir / "litellm")
            children.append(proxy)
            proxy.start()
            contenders.append(Contender("litellm", proxy.base_url, proxy.api_key, pgid=proxy.pid))
        for spec in args.contender:
            name, _, url = spec.partition("=")
            contenders.append(Contender(name, url, os.environ.get(f"BENCH_KEY_{name.upper()}", "")))
        for spec in args.contender_cmd:
            child, contender = start_contender_cmd(spec, upstream, workdir)
            children.append(child)
            contenders.append(contender)

        load_before = os.getloadavg()
        lat = latency(contenders, args.rounds, args.warmup)
        thr = {c.name: throughput(c, args.threads, args.seconds) for c in contenders}
        load_after = os.getloadavg()
        result: dict[str, Any] = {
            "bench": "gateway/bench_litellm",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "python": platform.python_version(), "loadavg_before": load_before,
                        "loadavg_after": load_after},
            "config": {"rounds": args.rounds, "warmup": args.warmup, "threads": args.threads,
                       "seconds": args.seconds,
                       "litellm_logging": None if proxy is None else args.litellm_logging,
                       "litellm_version": litellm_version(), "litellm_workers": 1,
                       "contenders": [c.name for c in contenders]},
            "latency": lat,
            "throughput": thr,
        }
        if proxy is not None:
            sent = (args.warmup * 2 + args.rounds * 2 + thr["litellm"]["requests"] + thr["litellm"]["errors"])
            deadline, seen = time.monotonic() + 10.0, -1
            while proxy.logged_calls() != seen and time.monotonic() < deadline:  # let the logger drain
                seen = proxy.logged_calls()
                time.sleep(0.5)
            result["litellm_logged_calls"] = {"sent": sent, "logged": proxy.logged_calls(),
                                              "startup_s": proxy.startup_s}
    finally:
        for child in reversed(children):
            child.stop()
        if args.keep:
            print(f"work folder kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
