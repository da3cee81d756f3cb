"""The coordinator's event-sourced logs: adapter registry, promotion, A/B tests."""
