"""freightwatch: measure freight activity (trucks, railcars, boats) from satellite imagery."""

from freightwatch.taxonomy import CLASSES, BoatState

__version__ = "0.1.0"
__all__ = ["CLASSES", "BoatState", "__version__"]
