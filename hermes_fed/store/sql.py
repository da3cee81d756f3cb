"""Opening a tenant's log by URL: SQLite (the default, one file per tenant, WAL), PostgreSQL,
or memory.

``SqlEventStore`` is the name the rest of hermes-fed types its stores with (projections
write their tables through its ``engine``); it is the :class:`EventLog` whose backend the
URL names.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from hermes_fed.errors import CorruptEventError, IntegrityError, ProgrammingError
from hermes_fed.events import DEFAULT_CATALOG, Catalog

from .backend import Backend
from .event_log import EventLog
from .keyring import Keyring
from .memory import MemoryBackend, memory_log
from .port import Gate
from .postgres import PostgresBackend
from .sql_backend import SqlBackend
from .sqlite import SYNCHRONOUS, SqliteBackend

log = logging.getLogger(__name__)

MEMORY = "memory://"


def backend_for(url: str, tenant_id: str, *, schema: str | None = None, synchronous: str = "FULL",
                autocheckpoint: bool = True) -> Backend:
    """The backend of ``url``: ``sqlite:///path``, ``postgresql+psycopg://...`` (``schema``:
    the tenant's PostgreSQL schema), ``memory://name`` (see ``memory.py``).
    ``autocheckpoint=False``: SQLite commits leave the WAL's checkpoints to the caller
    (:class:`~hermes_fed.store.wal_checkpoint.WalCheckpointer`); other databases ignore it."""
    if synchronous not in SYNCHRONOUS:
        raise ValueError(f"synchronous must be FULL, NORMAL or EXTRA, got {synchronous!r}")
    if url.startswith(MEMORY):
        return MemoryBackend(memory_log(url[len(MEMORY) :]), tenant_id)
    engine = sa.create_engine(url)
    if engine.dialect.name == "sqlite":
        return SqliteBackend(engine, tenant_id, synchronous, autocheckpoint)
    if engine.dialect.name == "postgresql":
        return PostgresBackend(engine, tenant_id, schema)
    engine.dispose()
    raise ValueError(f"unsupported database {engine.dialect.name!r}: use sqlite, postgresql or memory")


class SqlEventStore(EventLog):
    """The :class:`EventLog` at a URL (``sqlite``, ``postgresql`` or ``memory``)."""

    def __init__(
        self,
        url: str,
        tenant_id: str,
        *,
        keyring: Keyring | None = None,
        schema: str | None = None,
        gate: Gate | None = None,
        catalog: Catalog = DEFAULT_CATALOG,
        synchronous: str = "FULL",
        autocheckpoint: bool = True,
    ) -> None:
        backend = backend_for(url, tenant_id, schema=schema, synchronous=synchronous,
                              autocheckpoint=autocheckpoint)
        try:
            super().__init__(backend, tenant_id, keyring=keyring, gate=gate, catalog=catalog)
        except BaseException:
            backend.close()
            raise

    @property
    def dialect(self) -> str:
        """``sqlite``, ``postgresql`` or ``memory``."""
        return self.backend.name

    @property
    def schema(self) -> str | None:
        """The tenant's PostgreSQL schema (None: the default search path)."""
        return self.backend.schema if isinstance(self.backend, PostgresBackend) else None

    @property
    def engine(self) -> sa.Engine:
        """The database of the log, where projections keep their tables."""
        if not isinstance(self.backend, SqlBackend):
            raise ProgrammingError(
                "a memory log has no database for read models: projections need a sqlite or postgresql store"
            )
        return self.backend.engine


def open_store(
    url: str,
    tenant_id: str,
    *,
    keyring: Keyring | None = None,
    schema: str | None = None,
    gate: Gate | None = None,
    catalog: Catalog = DEFAULT_CATALOG,
    synchronous: str = "FULL",
    autocheckpoint: bool = True,
) -> SqlEventStore:
    """Open (creating if needed) the tenant's log at ``url``.

    ``sqlite:///path/tenant.db`` (the default, one file per tenant),
    ``postgresql+psycopg://user@host:5432/db`` (with ``schema`` to isolate a tenant), or
    ``memory://name`` (this process only; see ``hermes_fed.store.memory``).
    ``autocheckpoint``: see :func:`backend_for`.
    """
    if keyring is None:
        log.warning("event store for tenant=%s opened WITHOUT encryption at rest (no key ring)", tenant_id)
    return SqlEventStore(
        url, tenant_id, keyring=keyring, schema=schema, gate=gate, catalog=catalog, synchronous=synchronous,
        autocheckpoint=autocheckpoint,
    )


__all__ = ["CorruptEventError", "IntegrityError", "SqlEventStore", "backend_for", "open_store"]
