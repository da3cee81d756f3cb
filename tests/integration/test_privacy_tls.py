"""TLS and SuperNode authentication with real processes (issues 8 and 21).

``hermes-fed certs init`` makes the coordinator's CA and its 127.0.0.1 server certificate;
each node makes its own key pair (``hermes-fed node keygen``) and needs only the CA's
``ca.pem``; ``hermes-fed coordinator serve --certs --node-auth`` runs the SuperLink over
TLS with node authentication; ``coordinator register-node`` allows one public key. A node
joining with that key prints "joined" once it is online; a node with an unregistered key
never says "joined": its ``node join`` exits 1 saying which key to register.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hermes_fed.federation.processes import flower_env

pytestmark = pytest.mark.slow

HERMES = [sys.executable, "-m", "hermes_fed.cli"]


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HERMES, *args], capture_output=True, text=True, timeout=120,
                          env=env, check=False)


def _poll(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return flower_env(tmp_path / "flwr-home")


@pytest.fixture
def coordinator(tmp_path: Path, env: dict[str, str]) -> Iterator[tuple[Path, Path, dict[str, Any]]]:
    certs, root = tmp_path / "certs", tmp_path / "coordinator"
    made = _cli("certs", "init", str(certs), env=env)
    assert made.returncode == 0, made.stderr
    for node in ("good", "rogue"):  # on the nodes: their own keys
        keygen = _cli("node", "keygen", str(tmp_path / f"keys-{node}"), env=env)
        assert keygen.returncode == 0, keygen.stderr
    assert not list(certs.rglob("*.pub"))  # the coordinator never held a node's key
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([*HERMES, "coordinator", "serve", "--dir", str(root), "--certs",
                             str(certs), "--node-auth"], stdout=log, stderr=subprocess.STDOUT,
                            env=env, start_new_session=True)
    try:
        serve = root / "serve.json"
        _poll(lambda: serve.exists() or proc.poll() is not None, 90, "coordinator serve")
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        yield certs, root, json.loads(serve.read_text())
    finally:
        _stop(proc)
        log.close()


def _join(tmp_path: Path, env: dict[str, str], superlink: str, certs: Path,
          name: str) -> tuple[subprocess.Popen[bytes], Path]:
    """``node join`` with only what a node holds: the CA certificate and its own key."""
    home = tmp_path / f"node-{name}"
    log = home.parent / f"join-{name}.log"
    keys = tmp_path / f"keys-{name}"
    shutil.copyfile(certs / "ca.pem", keys / "ca.pem")  # the coordinator's operator hands it
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*HERMES, "node", "join", "--superlink", superlink, "--base-model", str(tmp_path),
             "--tenant-id", name, "--store", f"sqlite:///{tmp_path / name}.db",
             "--home", str(home), "--ca", str(keys / "ca.pem"),
             "--auth-key", str(keys / "node.key")],
            stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return proc, log


def _online_nodes(info: dict[str, Any]) -> list[dict[str, Any]]:
    res = subprocess.run([str(Path(sys.executable).parent / "flwr"), "supernode", "list",
                          "hermes-local", "--format", "json"], capture_output=True, text=True,
                         env=flower_env(Path(info["cli_home"])), timeout=60, check=False)
    try:
        nodes: list[dict[str, Any]] = json.loads(res.stdout)["nodes"]
    except (ValueError, KeyError):
        return []
    return [n for n in nodes if n.get("status") == "online"]


def test_tls_node_auth_admits_the_registered_node_and_refuses_an_unregistered_one(
    tmp_path: Path, env: dict[str, str], coordinator: tuple[Path, Path, dict[str, Any]],
) -> None:
    # Prepare: the SuperLink speaks TLS only; one key registered
    certs, root, info = coordinator
    assert info["certs"] == str(certs) and info["node_auth"] is True
    registered = _cli("coordinator", "register-node", str(tmp_path / "keys-good" / "node.pub"),
                      "--dir", str(root), env=env)
    assert registered.returncode == 0, registered.stderr + registered.stdout

    # Execute
    good, good_log = _join(tmp_path, env, info["superlink"], certs, "good")
    rogue, rogue_log = _join(tmp_path, env, info["superlink"], certs, "rogue")
    try:
        joined = _poll(lambda: "joined" in good_log.read_text(errors="replace"), 120,
                       "the registered node to say joined")
        online = _online_nodes(info)
        rogue_exit = _poll(lambda: rogue.poll() is not None and (rogue.returncode,), 120,
                           "the unregistered node to be refused")

        # Assert: "joined" came once the SuperLink had the node online; the rogue node
        # never said it, and said which key to register
        assert joined and len(online) == 1 and good.poll() is None
        said = rogue_log.read_text(errors="replace")
        assert rogue_exit == (1,)
        assert "joined" not in said
        assert (f"the coordinator refused this node's key: register "
                f"{tmp_path / 'keys-rogue' / 'node.pub'} with `hermes-fed coordinator "
                "register-node`") in said
        assert len(_online_nodes(info)) == 1
    finally:
        _stop(good)
        _stop(rogue)


def test_register_node_needs_a_coordinator_with_node_auth(tmp_path: Path,
                                                          env: dict[str, str]) -> None:
    # Prepare: a coordinator directory that serves without --node-auth
    from hermes_fed.federation.node_keys import make_node_key

    root = tmp_path / "coordinator"
    root.mkdir()
    (root / "serve.json").write_text(json.dumps({"cli_home": str(tmp_path), "node_auth": False}))
    _, public = make_node_key(tmp_path / "keys")

    # Execute
    res = _cli("coordinator", "register-node", str(public), "--dir", str(root), env=env)

    # Assert
    assert res.returncode != 0
    assert "--node-auth" in res.stderr + res.stdout


def test_node_ingest_serves_tls_with_the_certificates_from_certs_init(
    tmp_path: Path, env: dict[str, str],
) -> None:
    # Prepare: the node's gRPC ingest with the server certificate `certs init` made
    from hermes_fed.client import IngestError
    from hermes_fed.events import NewEvent
    from tests.integration.ingest_node import NodeProcess

    certs = tmp_path / "certs"
    assert _cli("certs", "init", str(certs), env=env).returncode == 0
    node = NodeProcess(tmp_path / "node", f"sqlite:///{tmp_path / 'node.db'}",
                       tls={"cert_file": str(certs / "server.pem"),
                            "key_file": str(certs / "server.key")})
    node.root_certificates = (certs / "ca.pem").read_bytes()
    node.start()
    try:
        # Execute: a client trusting the CA, and one speaking plaintext
        results = node.client().append([NewEvent(stream_id="session-tls", type="SessionEnded",
                                                 data={})])
        plain = NodeProcess(tmp_path / "plain", "sqlite:///unused.db")
        plain.port = node.port
        with pytest.raises(IngestError) as caught:
            plain.client(timeout_s=2.0).append(
                [NewEvent(stream_id="session-tls", type="SessionEnded", data={})])

        # Assert
        assert results[0].position == 1
        assert caught.value.code == "UNAVAILABLE"
    finally:
        assert node.stop() == 0
