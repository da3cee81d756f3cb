"""A server run as a child process: spawned in a group of its own, waited for, stopped.

The model servers behind the gateway (vLLM, ``model serve``) and the benches' contenders
(LiteLLM's proxy, a fast stub upstream) are all HTTP servers started from another
interpreter. Each one is a :class:`ChildServer`: its output goes to a log file, readiness
is an HTTP health URL answering 200 (polled while the child is watched: if it exits first,
:class:`ChildServerError` carries the tail of its log), and stopping signals its whole
process group (a server's own workers included), SIGTERM first, SIGKILL after a grace
period. A child left running when the interpreter exits is killed.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from hermes_fed.errors import HermesFedError

logger = logging.getLogger(__name__)

_POLL_S = 0.1


class ChildServerError(HermesFedError):
    """A child server did not start, or died; the message carries its log's tail."""


_HANDED_OUT: set[int] = set()
_HANDED_OUT_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now and that this process has not handed out before
    (another process may still take it first).

    The OS may give one port to two ``bind(0)`` calls in a row once the first socket is
    closed, so a caller that picks several ports before starting their servers (the demo:
    nine) could get one twice; the second server then fails to bind while the first one's
    ``/health`` answers for it. Remembering what was handed out rules that out."""
    with _HANDED_OUT_LOCK:
        for _ in range(1000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((host, 0))
                port = int(sock.getsockname()[1])
            if port not in _HANDED_OUT:
                _HANDED_OUT.add(port)
                return port
    raise OSError(f"no port on {host} that this process has not handed out already")


def http_ok(url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 2.0) -> bool:
    """Whether ``GET url`` answers 200."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode(errors="replace")
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
    return "\n".join(text.splitlines()[-lines:])


class ChildServer:
    """One server child process: ``start()`` returns once ``health_url`` answers 200.

    Parameters
    ----------
    name
        What the server is, for messages and logs (``vllm``, ``litellm``).
    argv, env, cwd
        The command line, its whole environment, its working directory.
    health_url
        Polled with GET until it answers 200.
    log_path
        Where stdout and stderr go (appended).
    health_headers
        Headers of the health request (a bearer token).
    """

    def __init__(self, name: str, argv: Sequence[str], *, env: Mapping[str, str], health_url: str,
                 log_path: Path, cwd: Path | None = None,
                 health_headers: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.health_url = health_url
        self.health_headers = dict(health_headers or {})
        self.log_path = log_path
        self.startup_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout_s: float) -> None:
        """Spawn the child and wait up to ``timeout_s`` for its health URL."""
        if self._proc is not None:
            raise ChildServerError(f"{self.name} already started (pid {self._proc.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"# hermes-fed: {' '.join(self.argv)}\n".encode())
            log.flush()
            # A session of its own: the server and every process it forks form one group,
            # so stop() reaches its workers too.
            self._proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          env=self.env, cwd=self.cwd)
        atexit.register(self._kill_at_exit)
        logger.info("action=child_start name=%s pid=%d log=%s", self.name, self._proc.pid, self.log_path)
        try:
            self._wait_healthy(started + timeout_s, timeout_s)
        except BaseException:
            self.stop(grace_s=10.0)
            raise
        self.startup_s = time.monotonic() - started
        logger.info("action=child_ready name=%s pid=%d startup_s=%.2f", self.name, self._proc.pid,
                    self.startup_s)

    def _wait_healthy(self, deadline: float, timeout_s: float) -> None:
        assert self._proc is not None
        while True:
            code = self._proc.poll()
            if code is not None:
                raise ChildServerError(
                    f"{self.name} exited with status {code} before it served "
                    f"(log {self.log_path}):\n{log_tail(self.log_path)}")
            if http_ok(self.health_url, headers=self.health_headers):
                return
            if time.monotonic() > deadline:
                raise ChildServerError(
                    f"{self.name} did not answer {self.health_url} within {timeout_s:.0f} s "
                    f"(log {self.log_path}):\n{log_tail(self.log_path)}")
            # Waiting on the child between polls returns at once if it dies.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=_POLL_S)

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM the process group, SIGKILL what is left after ``grace_s``.

        Returns the child's exit status (None if it was never started). Idempotent.
        """
        proc = self._proc
        if proc is None:
            return None
        pgid = proc.pid  # start_new_session: the group id is the leader's pid
        _signal_group(pgid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace_s)
        # The leader may be gone while its workers still shut down.
        while _group_alive(pgid) and time.monotonic() < deadline:
            time.sleep(_POLL_S)
        if _group_alive(pgid):
            logger.warning("action=child_kill name=%s pid=%d reason=sigterm_timeout", self.name, pgid)
            _signal_group(pgid, signal.SIGKILL)
        code = proc.wait()
        atexit.unregister(self._kill_at_exit)
        logger.info("action=child_stop name=%s pid=%d status=%s", self.name, pgid, code)
        return code

    def _kill_at_exit(self) -> None:
        # Last resort when the owner never called stop() (an aborted test run).
        if self._proc is not None and _group_alive(self._proc.pid):
            _signal_group(self._proc.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        return log_tail(self.log_path, lines)

    def __enter__(self) -> ChildServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is still in the group.

    ``killpg(pgid, 0)`` also succeeds on zombies, and workers orphaned when the leader
    exits are reaped by whatever PID 1 is (a container's may never reap).
    """
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        # after "pid (comm) ": state ppid pgrp ...; comm may hold spaces and parentheses
        fields = text[text.rfind(")") + 2:].split()
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False
