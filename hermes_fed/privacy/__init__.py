"""hermes_fed.privacy."""
