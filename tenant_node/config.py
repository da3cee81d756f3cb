"""The node's configuration: one TOML file, validated dataclasses, every default documented.

Example ``node.toml``::

    tenant_id = "acme"
    store_url = "sqlite:///var/acme/events.db"
    keyring_path = "var/acme/keyring.json"
    listen = "127.0.0.1:50061"
    token_env = "HERMES_FED_NODE_TOKEN"     # or: token = "..."
    metrics_port = 9464

    [tls]                                   # optional; absent = plaintext on loopback only
    cert_file = "node.crt"
    key_file = "node.key"

    [redaction]                             # hermes_fed.privacy.RedactionConfig
    deny_terms = ["Acme Corp"]

    [quality.tiers]                         # hermes_fed.quality.QualityConfig
    silver_from = 0.35

    [gateway]                               # GatewayConfig: hermes-fed node gateway
    listen = "127.0.0.1:8088"
    upstream_url = "http://127.0.0.1:8000"  # hermes-fed model serve, or vLLM

Relative paths are resolved against the directory of the TOML file.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hermes_fed.errors import ConfigError
from hermes_fed.quality.config import QualityConfig

TOKEN_ENV = "HERMES_FED_NODE_TOKEN"
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "str | None": (str, type(None)),
}


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """TLS for the ingest port (both files set) or none (both empty)."""

    cert_file: str = field(default="", metadata={"help": "PEM certificate chain; default none"})
    key_file: str = field(default="", metadata={"help": "PEM private key; default none"})
    client_ca_file: str = field(
        default="", metadata={"help": "PEM CA bundle: when set, clients must present a "
                                      "certificate it signed (mutual TLS); default none"})

    def __post_init__(self) -> None:
        if bool(self.cert_file) != bool(self.key_file):
            raise ConfigError(f"tls: set both cert_file and key_file, got cert_file="
                              f"{self.cert_file!r} key_file={self.key_file!r}")
        if self.client_ca_file and not self.cert_file:
            raise ConfigError("tls.client_ca_file needs cert_file and key_file")
        for name in ("cert_file", "key_file", "client_ca_file"):
            path = getattr(self, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"tls.{name}: no such file {path!r}")

    @property
    def enabled(self) -> bool:
        return bool(self.cert_file)


UPSTREAM_KEY_ENV = "HERMES_FED_UPSTREAM_API_KEY"


CAPTURE_SYNC = ("commit", "behind")


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The ``[gateway]`` table: ``hermes-fed node gateway`` (tenant_node/gateway)."""

    listen: str = field(
        default="127.0.0.1:8088", metadata={"help": "HTTP host:port of the OpenAI-compatible "
                                                   "gateway; default 127.0.0.1:8088"})
    upstream_url: str = field(
        default="http://127.0.0.1:8000", metadata={"help": "base URL of the upstream OpenAI-"
                                                          "compatible server (model serve, "
                                                          "vLLM); default http://127.0.0.1:8000"})
    upstream_timeout_s: float = field(
        default=120.0, metadata={"help": "seconds an upstream call may take (and between "
                                        "streamed chunks); default 120"})
    upstream_api_key: str = field(
        default="", metadata={"help": "bearer token for the upstream; prefer "
                                     "upstream_api_key_env"}, repr=False)
    upstream_api_key_env: str = field(
        default=UPSTREAM_KEY_ENV, metadata={"help": f"environment variable holding the upstream "
                                                    f"token when upstream_api_key is empty; "
                                                    f"default {UPSTREAM_KEY_ENV}"})
    base_model: str = field(
        default="base", metadata={"help": "the upstream's name for the base model (a plan's "
                                         "'base' version); default 'base'"})
    model_name: str = field(
        default="hermes-fed", metadata={"help": "the model name agents send (a plan's versions "
                                               "are accepted too; the plan routes either "
                                               "way); default 'hermes-fed'"})
    adapters_dir: str = field(
        default="", metadata={"help": "where adapter versions live (<dir>/<version>/, PEFT); "
                                     "default <data_dir>/adapters"})
    upstream_adapters_dir: str = field(
        default="", metadata={"help": "the same directory as the upstream sees it (another "
                                     "host or container); default adapters_dir"})
    max_body_bytes: int = field(
        default=10 * 1024 * 1024, metadata={"help": "largest request body accepted; "
                                                    "default 10 MiB"})
    retry_window_s: float = field(
        default=600.0, metadata={"help": "a user re-sending a branch's last user message "
                                        "within this many seconds is a retry; default 600"})
    plan_poll_s: float = field(
        default=1.0, metadata={"help": "seconds between looks for a new traffic plan in the "
                                      "log; default 1"})
    max_capture_batch: int = field(
        default=512, metadata={"help": "most calls captured in one group commit; default 512"})
    session_cache: int = field(
        default=20000, metadata={"help": "sessions kept in memory for assembly (others are "
                                        "rebuilt from the log); default 20000"})
    redact_ahead: bool = field(
        default=True, metadata={"help": "detect personal data in a call's new messages while "
                                       "the upstream answers (nothing is written before the "
                                       "answer's capture); default true"})
    capture_sync: str = field(
        default="commit", metadata={"help": "when a SQLite log's capture reaches the disk: "
                                           "'commit' (within the commit, as the node's "
                                           "sqlite_synchronous says: FULL by default, an "
                                           "fsync before the answer is released) or "
                                           "'behind' (the commit writes to the OS, which "
                                           "a killed gateway cannot lose, and the answer is "
                                           "released; a thread fsyncs the WAL right "
                                           "after, so a power cut can lose only the calls "
                                           "answered during that fsync); default 'commit'"})
    capture_process: bool = field(
        default=True, metadata={"help": "redact and append the captures of concurrent calls "
                                       "in a child process, on a second core (a lone call "
                                       "is captured in the gateway: no hand-off); each "
                                       "answer still waits for its commit; default true"})
    default_task_type: str = field(
        default="chat", metadata={"help": "task_type of captured trajectories when the call "
                                         "has no X-Hermes-Task-Type; default 'chat'"})
    token: str = field(
        default="", metadata={"help": "bearer token agents send (their OpenAI api_key); "
                                     "default the node's token"}, repr=False)

    def __post_init__(self) -> None:
        for f in fields(self):
            kinds = _KINDS.get(str(f.type))
            value = getattr(self, f.name)
            if kinds and not (isinstance(value, kinds) and not (
                    isinstance(value, bool) and bool not in kinds)):
                raise ConfigError(f"gateway.{f.name} must be {f.type}, got {value!r}")
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"gateway.listen must be host:port, got {self.listen!r}")
        if not self.upstream_url.startswith(("http://", "https://")):
            raise ConfigError(f"gateway.upstream_url must be an http(s) URL, got "
                              f"{self.upstream_url!r}")
        for name in ("upstream_timeout_s", "retry_window_s", "plan_poll_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"gateway.{name} must be > 0, got {getattr(self, name)!r}")
        for name, low in (("max_body_bytes", 1024), ("max_capture_batch", 1),
                          ("session_cache", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"gateway.{name} must be >= {low}, got {getattr(self, name)!r}")
        for name in ("base_model", "model_name", "default_task_type"):
            if not getattr(self, name):
                raise ConfigError(f"gateway.{name} must not be empty")
        if self.token and len(self.token) < 16:
            raise ConfigError("gateway.token must be at least 16 characters")
        if self.capture_sync not in CAPTURE_SYNC:
            raise ConfigError(f"gateway.capture_sync must be one of {', '.join(CAPTURE_SYNC)}, "
                              f"got {self.capture_sync!r}")

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0]

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    def resolved_upstream_key(self) -> str:
        return self.upstream_api_key or os.environ.get(self.upstream_api_key_env, "")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything ``hermes-fed node serve`` needs."""

    tenant_id: str = field(metadata={"help": "the tenant this node serves (required)"})
    store_url: str = field(
        default="", metadata={"help": "event store URL; default sqlite:///<data_dir>/events.db"})
    store_schema: str | None = field(
        default=None, metadata={"help": "PostgreSQL schema isolating this tenant; default none"})
    data_dir: str = field(
        default="var", metadata={"help": "directory for the default SQLite file and key ring; "
                                        "default 'var' beside the config file"})
    keyring_path: str = field(
        default="", metadata={"help": "tenant key ring JSON (created on first start if "
                                     "missing); default <data_dir>/keyring.json"})
    listen: str = field(
        default="127.0.0.1:50061", metadata={"help": "gRPC host:port; default 127.0.0.1:50061"})
    token: str = field(
        default="", metadata={"help": "bearer token every call must carry; prefer token_env"},
        repr=False)
    token_env: str = field(
        default=TOKEN_ENV, metadata={"help": f"environment variable holding the token when "
                                             f"`token` is empty; default {TOKEN_ENV}"})
    tls: TlsConfig = field(default_factory=TlsConfig, metadata={"help": "see TlsConfig"})
    allow_insecure_remote: bool = field(
        default=False, metadata={"help": "allow listening beyond loopback without TLS; "
                                        "default false"})
    max_event_bytes: int = field(
        default=256 * 1024, metadata={"help": "largest encoded event accepted; default 256 KiB"})
    max_batch_events: int = field(
        default=1000, metadata={"help": "most events in one AppendEvents batch; default 1000"})
    workers: int = field(default=8, metadata={"help": "gRPC handler threads; default 8"})
    group_commit: bool = field(
        default=True, metadata={"help": "append the batches of concurrent AppendEvents calls "
                                        "in one transaction (one commit, one fsync; each batch "
                                        "still all or nothing, a failed group retried batch by "
                                        "batch); default true"})
    metrics_host: str = field(
        default="127.0.0.1", metadata={"help": "Prometheus HTTP address; default 127.0.0.1"})
    metrics_port: int = field(
        default=9464, metadata={"help": "Prometheus HTTP port; 0 disables; default 9464"})
    projections: tuple[str, ...] = field(
        default=(), metadata={"help": "projections kept caught up, as 'module:Class' "
                                     "(constructed without arguments); default none"})
    projection_interval_s: float = field(
        default=0.5, metadata={"help": "seconds between projection catch-ups; default 0.5"})
    shutdown_grace_s: float = field(
        default=10.0, metadata={"help": "seconds in-flight calls get to finish on SIGTERM; "
                                       "default 10"})
    redaction: Mapping[str, Any] = field(
        default_factory=dict, metadata={"help": "the [redaction] table, passed to "
                                                "hermes_fed.privacy.RedactionConfig"})
    quality: QualityConfig = field(
        default_factory=QualityConfig, metadata={
            "help": "the [quality] table (hermes_fed.quality.QualityConfig: implicit weights, "
                    "combine, tiers, selection, trigger, judge_http), used wherever the node "
                    "scores, selects or decides to train: the daemon's quality projection, "
                    "node status/train, and log/quality commands given --config"})
    sqlite_synchronous: str = field(
        default="FULL", metadata={"help": "SQLite store durability: FULL (a commit survives a "
                                         "power cut: one fsync per commit), NORMAL (WAL: "
                                         "survives a killed process, kill -9 included; an OS "
                                         "crash may lose the last commits); default FULL"})
    gateway: GatewayConfig = field(default_factory=GatewayConfig,
                                   metadata={"help": "the [gateway] table, see GatewayConfig"})

    def __post_init__(self) -> None:
        for f in fields(self):
            kinds = _KINDS.get(str(f.type))
            value = getattr(self, f.name)
            if kinds and not (isinstance(value, kinds) and not (
                    isinstance(value, bool) and bool not in kinds)):
                raise ConfigError(f"{f.name} must be {f.type}, got {value!r}")
        if not self.tenant_id or len(self.tenant_id) > 64:
            raise ConfigError(f"tenant_id must be 1..64 characters, got {self.tenant_id!r}")
        host, sep, port = self.listen.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ConfigError(f"listen must be host:port, got {self.listen!r}")
        if host not in _LOOPBACK and not self.tls.enabled and not self.allow_insecure_remote:
            raise ConfigError(f"listen={self.listen!r} is beyond loopback: configure [tls] "
                              "(or set allow_insecure_remote = true)")
        if not self.resolved_token():
            raise ConfigError(f"no token: set `token` or the environment variable "
                              f"{self.token_env!r}")
        if len(self.resolved_token()) < 16:
            raise ConfigError("token must be at least 16 characters")
        for name, low in (("max_event_bytes", 64), ("max_batch_events", 1), ("workers", 1)):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be >= {low}, got {getattr(self, name)!r}")
        if not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"metrics_port must be 0..65535, got {self.metrics_port!r}")
        if self.projection_interval_s <= 0 or self.shutdown_grace_s < 0:
            raise ConfigError(
                f"projection_interval_s must be > 0 and shutdown_grace_s >= 0, got "
                f"{self.projection_interval_s!r} and {self.shutdown_grace_s!r}")
        for target in self.projections:
            if ":" not in target:
                raise ConfigError(f"projections: expected 'module:Class', got {target!r}")
        if self.sqlite_synchronous not in ("FULL", "NORMAL", "EXTRA"):
            raise ConfigError(f"sqlite_synchronous must be FULL, NORMAL or EXTRA, got "
                              f"{self.sqlite_synchronous!r}")
        if self.gateway.host not in _LOOPBACK and not self.tls.enabled \
                and not self.allow_insecure_remote:
            raise ConfigError(f"gateway.listen={self.gateway.listen!r} is beyond loopback: "
                              "configure [tls] (or set allow_insecure_remote = true)")

    def resolved_token(self) -> str:
        return self.token or os.environ.get(self.token_env, "")

    @property
    def resolved_store_url(self) -> str:
        return self.store_url or f"sqlite:///{Path(self.data_dir) / 'events.db'}"

    @property
    def resolved_keyring_path(self) -> Path:
        return Path(self.keyring_path) if self.keyring_path else Path(self.data_dir) / "keyring.json"

    @property
    def resolved_adapters_dir(self) -> Path:
        return Path(self.gateway.adapters_dir or Path(self.data_dir) / "adapters")

    def resolved_gateway_token(self) -> str:
        return self.gateway.token or self.resolved_token()


_PATH_KEYS = ("data_dir", "keyring_path")
_TLS_PATH_KEYS = ("cert_file", "key_file", "client_ca_file")


def _resolve(base: Path, value: str) -> str:
    return str(base / value) if value and not Path(value).is_absolute() else value


def node_config_from_mapping(doc: Mapping[str, Any], base_dir: Path | None = None) -> NodeConfig:
    """Build a :class:`NodeConfig` from a parsed TOML document; unknown keys are errors."""
    known = {f.name for f in fields(NodeConfig)}
    unknown = sorted(set(doc) - known)
    if unknown:
        raise ConfigError(f"unknown keys {unknown!r}; known: {sorted(known)!r}")
    values = dict(doc)
    base = base_dir or Path.cwd()
    tls_table = values.pop("tls", {})
    if not isinstance(tls_table, Mapping):
        raise ConfigError(f"[tls] must be a table, got {type(tls_table).__name__}")
    tls_known = {f.name for f in fields(TlsConfig)}
    if set(tls_table) - tls_known:
        raise ConfigError(f"tls: unknown keys {sorted(set(tls_table) - tls_known)!r}")
    tls = TlsConfig(**{k: _resolve(base, str(v)) for k, v in tls_table.items()})
    gateway = _gateway_config(values.pop("gateway", {}), base)
    for key in _PATH_KEYS:
        if key in values:
            values[key] = _resolve(base, str(values[key]))
    values.setdefault("data_dir", _resolve(base, "var"))
    store_url = str(values.get("store_url", ""))
    prefix = "sqlite:///"
    if store_url.startswith(prefix) and not store_url.startswith(prefix + "/"):
        values["store_url"] = prefix + _resolve(base, store_url[len(prefix):])
    if "projections" in values:
        values["projections"] = tuple(values["projections"])
    if "quality" in values:
        quality_table = values["quality"]
        if not isinstance(quality_table, Mapping):
            raise ConfigError(f"[quality] must be a table, got {type(quality_table).__name__}")
        values["quality"] = QualityConfig.from_mapping(quality_table)
    try:
        return NodeConfig(tls=tls, gateway=gateway, **values)
    except TypeError as exc:
        raise ConfigError(f"bad configuration: {exc}") from None


def _gateway_config(table: Any, base: Path) -> GatewayConfig:
    if not isinstance(table, Mapping):
        raise ConfigError(f"[gateway] must be a table, got {type(table).__name__}")
    known = {f.name for f in fields(GatewayConfig)}
    if set(table) - known:
        raise ConfigError(f"gateway: unknown keys {sorted(set(table) - known)!r}; "
                          f"known: {sorted(known)!r}")
    values = dict(table)
    if values.get("adapters_dir"):
        values["adapters_dir"] = _resolve(base, str(values["adapters_dir"]))
    return GatewayConfig(**values)


@dataclass(frozen=True, slots=True)
class NodeServing:
    """What the node's ClientApp needs of its TOML to apply a delivered plan: where adapter
    versions live and, when the TOML has a ``[gateway]`` table, the upstream to load them
    into (``None``: no gateway here; adapters are still installed and the plan recorded)."""

    adapters_dir: Path
    gateway: GatewayConfig | None


def _read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's document; a missing or malformed file is a ConfigError naming it."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def node_serving(path: str | Path) -> NodeServing:
    """The serving part of a node TOML: ``data_dir`` and ``[gateway]`` only, read with
    :func:`load_node_config`'s rules (so no ingest token is needed, as for ``node join``)."""
    path = Path(path)
    doc = _read_toml(path)
    base = path.resolve().parent
    data_dir = doc.get("data_dir") or "var"
    if not isinstance(data_dir, str):
        raise ConfigError(f"{path}: data_dir must be a string, got {data_dir!r}")
    gateway = _gateway_config(doc["gateway"], base) if "gateway" in doc else None
    adapters = (gateway.adapters_dir if gateway is not None and gateway.adapters_dir
                else str(Path(_resolve(base, data_dir)) / "adapters"))
    return NodeServing(Path(adapters), gateway)


def load_node_config(path: str | Path) -> NodeConfig:
    """Read and validate a node TOML file."""
    path = Path(path)
    doc = _read_toml(path)
    return node_config_from_mapping(doc, path.resolve().parent)
