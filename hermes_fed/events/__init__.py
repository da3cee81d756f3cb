"""hermes_fed.events."""
