"""Where a tenant's log lives, and making sure it is there before reading it.

:class:`StoreLocation` is the store part of a node's TOML (``tenant_id``, ``store_url``,
``store_schema``, ``data_dir``, ``keyring_path``), read with the node's own rules (relative
paths against the file's directory; ``sqlite:///<data_dir>/events.db`` and
``<data_dir>/keyring.json`` by default), so ``hermes-fed log ... --config node.toml`` opens
exactly the log ``node serve`` writes. Only those keys are read: a read-only command needs
no ingest token. ``tenant_node.config.NodeConfig`` uses the same defaults (tested).

:func:`require_existing_log` is what every reading command calls first: opening a store
creates it (a SQLite file, tables, a PostgreSQL schema), so a mistyped ``--store`` would
otherwise read a brand-new empty log and report success. It refuses a missing file or
schema without creating anything (SQLite is opened read-only, PostgreSQL only inspected),
and a tenant without a single event in an existing log (naming the tenants that have some).
"""

from __future__ import annotations

import sqlite3
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hermes_fed.errors import ConfigError, HermesFedError

SQLITE_PREFIX = "sqlite:///"


class LogNotFoundError(HermesFedError):
    """The log to read does not exist, or holds no event of the tenant."""


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """A tenant's log: database URL, tenant id, PostgreSQL schema, key-ring file."""

    url: str
    tenant_id: str
    schema: str | None = None
    keyring_path: str | None = None


def resolve_path(base: Path, value: str) -> str:
    """``value`` against ``base`` unless it is absolute (or empty)."""
    return str(base / value) if value and not Path(value).is_absolute() else value


def resolve_store_url(base: Path, url: str) -> str:
    """A relative SQLite path in ``url`` against ``base``; other URLs unchanged."""
    if url.startswith(SQLITE_PREFIX) and not url.startswith(SQLITE_PREFIX + "/"):
        return SQLITE_PREFIX + resolve_path(base, url[len(SQLITE_PREFIX):])
    return url


def default_store_url(data_dir: str | Path) -> str:
    return f"{SQLITE_PREFIX}{Path(data_dir) / 'events.db'}"


def default_keyring_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "keyring.json"


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a dict; a missing or invalid file is a :class:`ConfigError`."""
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file is a directory: {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def is_node_config(doc: Mapping[str, Any]) -> bool:
    """A node TOML names its tenant; a TOML with only ``[quality]`` does not."""
    return "tenant_id" in doc


def node_store_location(path: str | Path) -> StoreLocation:
    """The log a node TOML describes (the rules of ``tenant_node.config``)."""
    path = Path(path)
    doc = read_toml(path)
    base = path.resolve().parent
    tenant = doc.get("tenant_id")
    if not isinstance(tenant, str) or not tenant:
        raise ConfigError(f"{path}: tenant_id must be a non-empty string, got {tenant!r}")
    for key in ("store_url", "data_dir", "keyring_path"):
        if not isinstance(doc.get(key, ""), str):
            raise ConfigError(f"{path}: {key} must be a string, got {doc[key]!r}")
    schema = doc.get("store_schema")
    if schema is not None and not isinstance(schema, str):
        raise ConfigError(f"{path}: store_schema must be a string, got {schema!r}")
    data_dir = resolve_path(base, doc.get("data_dir") or "var")
    url = resolve_store_url(base, doc.get("store_url", "")) or default_store_url(data_dir)
    keyring = resolve_path(base, doc.get("keyring_path", "")) or str(
        default_keyring_path(data_dir))
    return StoreLocation(url, tenant, schema or None, keyring)


def require_existing_log(url: str, tenant_id: str, schema: str | None = None) -> None:
    """Raise :class:`LogNotFoundError` unless the log at ``url`` exists and holds events of
    ``tenant_id``; creates nothing."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"store URL is not a database URL: {url!r}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        tenants = _sqlite_tenants(parsed.database or "", tenant_id)
    elif backend == "postgresql":
        tenants = _postgres_tenants(url, schema, tenant_id)
    else:
        raise ConfigError(f"unsupported database {backend!r}: use sqlite or postgresql")
    if tenants is None:
        return
    present = ", ".join(tenants) if tenants else ""
    raise LogNotFoundError(
        f"tenant {tenant_id!r} has no events in this log "
        + (f"(tenants with events: {present})" if present else "(the log holds no events)"))


def _sqlite_tenants(database: str, tenant_id: str) -> list[str] | None:
    """None when ``tenant_id`` has events; else the tenants that do (read-only)."""
    if not database or database == ":memory:":
        raise LogNotFoundError("an in-memory SQLite database holds no log to read")
    path = Path(database)
    if not path.is_file():
        raise LogNotFoundError(f"no event log at {path} (reading never creates one: check "
                               "--store, or the store_url/data_dir of --config)")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise LogNotFoundError(f"cannot open {path} read-only: {exc}") from None
    try:
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'"
                        ).fetchone() is None:
            raise LogNotFoundError(f"no event log at {path} (the file has no events table)")
        if conn.execute("SELECT 1 FROM events WHERE tenant_id = ? LIMIT 1",
                        (tenant_id,)).fetchone():
            return None
        return [r[0] for r in conn.execute(
            "SELECT DISTINCT tenant_id FROM events ORDER BY tenant_id LIMIT 20")]
    except sqlite3.DatabaseError as exc:
        raise LogNotFoundError(f"{path} is not a readable SQLite log: {exc}") from None
    finally:
        conn.close()


def _postgres_tenants(url: str, schema: str | None, tenant_id: str) -> list[str] | None:
    """As :func:`_sqlite_tenants`, by inspecting the server (nothing is created)."""
    engine = sa.create_engine(url)
    shown = sa.engine.make_url(url).render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            if schema and schema not in inspector.get_schema_names():
                raise LogNotFoundError(f"no event log in schema {schema!r} of {shown} (reading "
                                       "never creates one: check --schema or store_schema)")
            if not inspector.has_table("events", schema=schema):
                where = f"schema {schema!r}" if schema else "the default schema"
                raise LogNotFoundError(f"no event log in {where} of {shown}")
            table = sa.table("events", sa.column("tenant_id"), schema=schema)
            if conn.execute(sa.select(sa.literal(1)).select_from(table)
                            .where(table.c.tenant_id == tenant_id).limit(1)).first():
                return None
            return [str(r[0]) for r in conn.execute(
                sa.select(table.c.tenant_id).distinct().order_by(table.c.tenant_id).limit(20))]
    except sa.exc.OperationalError as exc:
        reason = str(getattr(exc, "orig", exc)).splitlines()[0][:160]
        raise LogNotFoundError(f"cannot reach {shown}: {reason}") from None
    finally:
        engine.dispose()
