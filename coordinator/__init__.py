"""The coordinator: Flower ServerApp, strategies, rounds, cross-tenant A/B, promotion."""
