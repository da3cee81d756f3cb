"""Shared fixtures: event-store backends (SQLite file, PostgreSQL schema) and offline env."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Offline everywhere: no hub, no suffix-list fetch, no Flower telemetry.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS", "")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

PG_URL = os.environ.get("HERMES_FED_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_URL.replace("+psycopg", ""), connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL URL. CI starts the server; its absence is an error, not a skip."""
    if not _pg_available():
        pytest.fail(f"PostgreSQL is not reachable at {PG_URL} (start it: see .ci/run)")
    return PG_URL


@pytest.fixture
def pg_schema(pg_url: str) -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards."""
    import psycopg

    name = f"t_{secrets.token_hex(6)}"
    yield name
    with psycopg.connect(pg_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


StoreSpec = tuple[str, str | None]  # (url, schema)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """(url, schema) of an empty log on each backend: the conformance suite runs on both."""
    if request.param == "sqlite":
        return (f"sqlite:///{tmp_path / 'tenant.db'}", None)
    url: str = request.getfixturevalue("pg_url")
    schema: str = request.getfixturevalue("pg_schema")
    return (url, schema)


@pytest.fixture
def make_store(backend: StoreSpec) -> Iterator[Callable[..., object]]:
    """Factory opening the backend's log: ``make_store(tenant_id="a", keyring=..., gate=...)``."""
    from hermes_fed.store import Keyring, open_store

    opened = []
    url, schema = backend

    def _make(tenant_id: str = "acme", keyring: Keyring | None = None, **kw: object) -> object:
        store = open_store(url, tenant_id, keyring=keyring, schema=schema, **kw)  # type: ignore[arg-type]
        opened.append(store)
        return store

    yield _make
    for store in opened:
        store.close()
