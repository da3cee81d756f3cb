"""hermes_fed.formats."""
