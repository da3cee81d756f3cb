"""hermes_fed.store."""
