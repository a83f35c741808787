"""freightwatch.datasets."""
