"""Web console assets."""
