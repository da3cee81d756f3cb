"""Fixtures: a stub upstream and ``model serve`` as real processes, one per test module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import Server, model_serve, stub_upstream


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture(scope="module")
def stub(workdir: Path) -> Iterator[Server]:
    server = stub_upstream(workdir).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served_model(workdir: Path) -> Iterator[Server]:
    server = model_serve(workdir).start()
    yield server
    server.stop()
