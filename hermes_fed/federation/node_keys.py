"""The files of a federation's trust: a node's key pair, the coordinator's CA certificate.

Who holds what (DESIGN.md §9, TLS + node authentication):

* the **coordinator** makes its CA and the SuperLink's certificate (``hermes-fed certs
  init``); ``ca.key`` and ``server.key`` never leave its machine. ``ca.pem`` is public:
  its operator hands it to every tenant;
* each **node** makes its own ECDSA P-384 key pair on its own machine
  (:func:`make_node_key`, ``hermes-fed node keygen``); the private key never leaves it,
  the public key goes to the coordinator's operator, who registers it
  (``hermes-fed coordinator register-node``). The node needs nothing else: ``ca.pem`` to
  verify the SuperLink, its private key to authenticate.

The ``check_*`` functions read a file's contents (a presence check passes an empty file)
and say which party can fix a bad one. Keys are OpenSSH-format ECDSA: what
``flower-supernode --auth-supernode-private-key`` and ``flwr supernode register`` read.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hermes_fed.errors import ConfigError

PRIVATE_KEY_FILE = "node.key"
PUBLIC_KEY_FILE = "node.pub"
GET_CA = ("ask the coordinator's operator for its ca.pem (made by `hermes-fed certs init` "
          "on the coordinator; it is public) and pass it with --ca; a CA made on this "
          "machine is one the coordinator does not use")
MAKE_KEY = ("make one on this node with `hermes-fed node keygen DIR` and have DIR/"
            f"{PUBLIC_KEY_FILE} registered with `hermes-fed coordinator register-node`")


def _read(path: Path, what: str, advice: str) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} is missing: {advice}") from None
    except IsADirectoryError:
        raise ConfigError(f"{what} {path} is a directory, not a file: {advice}") from None
    except PermissionError:
        raise ConfigError(f"{what} {path} is not readable by this user") from None
    if not data.strip():
        raise ConfigError(f"{what} {path} is empty: {advice}")
    return data


def public_key_path(private_key: Path) -> Path:
    """The public key written beside ``private_key`` by :func:`make_node_key`."""
    return private_key.with_suffix(".pub")


def make_node_key(directory: Path) -> tuple[Path, Path]:
    """Write a new ECDSA P-384 key pair: ``node.key`` (mode 0600) and ``node.pub``.

    Raises
    ------
    ConfigError
        When either file exists already (a key is never overwritten: the coordinator
        would refuse the node until the new one is registered).
    """
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / PRIVATE_KEY_FILE, directory / PUBLIC_KEY_FILE
    for path in (private, public):
        if path.exists():
            raise ConfigError(f"{path} exists already: this node has a key (a new one would "
                              "have to be registered again); use another directory")
    key = ec.generate_private_key(ec.SECP384R1())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.OpenSSH,
                                   serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH) + b"\n")
    return private, public


def check_private_key(path: Path) -> Path:
    """``path`` holds an unencrypted ECDSA private key (OpenSSH or PEM); returns it."""
    data = _read(path, "the node's private key", MAKE_KEY)
    try:
        key = (serialization.load_ssh_private_key(data, None) if b"OPENSSH" in data
               else serialization.load_pem_private_key(data, None))
    except (ValueError, TypeError, UnsupportedAlgorithm):
        if data.lstrip().startswith(b"ecdsa-") or data.lstrip().startswith(b"ssh-"):
            raise ConfigError(f"{path} is a public key: --auth-key takes the private key "
                              f"({PRIVATE_KEY_FILE}), the coordinator registers the public "
                              "one") from None
        raise ConfigError(f"{path} is not an unencrypted private key: {MAKE_KEY}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{path} is a {type(key).__name__}; node authentication needs an "
                          f"ECDSA key: {MAKE_KEY}")
    return path


def check_public_key(path: Path) -> Path:
    """``path`` holds an ECDSA public key in OpenSSH format; returns it.

    A private key given by mistake is refused before anything reads it further: it must
    not travel to the coordinator.
    """
    data = _read(path, "the node's public key",
                 f"the node's operator makes it with `hermes-fed node keygen DIR` "
                 f"(DIR/{PUBLIC_KEY_FILE})")
    if b"PRIVATE KEY" in data:
        raise ConfigError(f"{path} is a PRIVATE key: register the node's public key "
                          f"({PUBLIC_KEY_FILE}); the private key must stay on the node")
    try:
        key = serialization.load_ssh_public_key(data.strip())
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(f"{path} is not an OpenSSH public key (the {PUBLIC_KEY_FILE} of "
                          "`hermes-fed node keygen`)") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ConfigError(f"{path} is a {type(key).__name__}; node authentication needs an "
                          "ECDSA key (`hermes-fed node keygen`)")
    return path


def check_certificate(path: Path, what: str, advice: str) -> Path:
    """``path`` holds at least one PEM certificate; returns it."""
    data = _read(path, what, advice)
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ConfigError(f"{what} {path} is not a PEM certificate: {advice}") from None
    return path


def check_ca_certificate(path: Path) -> Path:
    """The coordinator's ``ca.pem`` as a node holds it; the advice names who has it."""
    return check_certificate(path, "the coordinator's CA certificate", GET_CA)


def check_private_key_pem(path: Path, what: str, advice: str) -> Path:
    """``path`` holds an unencrypted PEM private key (a TLS server key); returns it."""
    data = _read(path, what, advice)
    try:
        serialization.load_pem_private_key(data, None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ConfigError(f"{what} {path} is not an unencrypted PEM private key: "
                          f"{advice}") from None
    return path
