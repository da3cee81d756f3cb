"""The node's ingest service: gRPC, validation, bearer-token auth, metrics, A/B assignment, the runtime."""
