"""hermes_fed.registry."""
