"""Read models rebuilt from the log, checkpointed by position (invariant 5).

A :class:`Projection` owns some tables (its ``metadata``) and one handler per event type it
cares about. :class:`ProjectionRunner` applies events after the projection's checkpoint and
stores the new checkpoint **in the same transaction** as the read-model rows, so a crash
can never apply an event twice or skip one. Handlers must be pure functions of the events
(no clocks, no randomness, no reads outside their own tables): dropping every table and
rebuilding then gives identical rows.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping

import sqlalchemy as sa

from hermes_fed.events import StoredEvent
from hermes_fed.store.sql import SqlEventStore
from hermes_fed.store.sqlite import create_tables

log = logging.getLogger(__name__)

Handler = Callable[[sa.Connection, StoredEvent], None]

_checkpoints_md = sa.MetaData()
checkpoints = sa.Table(
    "projection_checkpoints",
    _checkpoints_md,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)


class Projection(ABC):
    """A read model: tables plus a handler per event type."""

    name: str
    version: int = 1  # bump when handlers change: the runner rebuilds on a version change
    metadata: sa.MetaData

    @abstractmethod
    def handlers(self) -> Mapping[str, Handler]:
        """Event type -> handler(connection, event)."""


class ProjectionRunner:
    """Keeps one projection up to date with one tenant's log."""

    def __init__(
        self,
        store: SqlEventStore,
        projection: Projection,
        *,
        engine: sa.Engine | None = None,
        batch_size: int = 1000,
    ) -> None:
        self.store = store
        self.projection = projection
        self.engine = engine or store.engine
        self.batch_size = batch_size
        self._handlers = dict(projection.handlers())
        create_tables(_checkpoints_md, self.engine)
        create_tables(projection.metadata, self.engine)
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(checkpoints.c.version).where(checkpoints.c.name == projection.name)
            ).first()
        if row is not None and row[0] != projection.version:
            log.info(
                "projection=%s version %s -> %s: rebuilding", projection.name, row[0], projection.version
            )
            self.rebuild()

    def checkpoint(self) -> int:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(checkpoints.c.position).where(checkpoints.c.name == self.projection.name)
            ).scalar()
        return int(value or 0)

    def catch_up(self) -> int:
        """Apply every event after the checkpoint; returns how many were read."""
        total = 0
        position = self.checkpoint()
        while True:
            # Lazy: an event whose type has no handler is routed on its envelope and never
            # decrypted; a handled one is decoded when its handler first reads the data.
            batch = list(self.store.read(after=position, limit=self.batch_size, lazy=True))
            if not batch:
                return total
            with self.engine.begin() as conn:
                for event in batch:
                    handler = self._handlers.get(event.type)
                    if handler is not None:
                        handler(conn, event)
                position = batch[-1].position
                self._save_checkpoint(conn, position)
            total += len(batch)
            if len(batch) < self.batch_size:
                return total

    def _save_checkpoint(self, conn: sa.Connection, position: int) -> None:
        name = self.projection.name
        updated = conn.execute(
            checkpoints.update()
            .where(checkpoints.c.name == name)
            .values(position=position, version=self.projection.version)
        ).rowcount
        if not updated:
            conn.execute(
                checkpoints.insert().values(name=name, position=position, version=self.projection.version)
            )

    def rebuild(self) -> int:
        """Drop the read model, recreate it, and replay the whole log."""
        with self.engine.begin() as conn:
            self.projection.metadata.drop_all(conn)
            conn.execute(checkpoints.delete().where(checkpoints.c.name == self.projection.name))
            self.projection.metadata.create_all(conn)
        return self.catch_up()

    def run(self, stop: threading.Event, poll_interval: float = 0.2) -> None:
        """Catch up until ``stop`` is set (for a daemon's background thread)."""
        while not stop.is_set():
            try:
                if self.catch_up() == 0:
                    stop.wait(poll_interval)
            except Exception:
                log.exception("projection=%s failed; retrying", self.projection.name)
                stop.wait(max(poll_interval, 1.0))


def table_rows(engine: sa.Engine, metadata: sa.MetaData) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of a read model, sorted (for rebuild-equality checks)."""
    out: dict[str, list[tuple[object, ...]]] = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            rows = [tuple(r) for r in conn.execute(sa.select(table)).all()]
            out[table.name] = sorted(rows, key=repr)
    return out
