"""Shared fixtures: small rasters written on the fly (no external data needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from freightwatch.datasets.geo import write_geotiff

SHARED = Path(__file__).resolve().parents[2] / "shared"
"""Development data beside the checkout (``../shared``); tests using it skip when absent."""


def make_raster(
    path: Path,
    bands: int = 3,
    size: tuple[int, int] = (64, 48),
    dtype: str = "uint8",
    crs: str | None = "EPSG:32651",
    gsd: float = 0.5,
    nodata: float | None = None,
    seed: int = 0,
    tags: dict[str, str] | None = None,
) -> Path:
    """Write a random raster of ``size`` = (width, height) and return its path."""
    rng = np.random.default_rng(seed)
    w, h = size
    hi = {"uint8": 255, "uint16": 4095, "int16": 2000}.get(dtype, 1)
    if dtype.startswith("float"):
        arr = rng.random((bands, h, w)).astype(dtype)
    else:
        arr = rng.integers(0, hi, (bands, h, w)).astype(dtype)
    transform = Affine(gsd, 0, 447000, 0, -gsd, 4442000)
    return write_geotiff(path, arr, crs, transform, nodata=nodata, tags=tags)


@pytest.fixture
def raster_factory(tmp_path: Path):
    """Call with keyword arguments of :func:`make_raster`; files go to a temporary folder."""
    counter = iter(range(10_000))

    def _make(**kw) -> Path:
        return make_raster(tmp_path / f"r{next(counter)}.tif", **kw)

    return _make
