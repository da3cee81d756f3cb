"""The event store: the ``EventStore`` port; the event log that validates, seals and
chains each batch (``sealing``, ``chain``, ``keyring``, ``payload``, ``verify``) over a
backend (``sqlite``, ``postgres``, ``memory``); crypto-shredding."""

from .event_log import EventLog
from .keyring import Keyring
from .port import AppendResult, EventStore, Gate, VerifyReport
from .sql import SqlEventStore, open_store

__all__ = [
    "AppendResult",
    "EventLog",
    "EventStore",
    "Gate",
    "Keyring",
    "SqlEventStore",
    "VerifyReport",
    "open_store",
]
