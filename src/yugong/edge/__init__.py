"""Edge layer (边缘层): gateway, connectors, simulators."""
