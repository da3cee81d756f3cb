"""The tenant node: gRPC ingest daemon, node runtime, Flower ClientApp."""
