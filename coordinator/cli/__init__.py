"""The coordinator's command groups: ``coordinator``, ``round``, ``ab``, ``model`` (promotion)."""
