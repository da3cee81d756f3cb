"""The row layout written once (the DDL and PostgreSQL's COPY types agree with it), and
driver exceptions mapped to ours class by class (PEP 249 names)."""

from __future__ import annotations

import sqlite3

import psycopg
import psycopg.errors
import pytest
import sqlalchemy as sa

from hermes_fed import errors
from hermes_fed.store import postgres, schema_ddl, sqlite
from hermes_fed.store.backend import COLUMNS, READ_COLUMNS, Row
from hermes_fed.store.sql_backend import map_error


def test_the_events_table_has_the_columns_of_row_in_its_order() -> None:
    assert tuple(c.name for c in schema_ddl.events.columns) == Row._fields == COLUMNS
    assert COLUMNS[1:] == READ_COLUMNS and READ_COLUMNS[0] == "position"


def test_copy_types_follow_the_ddl_column_by_column() -> None:
    # Expected: written out by hand from schema_ddl.events
    expected = [
        "varchar", "int8", "bytea", "varchar", "int4", "varchar", "int4", "int8", "int8",
        "varchar", "varchar", "varchar", "bytea", "bytea", "bytea", "bytea", "bytea",
    ]  # fmt: skip
    assert expected == postgres.COPY_TYPES


@pytest.mark.parametrize(
    ("driver_error", "ours"),
    [
        (sqlite3.IntegrityError("UNIQUE constraint failed: events.event_id"), errors.IntegrityError),
        (sqlite3.OperationalError("database is locked"), errors.OperationalError),
        (sqlite3.ProgrammingError("Cannot operate on a closed database."), errors.ProgrammingError),
        (sqlite3.DataError("string or blob too big"), errors.DataError),
        (sqlite3.InternalError("x"), errors.InternalError),
        (sqlite3.NotSupportedError("x"), errors.NotSupportedError),
        (sqlite3.InterfaceError("bad parameter"), errors.InterfaceError),
        (sqlite3.DatabaseError("file is not a database"), errors.DatabaseError),
    ],
)
def test_sqlite3_errors_map_class_by_class(driver_error: sqlite3.Error, ours: type[Exception]) -> None:
    mapped = map_error(driver_error, sqlite.ERRORS, "append failed, nothing written")
    assert type(mapped) is ours
    assert str(mapped) == f"append failed, nothing written: {driver_error}"


@pytest.mark.parametrize(
    ("driver_error", "ours"),
    [
        (psycopg.errors.UniqueViolation("duplicate key"), errors.IntegrityError),
        (psycopg.errors.LockNotAvailable("lock timeout"), errors.OperationalError),
        (psycopg.errors.SerializationFailure("could not serialize"), errors.OperationalError),
        (psycopg.errors.AdminShutdown("terminating connection"), errors.OperationalError),
        (psycopg.errors.UndefinedTable('relation "events" does not exist'), errors.ProgrammingError),
        (psycopg.errors.RaiseException("refused"), errors.ProgrammingError),  # plpgsql RAISE
        (psycopg.errors.DivisionByZero("division by zero"), errors.DataError),
        (psycopg.errors.InFailedSqlTransaction("aborted"), errors.InternalError),
        (psycopg.errors.FeatureNotSupported("x"), errors.NotSupportedError),
        (psycopg.InterfaceError("the connection is closed"), errors.InterfaceError),
        (psycopg.DatabaseError("x"), errors.DatabaseError),
    ],
)
def test_psycopg_errors_map_class_by_class(driver_error: psycopg.Error, ours: type[Exception]) -> None:
    mapped = map_error(driver_error, postgres.ERRORS, "cannot read the event log")
    assert type(mapped) is ours
    assert isinstance(mapped, errors.DatabaseError) and isinstance(mapped, errors.HermesFedError)


def test_an_error_sqlalchemy_wrapped_maps_by_the_driver_error_inside() -> None:
    wrapped = sa.exc.OperationalError("SELECT 1", {}, sqlite3.IntegrityError("constraint"))
    assert type(map_error(wrapped, sqlite.ERRORS, "x")) is errors.IntegrityError


def test_other_exceptions_are_not_mapped() -> None:
    # Our own errors and the other driver's pass through unchanged
    assert map_error(errors.ConcurrencyError("s", 1, 2), sqlite.ERRORS, "x") is None
    assert map_error(psycopg.errors.UniqueViolation("x"), sqlite.ERRORS, "x") is None
    assert map_error(ValueError("x"), postgres.ERRORS, "x") is None
