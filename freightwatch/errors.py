"""Exception types. Every error a user can cause derives from :class:`FreightwatchError`.

The CLI prints these as one line (no traceback unless ``--debug``), so messages must name the
offending file (and line, where there is one) and say what is wrong.
"""

from __future__ import annotations

from os import PathLike


class FreightwatchError(Exception):
    """Base class for errors caused by user input or configuration."""


class InputFileError(FreightwatchError, ValueError):
    """A file that cannot be used as given.

    Args:
        path: The offending file.
        message: What is wrong with it.
        line: 1-based line (or record) number, when the problem has one.
    """

    def __init__(self, path: str | PathLike[str], message: str, line: int | None = None) -> None:
        self.path = str(path)
        self.message = message
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class LabelFormatError(InputFileError):
    """A label file (COCO, YOLO, DOTA, xView, mapping YAML) that is malformed."""


class RasterError(InputFileError):
    """A raster that cannot be read or used (not a GeoTIFF, missing CRS, bad bands, ...)."""


class ZonesError(InputFileError):
    """A zones file that is malformed or cannot be placed on the scene."""
