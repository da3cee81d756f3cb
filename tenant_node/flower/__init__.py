"""The node's side of the federation: Flower ClientApps, the egress guard (the only
reply builder), local rounds."""
