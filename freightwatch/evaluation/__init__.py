"""freightwatch.evaluation: detection and counting metrics."""
