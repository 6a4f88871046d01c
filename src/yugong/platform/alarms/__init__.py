"""Alarms: their lifecycle, history, queries and live stream."""
