"""Fuzzing: the HTTP API against its OpenAPI document, and the ingest payload parsers."""
