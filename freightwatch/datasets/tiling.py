"""Pure slicing geometry: which windows cover a raster, with overlap.

Kept free of I/O (as SAHI keeps ``get_slice_bboxes``) so it can be tested exhaustively and reused
by chip export, sliced detection and tiled density inference.
"""

from __future__ import annotations

from collections.abc import Iterator

from rasterio.windows import Window


def tile_starts(length: int, size: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``size`` along an axis of ``length`` pixels.

    Tiles advance by ``size - overlap``; the last one is shifted back to end exactly at the
    border, so every pixel is covered and every tile is full-size when ``length >= size``.

    Args:
        length: Axis length in pixels (> 0).
        size: Tile size in pixels (> 0).
        overlap: Pixels shared by neighbouring tiles (0 <= overlap < size).
    """
    if length <= 0 or size <= 0:
        raise ValueError(f"length and size must be positive (got length={length}, size={size})")
    if not 0 <= overlap < size:
        raise ValueError(f"overlap must be in [0, size) (got overlap={overlap}, size={size})")
    if length <= size:
        return [0]
    stride = size - overlap
    starts = list(range(0, length - size, stride))
    starts.append(length - size)
    return starts


def tile_windows(width: int, height: int, size: int, overlap: int = 0) -> list[Window]:
    """Windows of at most ``size`` x ``size`` pixels covering a ``width`` x ``height`` raster.

    Windows are full-size except where the raster itself is smaller than ``size``.

    Args:
        width: Raster width in pixels.
        height: Raster height in pixels.
        size: Tile edge in pixels.
        overlap: Overlap between neighbouring tiles in pixels.
    """
    return list(iter_windows(width, height, size, overlap))


def iter_windows(width: int, height: int, size: int, overlap: int = 0) -> Iterator[Window]:
    """Lazy version of :func:`tile_windows`, row by row."""
    for row in tile_starts(height, size, overlap):
        for col in tile_starts(width, size, overlap):
            yield Window(col, row, min(size, width - col), min(size, height - row))


def overlap_pixels(size: int, overlap: float | int) -> int:
    """Overlap in pixels from a fraction of ``size`` (``0.2``) or a pixel count (``128``)."""
    if isinstance(overlap, float) and 0 <= overlap < 1:
        return int(round(size * overlap))
    return int(overlap)
