"""Who holds which key (issue 21, item 1): nodes make their own keys, the coordinator its
CA; every file is read for what it must be (an empty file passed a presence check), and a
missing one is blamed on the party that has it."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from coordinator.deploy.certs import init_certs
from hermes_fed.errors import ConfigError, FederationError
from hermes_fed.federation.node_keys import (
    check_ca_certificate,
    check_private_key,
    check_public_key,
    make_node_key,
)
from hermes_fed.federation.processes import refusal, start_supernode, tls_files

# What flower-supernode 1.42 logs when it exits before the SuperLink accepted it (measured:
# an unregistered key, no key at a SuperLink with node auth, a CA that did not sign the
# SuperLink's certificate).
REFUSED_KEY = ("ERROR :     Exit Code: 305\nFailed to initialize the connection to the "
               "SuperLink.\n[code: 2004] Failed to activate SuperNode.\nThe SuperNode could "
               "not establish a connection to the SuperLink.\n")
NO_KEY = ("ERROR :     Exit Code: 305\nFailed to initialize the connection to the SuperLink."
          "\n[code: 2001] SuperNode authentication is enabled. All SuperNodes must be "
          "registered via the CLI.\n")
WRONG_CA = ("ERROR :     SSL/TLS handshake error detected.\nERROR :     Exit Code: 305\nFailed "
            "to initialize the connection to the SuperLink.\n[SSL: CERTIFICATE_VERIFY_FAILED] "
            "certificate verify failed: certificate signature failure (_ssl.c:1006)\n")


def test_keygen_makes_an_ecdsa_pair_on_the_node_and_never_overwrites_it(tmp_path: Path) -> None:
    # Execute
    private, public = make_node_key(tmp_path / "keys")
    written = private.read_bytes()

    # Assert: OpenSSH ECDSA P-384, the private half readable by its owner only
    key = serialization.load_ssh_private_key(private.read_bytes(), None)
    pub = serialization.load_ssh_public_key(public.read_bytes())
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert key.public_key().public_numbers() == pub.public_numbers()  # type: ignore[union-attr]
    assert private.stat().st_mode & 0o077 == 0
    assert check_private_key(private) == private and check_public_key(public) == public
    with pytest.raises(ConfigError, match="exists already"):
        make_node_key(tmp_path / "keys")
    assert private.read_bytes() == written  # untouched


def test_certs_init_makes_no_node_key_on_the_coordinator(tmp_path: Path) -> None:
    # Execute
    paths = init_certs(tmp_path / "certs")

    # Assert: the CA and the SuperLink's pair, nothing of any node
    assert sorted(p.name for p in paths.root.iterdir()) == ["ca.key", "ca.pem", "server.key",
                                                           "server.pem"]
    assert not hasattr(paths, "node_keys")


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty: make one on this node with `hermes-fed node keygen"),
    (b"ecdsa-sha2-nistp384 AAAAE2VjZHNh", "is a public key: --auth-key takes the private key"),
    (b"not a key", "is not an unencrypted private key"),
])
def test_a_bad_private_key_is_refused_before_flower_sees_it(tmp_path: Path, content: bytes,
                                                            message: str) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message):
        check_private_key(path)


def test_an_rsa_key_is_refused_for_node_authentication(tmp_path: Path) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(rsa.generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="needs an ECDSA key"):
        check_private_key(path)


def test_registering_a_private_key_by_mistake_is_refused(tmp_path: Path) -> None:
    private, _ = make_node_key(tmp_path)
    with pytest.raises(ConfigError, match="is a PRIVATE key: register the node's public key"):
        check_public_key(private)


def test_a_node_missing_the_ca_is_told_to_ask_the_coordinator_not_to_make_one(
        tmp_path: Path) -> None:
    # Execute
    with pytest.raises(ConfigError) as missing:
        check_ca_certificate(tmp_path / "ca.pem")
    (tmp_path / "empty.pem").write_bytes(b"")
    with pytest.raises(ConfigError) as empty:
        check_ca_certificate(tmp_path / "empty.pem")

    # Assert
    for caught in (missing, empty):
        assert "ask the coordinator's operator for its ca.pem" in str(caught.value)
        assert "certs init` on the coordinator" in str(caught.value)


def test_start_supernode_needs_the_ca_only_and_checks_it_first(tmp_path: Path) -> None:
    # Prepare: a node directory with its own key and an empty "ca.pem"; no server.* at all
    private, _ = make_node_key(tmp_path / "keys")
    (tmp_path / "ca.pem").write_bytes(b"")

    # Execute / Assert: refused before any process starts
    with pytest.raises(FederationError, match="coordinator's operator"):
        start_supernode(tmp_path / "home", "127.0.0.1:1", {"tenant-id": "acme"},
                        ca_file=tmp_path / "ca.pem", auth_key=private)
    with pytest.raises(FederationError, match="node authentication needs TLS"):
        start_supernode(tmp_path / "home", "127.0.0.1:1", {"tenant-id": "acme"},
                        auth_key=private)
    assert not (tmp_path / "home").exists()


def test_the_superlink_files_are_read_not_just_found(tmp_path: Path) -> None:
    # Prepare: a real certs init directory whose server.key is then emptied
    paths = init_certs(tmp_path / "certs")
    assert tls_files(paths.root) == (paths.ca_cert, paths.server_cert, paths.server_key)
    paths.server_key.chmod(0o600)
    paths.server_key.write_bytes(b"")

    # Execute / Assert
    with pytest.raises(FederationError, match=r"server.key is empty: run `hermes-fed certs "
                                              r"init .*` on the coordinator's machine"):
        tls_files(paths.root)


@pytest.mark.parametrize(("log", "expected"), [
    (REFUSED_KEY, "the coordinator refused this node's key: register /n/keys/node.pub with "
                  "`hermes-fed coordinator register-node`"),
    (NO_KEY, "the coordinator accepts only registered nodes"),
    (WRONG_CA, "the coordinator's TLS certificate at 127.0.0.1:9092 is not signed by "
               "/n/keys/ca.pem: get the coordinator's ca.pem from its operator"),
    ("Exit Code: 1\nsomething else", "the SuperNode ended before the coordinator accepted it"),
])
def test_a_refusal_is_told_in_words_that_name_who_can_fix_it(log: str, expected: str) -> None:
    said = refusal(log, superlink="127.0.0.1:9092", ca_file=Path("/n/keys/ca.pem"),
                   auth_key=Path("/n/keys/node.key"))
    assert said.startswith(expected)
