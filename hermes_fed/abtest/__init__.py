"""hermes_fed.abtest."""
