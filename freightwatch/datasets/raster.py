"""Reading georeferenced scenes with rasterio: metadata, lazy windows, bands and radiometry.

A :class:`Scene` never reads the whole raster at full resolution: windows are read on demand and
the radiometric stretch is estimated once from a decimated read (at most ``stats_size`` pixels on
the long side), so memory stays bounded whatever the scene size.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from pyproj import Geod
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window
from shapely.geometry import Polygon

from freightwatch.errors import RasterError

log = logging.getLogger(__name__)

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
_TIME_TAGS = ("ACQUISITION_TIME", "ACQUIRED", "acquired", "datetime", "TIFFTAG_DATETIME")
_WGS84 = Geod(ellps="WGS84")


def parse_time(value: str) -> datetime | None:
    """Parse an acquisition time from ISO 8601 or the TIFF ``YYYY:MM:DD HH:MM:SS`` form.

    Naive times are taken as UTC (satellite metadata is UTC by convention).
    """
    text = str(value).strip()
    m = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})[ T](\d{2}):(\d{2}):(\d{2})", text)
    if m:
        text = f"{m[1]}-{m[2]}-{m[3]}T{m[4]}:{m[5]}:{m[6]}"
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def sidecar_path(path: Path) -> Path | None:
    """The sidecar JSON of a scene (``scene.json`` or ``scene.tif.json``), if one exists."""
    for cand in (path.with_suffix(".json"), path.with_name(path.name + ".json")):
        if cand.is_file():
            return cand
    return None


def _time_from_sidecar(path: Path) -> datetime | None:
    side = sidecar_path(path)
    if side is None:
        return None
    try:
        meta = json.loads(side.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RasterError(side, f"sidecar JSON is not readable: {exc}") from exc
    props = meta.get("properties", meta) if isinstance(meta, dict) else {}
    for key in ("acquired", "datetime", "acquisition_time", "time"):
        if key in props and (t := parse_time(props[key])) is not None:
            return t
    return None


def gsd_metres(crs: Any, transform: Affine, width: int, height: int) -> float:
    """Ground sample distance in metres (mean of x and y pixel sizes).

    Projected CRSs use their linear unit; geographic CRSs measure the pixel's geodesic size at
    the scene centre on the WGS84 ellipsoid.
    """
    if crs is not None and crs.is_geographic:
        cx, cy = transform @ (width / 2, height / 2)
        ex, ey = transform @ (width / 2 + 1, height / 2)
        nx, ny = transform @ (width / 2, height / 2 + 1)
        _, _, dx = _WGS84.inv(cx, cy, ex, ey)
        _, _, dy = _WGS84.inv(cx, cy, nx, ny)
        return float((abs(dx) + abs(dy)) / 2)
    factor = 1.0
    if crs is not None:
        try:
            factor = float(crs.linear_units_factor[1])
        except Exception:  # noqa: BLE001 - CRSs without a linear unit: assume metres
            factor = 1.0
    px = float(np.hypot(transform.a, transform.d))
    py = float(np.hypot(transform.b, transform.e))
    return (px + py) / 2 * factor


def grid_footprint(transform: Affine, width: int, height: int) -> Polygon:
    """Outline of a ``width`` x ``height`` pixel grid in map coordinates: four corners, so it is
    exact for rotated and south-up grids too, where the bounding box of two corners is not."""
    cols = np.array([0, width, width, 0], dtype=float)
    rows = np.array([0, 0, height, height], dtype=float)
    xs, ys = transform * (cols, rows)
    return Polygon(zip(xs, ys, strict=True))


@dataclass(frozen=True)
class SceneInfo:
    """What is known of a scene without reading its pixels.

    Attributes:
        path: The raster file.
        width: Columns.
        height: Rows.
        count: Number of bands.
        dtype: Pixel type of band 1.
        crs: CRS as a string (``EPSG:...`` where it has one, else WKT), or ``None``.
        transform: Pixel -> map affine transform.
        gsd: Ground sample distance in metres, ``None`` without a CRS.
        acquired: Acquisition time (TIFF tags or sidecar JSON), ``None`` when absent.
        nodata: The nodata value, if set.
        descriptions: Band descriptions (may be ``None`` per band).
        colorinterp: Colour interpretation names per band.
    """

    path: Path
    width: int
    height: int
    count: int
    dtype: str
    crs: str | None
    transform: Affine
    gsd: float | None
    acquired: datetime | None
    nodata: float | None
    descriptions: tuple[str | None, ...] = field(default_factory=tuple)
    colorinterp: tuple[str, ...] = field(default_factory=tuple)

    @property
    def georeferenced(self) -> bool:
        """Whether the scene has a CRS (map outputs and zones need one)."""
        return self.crs is not None

    @property
    def north_up(self) -> bool:
        """Whether rows run north to south and columns west to east without rotation."""
        t = self.transform
        return t.b == 0 and t.d == 0 and t.a > 0 and t.e < 0

    def footprint(self) -> Polygon:
        """The scene's outline in its CRS (pixel coordinates without one); see :func:`grid_footprint`."""
        return grid_footprint(self.transform, self.width, self.height)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary (for ``freightwatch info``)."""
        return {
            "path": str(self.path), "width": self.width, "height": self.height, "bands": self.count,
            "dtype": self.dtype, "crs": self.crs, "transform": list(self.transform)[:6], "north_up": self.north_up,
            "gsd_m": self.gsd, "acquired": self.acquired.isoformat() if self.acquired else None,
            "nodata": self.nodata, "descriptions": list(self.descriptions),
            "colorinterp": list(self.colorinterp),
        }


def _crs_string(crs: Any) -> str | None:
    if crs is None:
        return None
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


@dataclass(frozen=True)
class Stretch:
    """Per-band linear stretch to uint8: ``(value - low) / (high - low) * 255``.

    Attributes:
        low: Per output band lower bound (maps to 0).
        high: Per output band upper bound (maps to 255).
    """

    low: tuple[float, ...]
    high: tuple[float, ...]

    def apply(self, data: np.ndarray) -> np.ndarray:
        """Stretch a ``(bands, H, W)`` array to uint8."""
        if data.dtype == np.uint8 and self.is_identity:  # the common 8-bit scene: nothing to compute
            return data.copy()
        lo = np.asarray(self.low, dtype=np.float32)[:, None, None]
        hi = np.asarray(self.high, dtype=np.float32)[:, None, None]
        out = (data.astype(np.float32) - lo) / np.maximum(hi - lo, 1e-6) * 255.0
        return np.clip(out + 0.5, 0, 255).astype(np.uint8)

    @property
    def is_identity(self) -> bool:
        """Whether this stretch maps 0-255 onto itself."""
        return all(v == 0.0 for v in self.low) and all(v == 255.0 for v in self.high)

    @classmethod
    def identity(cls, nbands: int) -> Stretch:
        """No-op stretch for data already in 0-255."""
        return cls((0.0,) * nbands, (255.0,) * nbands)


class Scene:
    """An open raster scene with lazy windowed reads of an RGB view.

    Use as a context manager. ``bands`` picks which 1-based bands make R, G, B. Without it, 3-band
    scenes are read as (1, 2, 3), 4-band scenes follow their colour interpretation or band
    descriptions (e.g. BGRN -> (3, 2, 1)) and fall back to (1, 2, 3); 1-, 2- and 5+-band scenes
    need an explicit choice (``bands=(1, 1, 1)`` for a panchromatic band).

    Args:
        path: GeoTIFF (or any GDAL raster) path.
        bands: Optional 1-based band indices for R, G, B.
        stretch: ``"auto"`` (uint8 as is, others percentile-stretched), ``"percentile"``, ``"none"``.
        percentiles: Low/high percentiles of the stretch.
        stats_size: Long side of the decimated read used for stretch statistics.

    Raises:
        RasterError: unreadable file, unsupported dtype, or a band choice that does not fit.
    """

    def __init__(
        self,
        path: str | Path,
        bands: tuple[int, int, int] | None = None,
        stretch: str = "auto",
        percentiles: tuple[float, float] = (2.0, 98.0),
        stats_size: int = 1024,
    ) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise RasterError(self.path, "file does not exist")
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise RasterError(self.path, "file is empty (0 bytes)")
        try:
            self._ds = _open(self.path)
        except RasterioIOError as exc:
            raise RasterError(self.path, f"not a readable raster ({_short(exc)})") from exc
        try:
            self.info = _info_from_dataset(self._ds, self.path)
            if self.info.dtype not in SUPPORTED_DTYPES:
                raise RasterError(
                    self.path, f"unsupported pixel type {self.info.dtype} (supported: {', '.join(SUPPORTED_DTYPES)})"
                )
            self.bands = self._choose_bands(bands)
            self._stretch_mode = stretch
            self._percentiles = percentiles
            self._stats_size = stats_size
            self._stretch: Stretch | None = None
        except Exception:
            self._ds.close()
            raise

    def _choose_bands(self, bands: tuple[int, int, int] | None) -> tuple[int, int, int]:
        n = self.info.count
        if bands is not None:
            bands = tuple(int(b) for b in bands)  # type: ignore[assignment]
            if len(bands) != 3 or any(b < 1 or b > n for b in bands):
                raise RasterError(self.path, f"band choice {bands} does not fit a {n}-band scene (1-based, 3 bands)")
            return bands  # type: ignore[return-value]
        if n == 3:
            return (1, 2, 3)
        if n == 4:
            found = self._rgb_from_metadata()
            if found is None:
                log.warning("%s: 4 bands without colour metadata; assuming R,G,B,NIR order (pass bands to override)",
                            self.path)
                return (1, 2, 3)
            return found
        if n <= 2:
            hint = "bands=(1, 1, 1) to use band 1 as grey; CLI: --bands 1,1,1"
        else:
            hint = "e.g. bands=(5, 3, 2) for WorldView-3 8-band; CLI: --bands 5,3,2"
        raise RasterError(self.path, f"scene has {n} band(s): choose which make R, G, B ({hint})")

    def _rgb_from_metadata(self) -> tuple[int, int, int] | None:
        ci = self._ds.colorinterp
        want = {ColorInterp.red: None, ColorInterp.green: None, ColorInterp.blue: None}
        for i, c in enumerate(ci, start=1):
            if c in want and want[c] is None:
                want[c] = i
        if all(want.values()):
            return (want[ColorInterp.red], want[ColorInterp.green], want[ColorInterp.blue])  # type: ignore[return-value]
        names = [(d or "").strip().lower() for d in self.info.descriptions]
        idx = {}
        for key in ("red", "green", "blue"):
            hits = [i + 1 for i, d in enumerate(names) if d == key or d.startswith(key)]
            if hits:
                idx[key] = hits[0]
        if len(idx) == 3:
            return (idx["red"], idx["green"], idx["blue"])
        return None

    # -- radiometry -----------------------------------------------------------------------------
    @property
    def stretch(self) -> Stretch:
        """The scene's stretch to uint8, computed once on first use."""
        if self._stretch is None:
            self._stretch = self._compute_stretch()
        return self._stretch

    def _compute_stretch(self) -> Stretch:
        mode = self._stretch_mode
        if mode == "none" or (mode == "auto" and self.info.dtype == "uint8"):
            return Stretch.identity(3)
        if mode not in ("auto", "percentile"):
            raise ValueError(f"unknown stretch mode {mode!r}")
        ds = self._ds
        scale = max(1.0, max(ds.width, ds.height) / self._stats_size)
        shape = (3, max(1, int(ds.height / scale)), max(1, int(ds.width / scale)))
        # A decimated read (GDAL uses overviews when present): bounded memory on any scene size.
        data = ds.read(list(self.bands), out_shape=shape, resampling=Resampling.nearest, masked=True)
        lows, highs = [], []
        for b in range(3):
            band = data[b]
            vals = band.compressed() if np.ma.isMaskedArray(band) else band.ravel()
            vals = vals[np.isfinite(vals)]
            if vals.size == 0:
                raise RasterError(self.path, "scene has no valid pixels (all nodata)")
            lo, hi = np.percentile(vals, self._percentiles)
            if hi <= lo:
                hi = lo + 1.0
            lows.append(float(lo))
            highs.append(float(hi))
        return Stretch(tuple(lows), tuple(highs))

    # -- pixels ---------------------------------------------------------------------------------
    def read_rgb(self, window: Window | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Read a window as an RGB uint8 image plus a validity mask.

        Args:
            window: Pixel window; the whole scene when ``None`` (only sensible for small scenes).
                Windows reaching past the border are padded with zeros and marked invalid.

        Returns:
            ``(H, W, 3)`` uint8 RGB and ``(H, W)`` bool mask (True = valid data).
        """
        ds = self._ds
        if window is None:
            window = Window(0, 0, ds.width, ds.height)
        col, row = int(window.col_off), int(window.row_off)
        h, w = int(window.height), int(window.width)
        # Read only the part inside the raster and pad ourselves: rasterio's boundless reads
        # treat fill_value as nodata, which would mask genuine zero pixels.
        c0, r0 = max(col, 0), max(row, 0)
        c1, r1 = min(col + w, ds.width), min(row + h, ds.height)
        if c1 > c0 and r1 > r0:
            inner = Window(c0, r0, c1 - c0, r1 - r0)
            try:
                data = ds.read(list(self.bands), window=inner, masked=True)
            except RasterioIOError as exc:
                raise RasterError(self.path, f"cannot read pixels at {inner} ({_short(exc)}); truncated file?") from exc
            # masked pixels hold the nodata value here; they are zeroed after the stretch
            values, bad = np.ma.getdata(data), np.ma.getmaskarray(data).any(axis=0)
        if (c0, r0, c1, r1) == (col, row, col + w, row + h):  # wholly inside: no padding to do
            arr, mask = values, ~bad
        else:
            arr = np.zeros((3, h, w), dtype=ds.dtypes[0])
            mask = np.zeros((h, w), dtype=bool)
            if c1 > c0 and r1 > r0:
                sl = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
                arr[:, sl[0], sl[1]] = values
                mask[sl] = ~bad
        if np.issubdtype(arr.dtype, np.floating):
            mask &= np.isfinite(arr).all(axis=0)
            arr = np.nan_to_num(arr)
        # an 8-bit scene as it is: the array is fresh from GDAL, so ours to change
        rgb = arr if arr.dtype == np.uint8 and self.stretch.is_identity else self.stretch.apply(arr)
        if not mask.all():
            rgb[:, ~mask] = 0
        return np.ascontiguousarray(rgb.transpose(1, 2, 0)), mask

    def read_overview(self, max_side: int = 2048) -> tuple[np.ndarray, float]:
        """The whole scene as RGB uint8, decimated so its long side is at most ``max_side``.

        Returns:
            The image and the factor from scene pixels to overview pixels (<= 1).
        """
        ds = self._ds
        f = min(1.0, max_side / max(ds.width, ds.height))
        h, w = max(1, round(ds.height * f)), max(1, round(ds.width * f))
        data = ds.read(list(self.bands), out_shape=(3, h, w), resampling=Resampling.average, masked=True)
        rgb = self.stretch.apply(np.ma.filled(data, 0))
        return np.ascontiguousarray(rgb.transpose(1, 2, 0)), w / ds.width

    def read_bands(self, window: Window | None = None, indexes: list[int] | None = None) -> np.ndarray:
        """Raw band values ``(bands, H, W)`` for a window, without stretch (all bands by default)."""
        idx = indexes or list(range(1, self.info.count + 1))
        return self._ds.read(idx, window=window)

    def valid_fraction(self, window: Window | None = None) -> float:
        """Fraction of valid (non-nodata) pixels in a window, from the dataset mask."""
        m = self._ds.dataset_mask(window=window)
        return float((m > 0).mean()) if m.size else 0.0

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def dataset(self) -> rasterio.DatasetReader:
        """The underlying rasterio dataset (for advanced use)."""
        return self._ds

    def close(self) -> None:
        """Close the file."""
        self._ds.close()

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


DEFAULT_GDAL_CACHE_MB = 128
"""GDAL block cache used while scanning a scene (see :func:`bounded_gdal_cache`)."""


@contextmanager
def bounded_gdal_cache(mb: int | None = DEFAULT_GDAL_CACHE_MB) -> Iterator[None]:
    """Cap GDAL's block cache at ``mb`` MB inside the block (``None``: leave GDAL's setting).

    GDAL's default cache is 5 % of RAM (1.2 GB on a 24 GB machine) and a window-by-window scan
    fills it with blocks it will never read again, so a scan's memory would grow with the scene
    up to that size. Sliced reads revisit a block only for the overlap with the next row of
    slices, so a cache of a few slice rows costs little time.
    """
    if mb is None:
        yield
        return
    if mb < 1:
        raise ValueError(f"GDAL cache must be at least 1 MB, got {mb}")
    with rasterio.Env(GDAL_CACHEMAX=int(mb) * 2**20):
        yield


def _open(path: Path) -> rasterio.DatasetReader:
    # Ungeoreferenced rasters are reported through SceneInfo.crs = None, not a warning.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def _short(exc: BaseException) -> str:
    """The most specific line of a GDAL error: rasterio's own says only "See previous exception"."""
    msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    seen = {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen and "see previous exception" in msg.lower():
        seen.add(id(cause))
        text = str(cause.args[-1] if getattr(cause, "args", None) else cause)
        if text:
            msg = text.splitlines()[0]
        cause = cause.__cause__ or cause.__context__
    return msg[:200]


def _info_from_dataset(ds: rasterio.DatasetReader, path: Path) -> SceneInfo:
    tags = ds.tags()
    acquired = next((t for k in _TIME_TAGS if k in tags and (t := parse_time(tags[k]))), None)
    crs = ds.crs if ds.crs else None
    return SceneInfo(
        path=path, width=ds.width, height=ds.height, count=ds.count, dtype=ds.dtypes[0],
        crs=_crs_string(crs), transform=ds.transform,
        gsd=gsd_metres(crs, ds.transform, ds.width, ds.height) if crs else None,
        acquired=acquired or _time_from_sidecar(path), nodata=ds.nodata,
        descriptions=tuple(ds.descriptions), colorinterp=tuple(ci.name for ci in ds.colorinterp),
    )


def read_info(path: str | Path) -> SceneInfo:
    """Metadata of a scene without choosing bands or reading pixels."""
    path = Path(path)
    if not path.exists():
        raise RasterError(path, "file does not exist")
    if path.is_file() and path.stat().st_size == 0:
        raise RasterError(path, "file is empty (0 bytes)")
    try:
        with _open(path) as ds:
            return _info_from_dataset(ds, path)
    except RasterioIOError as exc:
        raise RasterError(path, f"not a readable raster ({_short(exc)})") from exc
