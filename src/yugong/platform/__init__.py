"""Platform layer (平台层): registry, ingest, query."""
