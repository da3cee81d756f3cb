"""The event store: the ``EventStore`` port, its SQLAlchemy implementation (SQLite,
PostgreSQL), the hash chain, the key ring and envelope encryption, crypto-shredding."""

from .keyring import Keyring
from .port import AppendResult, EventStore, Gate, VerifyReport
from .sql import SqlEventStore, open_store

__all__ = ["AppendResult", "EventStore", "Gate", "Keyring", "SqlEventStore", "VerifyReport", "open_store"]
