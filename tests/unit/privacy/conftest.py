"""One redactor per test session: building it costs presidio's import (~1 s), once."""

from __future__ import annotations

import pytest

from hermes_fed.privacy import RedactionConfig, Redactor

SECRET = b"unit-test-tenant-secret-32-bytes"


@pytest.fixture(scope="session")
def redactor() -> Redactor:
    return Redactor(RedactionConfig(deny_terms=("Acme Corp", "Initech")), tenant_secret=SECRET)
