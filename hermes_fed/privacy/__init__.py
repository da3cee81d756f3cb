"""hermes_fed.privacy: PII and secret redaction on the write path (DESIGN.md section 4).

Names load lazily so that importing a sibling module (for example differential privacy)
does not pay for presidio's import.

>>> from hermes_fed.privacy import Redactor, RedactionConfig   # doctest: +SKIP
>>> r = Redactor(RedactionConfig(), tenant_secret=b"0" * 32)   # doctest: +SKIP
>>> r.redact_text("mail bob@example.com", session_key="session-1")  # doctest: +SKIP
'mail <EMAIL_ADDRESS_1>'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hermes_fed.privacy.config import RedactionConfig
    from hermes_fed.privacy.detector import Finding
    from hermes_fed.privacy.placeholders import InMemoryPlaceholderIndex, PlaceholderIndex
    from hermes_fed.privacy.redactor import Redactor

_EXPORTS = {
    "RedactionConfig": "hermes_fed.privacy.config",
    "Redactor": "hermes_fed.privacy.redactor",
    "Finding": "hermes_fed.privacy.detector",
    "PlaceholderIndex": "hermes_fed.privacy.placeholders",
    "InMemoryPlaceholderIndex": "hermes_fed.privacy.placeholders",
}
__all__ = ["Finding", "InMemoryPlaceholderIndex", "PlaceholderIndex", "RedactionConfig",
           "Redactor"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hermes_fed.privacy' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
