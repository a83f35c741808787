"""freightwatch.models."""
