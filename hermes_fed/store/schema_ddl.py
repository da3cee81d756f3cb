"""Tables and the append-only triggers (invariant 1) for SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

events = sa.Table(
    "events",
    metadata,
    sa.Column("tenant_id", sa.String(64), nullable=False),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.LargeBinary(16), nullable=False),
    sa.Column("stream_id", sa.String(200), nullable=False),
    sa.Column("stream_version", sa.Integer, nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("occurred_at", sa.BigInteger, nullable=False),
    sa.Column("recorded_at", sa.BigInteger, nullable=False),
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("subject_id", sa.String(64), nullable=True),
    sa.Column("key_ref", sa.String(16), nullable=True),  # the subject key sealing `personal`
    sa.Column("data", sa.LargeBinary, nullable=False),  # public fields, tenant key
    sa.Column("personal", sa.LargeBinary, nullable=True),  # personal fields, subject key
    sa.Column("metadata", sa.LargeBinary, nullable=False),
    sa.Column("prev_hash", sa.LargeBinary(32), nullable=False),
    sa.Column("hash", sa.LargeBinary(32), nullable=False),
    sa.PrimaryKeyConstraint("tenant_id", "position", name="events_pk"),
    sa.UniqueConstraint("event_id", name="events_event_id_uq"),
    sa.UniqueConstraint("tenant_id", "stream_id", "stream_version", name="events_stream_uq"),
)

# Mutable on purpose: destroying a row here is crypto-shredding.
subject_keys = sa.Table(
    "subject_keys",
    metadata,
    sa.Column("subject_id", sa.String(64), nullable=False),
    sa.Column("key_ref", sa.String(16), nullable=False),
    sa.Column("wrap_key_id", sa.String(32), nullable=False),
    sa.Column("wrapped", sa.LargeBinary, nullable=False),
    sa.PrimaryKeyConstraint("subject_id", "key_ref", name="subject_keys_pk"),
)

# Public check values of the data keys the log was written with (wrong-key detection).
key_fingerprints = sa.Table(
    "key_fingerprints",
    metadata,
    sa.Column("key_id", sa.String(32), primary_key=True),
    sa.Column("fingerprint", sa.String(32), nullable=False),
)

# The placeholder index of the redaction gate (privacy/placeholders.py): digests and numbers
# only. Its rows are written in the append transaction of the events that use them, so an
# event is never stored with a placeholder the index does not know. The two unique keys
# are what detects a writer that numbered from a stale view (PlaceholderConflict).
redaction_placeholders = sa.Table(
    "redaction_placeholders",
    metadata,
    sa.Column("session_key", sa.String(200), nullable=False),
    sa.Column("entity_type", sa.String(64), nullable=False),
    sa.Column("digest", sa.LargeBinary(32), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("session_key", "entity_type", "digest", name="redaction_placeholders_pk"),
    sa.UniqueConstraint("session_key", "entity_type", "number", name="redaction_placeholders_number_uq"),
)

_REFUSE = "hermes-fed: the events table is append-only (invariant 1)"


def sqlite_triggers() -> list[str]:
    return [
        f"""CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
            BEGIN SELECT RAISE(ABORT, '{_REFUSE}: UPDATE refused'); END""",
        f"""CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
            BEGIN SELECT RAISE(ABORT, '{_REFUSE}: DELETE refused'); END""",
    ]


def postgres_triggers(schema: str) -> list[str]:
    # No '%' in this DDL: psycopg reads it as a placeholder (a RAISE format '%' made
    # opening any PostgreSQL store fail), so the message is built by concatenation.
    q = f'"{schema}".'
    return [
        f"""CREATE OR REPLACE FUNCTION {q}hermes_fed_refuse_mutation() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION USING MESSAGE = '{_REFUSE}: ' || TG_OP || ' refused'; END $$""",
        f"""CREATE OR REPLACE TRIGGER events_no_mutation BEFORE UPDATE OR DELETE ON {q}events
            FOR EACH ROW EXECUTE FUNCTION {q}hermes_fed_refuse_mutation()""",
        f"""CREATE OR REPLACE TRIGGER events_no_truncate BEFORE TRUNCATE ON {q}events
            FOR EACH STATEMENT EXECUTE FUNCTION {q}hermes_fed_refuse_mutation()""",
    ]
