"""hermes_fed.aggregation."""
