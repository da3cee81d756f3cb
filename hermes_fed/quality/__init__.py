"""hermes_fed.quality."""
