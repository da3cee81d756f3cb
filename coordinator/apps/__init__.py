"""The coordinator's Flower ServerApps (plain rounds, privacy rounds) and their app directories."""
