"""freightwatch.training."""
