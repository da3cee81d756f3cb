"""``hermes-fed certs init DIR``: the coordinator's private CA and its server certificate.

Run on the coordinator's machine. TLS on every link to the SuperLink (DESIGN.md §9): the
SuperLink serves ``server.pem``/``server.key`` (SAN ``IP:127.0.0.1`` and ``DNS:localhost``
by default, signed by ``ca.pem``); SuperNodes verify it against ``ca.pem``, which the
coordinator's operator hands to every tenant (it is public). ``ca.key`` and ``server.key``
never leave this machine.

No node key is made here: a node makes its own key pair on its own machine
(``hermes-fed node keygen``, :mod:`hermes_fed.federation.node_keys`) and only its public
key comes to the coordinator (``hermes-fed coordinator register-node KEY.pub``); a
coordinator that generated nodes' private keys would have to ship secrets it should never
hold.

Private keys are written with mode 0600. Existing files are never overwritten: ``init``
refuses a directory that already holds a CA, so a re-run cannot silently re-key a
federation.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hermes_fed.errors import ConfigError


@dataclass(frozen=True, slots=True)
class CertsConfig:
    """What ``certs init`` makes."""

    days: int = field(default=365, metadata={"help": "validity of every certificate"})
    hosts: tuple[str, ...] = field(default=("127.0.0.1", "localhost"),
                                   metadata={"help": "SANs of the server certificate"})

    def __post_init__(self) -> None:
        if self.days < 1:
            raise ConfigError(f"certs days must be >= 1, got {self.days!r}")
        if not self.hosts:
            raise ConfigError("certs hosts must name at least one SAN, got ()")


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where ``init`` wrote everything."""

    root: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "hermes-fed"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(path, flags, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _issue(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
           issuer_key: ec.EllipticCurvePrivateKey, days: int, *, ca: bool,
           sans: Sequence[str] = (), usage: Sequence[x509.ObjectIdentifier] = ()
           ) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None),
                              critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName([_san(h) for h in sans]),
                                        critical=False)
    if usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usage)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def init_certs(root: Path, config: CertsConfig | None = None) -> CertPaths:
    """Create the CA and the SuperLink's server certificate under ``root``.

    Raises
    ------
    ConfigError
        When ``root`` already holds a CA (nothing is overwritten).
    """
    cfg = config or CertsConfig()
    root = root.resolve()
    ca_cert_path, ca_key_path = root / "ca.pem", root / "ca.key"
    if ca_cert_path.exists() or ca_key_path.exists():
        raise ConfigError(f"{root} already holds a CA ({ca_cert_path.name}); use a new directory")
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_cert = _issue("hermes-fed CA", ca_key, _name("hermes-fed CA"), ca_key, cfg.days, ca=True)
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = _issue("hermes-fed coordinator", server_key, ca_cert.subject, ca_key,
                         cfg.days, ca=False, sans=cfg.hosts,
                         usage=(ExtendedKeyUsageOID.SERVER_AUTH,))
    pem = serialization.Encoding.PEM
    _write(ca_key_path, _key_pem(ca_key), private=True)
    _write(ca_cert_path, ca_cert.public_bytes(pem))
    _write(root / "server.key", _key_pem(server_key), private=True)
    _write(root / "server.pem", server_cert.public_bytes(pem))
    return CertPaths(root=root, ca_cert=ca_cert_path, ca_key=ca_key_path,
                     server_cert=root / "server.pem", server_key=root / "server.key")


def _init(args: argparse.Namespace) -> int:
    hosts = tuple(args.host) if args.host else CertsConfig().hosts
    paths = init_certs(Path(args.dir), CertsConfig(days=args.days, hosts=hosts))
    print(f"CA certificate {paths.ca_cert}: give it to every tenant's operator (public; "
          "`hermes-fed node join --ca`)")
    print(f"server certificate {paths.server_cert} (SAN {', '.join(hosts)})")
    print(f"private keys {paths.ca_key} and {paths.server_key}: they never leave this machine")
    print("nodes make their own key pairs (`hermes-fed node keygen DIR`); register each "
          "public key with `hermes-fed coordinator register-node --dir D KEY.pub`")
    return 0


def register(parser: argparse.ArgumentParser) -> None:
    """The ``certs`` group."""
    sub = parser.add_subparsers(dest="certs_command", metavar="SUBCOMMAND")
    p = sub.add_parser("init", help="the coordinator's CA and its SuperLink certificate "
                                    "(run on the coordinator)")
    p.add_argument("dir", help="directory to create them in (must not hold a CA yet)")
    p.add_argument("--host", action="append", default=None,
                   help="a SAN of the server certificate (repeat); default 127.0.0.1, "
                        "localhost")
    p.add_argument("--days", type=int, default=365, help="validity in days; default 365")
    p.set_defaults(func=_init)
