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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test marked ``sql`` does not run on the memory backend (it needs what only a
    database does: triggers, other processes, kill -9, projections' tables).

    Then the files holding a ``slow`` test (real Flower federations, the e2e runs: one to
    four minutes each) move to the front, whole and in their own order, so that the suite's
    workers (``pytest-xdist``, ``--dist loadfile --no-loadscope-reorder`` in
    ``scripts/test.sh``) start on them and finish on the short tests, instead of one worker
    meeting a four-minute test when the rest is done."""
    keep, memory_only_sql = [], []
    for item in items:
        spec = getattr(item, "callspec", None)
        on_memory = spec is not None and spec.params.get("backend") == "memory"
        (memory_only_sql if on_memory and item.get_closest_marker("sql") else keep).append(item)
    if memory_only_sql:
        config.hook.pytest_deselected(items=memory_only_sql)
    slow_files = {item.path for item in keep if item.get_closest_marker("slow")}
    items[:] = sorted(keep, key=lambda item: item.path not in slow_files)  # stable


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres), "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreSpec:
    """(url, schema) of an empty log on each backend: the conformance suite runs on all
    three (a test marked ``sql`` on SQLite and PostgreSQL only)."""
    if request.param == "sqlite":
        return (f"sqlite:///{tmp_path / 'tenant.db'}", None)
    if request.param == "memory":
        return (f"memory://{tmp_path}", None)  # one named log per test, shared by its stores
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
