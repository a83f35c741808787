"""freightwatch.inference."""
