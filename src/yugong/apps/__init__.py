"""Application layer (应用层): app runtime and built-in apps."""
