"""Southbound connectors: one module per protocol, one interface."""
