"""The components Yugong ships, one module per field; each registers through the
``yugong.components`` entry points in pyproject.toml, as a third party's would."""
