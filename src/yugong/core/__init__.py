"""Shared vocabulary: settings, errors, quality, time, sample batches, thing models."""
