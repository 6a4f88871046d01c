"""Stream rules: conditions evaluated on every ingested batch that raise and clear alarms."""
