"""Ingest: validation against the thing model, batched writing, MQTT and HTTP entry points."""
