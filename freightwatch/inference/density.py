"""Tiled density inference over coarse (3-5 m) scenes of any size, with zone counts and intervals.

The scene is cut into a *partition* of core tiles (no overlap, so nothing is counted twice); each
core is read with a margin of context on every side, run through the model, and only its core is
written into ``density.tif`` with a rasterio windowed write. Memory is one tile plus its margin,
whatever the scene size. The scene total is the sum of the written cores, so it equals the
integral of ``density.tif``.

Zone counts integrate ``density.tif`` over the pixels whose centres fall inside each zone polygon
(``rasterio.features.geometry_mask``), zone by zone and block by block, again in bounded memory.

Counts are reported with an interval of stated coverage (default 90 %): split-conformal quantiles
of the normalised residual ``(true - count) / (k + count)`` measured on zones of held-out
calibration sites at several GSDs (stored in the model config; see
:func:`freightwatch.models.density.count_interval` and
:func:`freightwatch.training.density.calibrate_intervals`). Their coverage is only guaranteed for
scenes like the calibration sites, at GSDs inside the trained range.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.features import geometry_mask
from rasterio.windows import Window

from freightwatch._progress import progress
from freightwatch.datasets.geo import Zone, atomic_write_bytes, read_zones, zones_outside
from freightwatch.datasets.raster import DEFAULT_GDAL_CACHE_MB, Scene, bounded_gdal_cache
from freightwatch.errors import InputFileError, RasterError, ZonesError
from freightwatch.models.density import DensityModel, corrected_count, count_interval

log = logging.getLogger(__name__)

UNITS = "objects per pixel"
"""Units of ``density.tif`` (recorded in its band metadata)."""

CSV_COLUMNS: tuple[str, ...] = ("zone", "class", "count", "lower", "upper")
"""Columns of ``counts.csv``, in order."""


class SceneReader:
    """Reads windows of a scene as the model's bands (RGB, or RGB + NIR), uint8 plus a validity mask.

    Args:
        path: The raster.
        n_bands: 3 (RGB) or 4 (RGB + NIR).
        bands: 1-based RGB band choice (see :class:`~freightwatch.datasets.raster.Scene`).
        nir_band: 1-based NIR band for 4-band models (default 4).

    Raises:
        RasterError: unreadable scene or a band choice that does not fit.
    """

    def __init__(
        self,
        path: str | Path,
        n_bands: int = 3,
        bands: tuple[int, int, int] | None = None,
        nir_band: int | None = None,
    ) -> None:
        self.path = Path(path)
        self.scene = Scene(self.path, bands=bands)
        self.info = self.scene.info
        self._nir: Scene | None = None
        if n_bands == 4:
            nb = nir_band or 4
            # A second Scene on the NIR band alone reuses its per-band stretch to uint8.
            try:
                self._nir = Scene(self.path, bands=(nb, nb, nb))
            except Exception:
                self.scene.close()
                raise

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """``(H, W, bands)`` uint8 and ``(H, W)`` bool mask of a window (past the border: zeros, invalid)."""
        rgb, mask = self.scene.read_rgb(window)
        if self._nir is None:
            return rgb, mask
        nir, m2 = self._nir.read_rgb(window)
        return np.concatenate([rgb, nir[..., :1]], axis=2), mask & m2

    def close(self) -> None:
        """Close the underlying files."""
        self.scene.close()
        if self._nir is not None:
            self._nir.close()

    def __enter__(self) -> SceneReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class DensityRunConfig:
    """Settings of tiled density inference (mirrors ``freightwatch density`` options).

    Attributes:
        tile: Core tile edge in pixels (written as is; a multiple of 256 matches the output blocks).
        margin: Context read around each core on every side, in pixels. It should cover most of
            the network's receptive field so tiles agree where they meet.
        coverage: Nominal coverage of the count intervals (0-1).
        tta: Average the 8 rotations/flips of each tile (8x slower); ``None`` follows the model's
            calibration (intervals are calibrated for one setting).
        force: Run on scenes whose GSD is outside the model's range, or unknown.
        gsd: GSD in metres to assume (for scenes without a CRS, or to override).
        bands: RGB band choice for multi-band scenes.
        nir_band: NIR band for 4-band models.
        show_progress: Progress bar (``None``: when stderr is a terminal).
        gdal_cache_mb: GDAL block cache while scanning (``None``: GDAL's default, 5 % of RAM).
    """

    tile: int = 512
    margin: int = 48
    coverage: float = 0.9
    tta: bool | None = None
    force: bool = False
    gsd: float | None = None
    bands: tuple[int, int, int] | None = None
    nir_band: int | None = None
    show_progress: bool | None = None
    gdal_cache_mb: int | None = DEFAULT_GDAL_CACHE_MB


@dataclass
class DensityResult:
    """What :func:`density_scene` wrote and counted.

    Attributes:
        scene: The input scene.
        density: ``density.tif`` path.
        gsd: GSD used (metres), ``None`` when unknown and forced.
        classes: Class names, one density band each.
        rows: One dict per zone and class (``all`` first): zone, kind, class, count, lower, upper.
        warnings: Things the user should know (forced GSD, nodata, ...).
        files: Written files by name.
    """

    scene: Path
    density: Path
    gsd: float | None
    classes: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)

    def count(self, zone: str, cls: str) -> float:
        """The count of ``cls`` in ``zone`` (``"all"`` for the whole scene)."""
        for r in self.rows:
            if r["zone"] == zone and r["class"] == cls:
                return float(r["count"])
        raise KeyError(f"no count for zone {zone!r}, class {cls!r}")


def check_gsd(scene: str | Path, gsd: float | None, model: DensityModel, force: bool) -> list[str]:
    """Refuse scenes outside the model's GSD range (or without a GSD) unless forced.

    Returns:
        Warnings to report when forced.

    Raises:
        InputFileError: naming the scene, when the GSD is unknown or out of range and not forced.
    """
    cfg = model.config
    lo, hi = cfg.gsd_range
    tol_lo, tol_hi = lo / (1 + cfg.gsd_tolerance), hi * (1 + cfg.gsd_tolerance)
    if gsd is None:
        msg = (f"scene has no CRS, so its GSD is unknown; the density model is trained for {lo:g}-{hi:g} m: "
               "pass --gsd METRES (or --force)")
        if not force:
            raise InputFileError(scene, msg)
        return ["GSD unknown (no CRS), run with --force: counts and intervals are unvalidated"]
    if not cfg.gsd_accepted(gsd):
        msg = (f"scene GSD {gsd:.2f} m is outside the density model's trained range {lo:g}-{hi:g} m "
               f"(accepted {tol_lo:.2f}-{tol_hi:.2f} m); objects would look {gsd / ((lo + hi) / 2):.2g}x their "
               "trained size. Resample the scene or pass --force to run anyway")
        if not force:
            raise InputFileError(scene, msg)
        return [f"scene GSD {gsd:.2f} m is outside the trained {lo:g}-{hi:g} m, run with --force: "
                "counts and intervals are unreliable"]
    return []


def _partition(width: int, height: int, size: int) -> list[Window]:
    """Non-overlapping windows covering the raster (the last row/column may be smaller)."""
    return [
        Window(c, r, min(size, width - c), min(size, height - r))
        for r in range(0, height, size)
        for c in range(0, width, size)
    ]


def _zone_sums(ds: rasterio.DatasetReader, geom: Any, block: int = 1024) -> np.ndarray:
    """Per-band sum of a density raster over the pixels whose centres lie in ``geom``."""
    sums = np.zeros(ds.count, dtype=np.float64)
    # The pixel box of the zone's bounds through the inverse transform: unlike rasterio's
    # from_bounds this holds for south-up and rotated grids too (from_bounds raises on the first
    # and a silent zero count would follow).
    x0, y0, x1, y1 = geom.bounds
    cols, rows = ~ds.transform * (np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]))
    if not (np.isfinite(cols).all() and np.isfinite(rows).all()):
        return sums
    c0 = max(0, int(math.floor(cols.min())))
    r0 = max(0, int(math.floor(rows.min())))
    c1 = min(ds.width, int(math.ceil(cols.max())))
    r1 = min(ds.height, int(math.ceil(rows.max())))
    for rr in range(r0, r1, block):
        for cc in range(c0, c1, block):
            w = Window(cc, rr, min(block, c1 - cc), min(block, r1 - rr))
            if w.width <= 0 or w.height <= 0:
                continue
            inside = geometry_mask([geom], out_shape=(int(w.height), int(w.width)),
                                   transform=ds.window_transform(w), invert=True)
            if not inside.any():
                continue
            data = ds.read(window=w)
            sums += data[:, inside].sum(axis=1, dtype=np.float64)
    return sums


def _load_zones(
    zones: str | Path | Sequence[Zone] | None, scene: Path, info: Any, warnings: list[str]
) -> list[Zone]:
    if zones is None:
        return []
    if isinstance(zones, str | Path):
        zones_path = Path(zones)
        if not info.georeferenced:
            raise ZonesError(zones_path, f"scene {scene.name} has no CRS, so zones cannot be placed on it")
        out, _ = read_zones(zones_path, to_crs=info.crs)
        warnings.extend(zones_outside(out, info.footprint(), zones_path, scene.name))
        return out
    return list(zones)


def density_scene(
    scene_path: str | Path,
    model: DensityModel,
    out_dir: str | Path,
    zones: str | Path | Sequence[Zone] | None = None,
    config: DensityRunConfig | None = None,
) -> DensityResult:
    """Run the density model over a scene; write ``density.tif``, ``counts.csv`` and ``counts.json``.

    Args:
        scene_path: Coarse GeoTIFF (any size).
        model: The density model.
        out_dir: Output folder (created).
        zones: Zones GeoJSON (reprojected to the scene CRS) or zones already in the scene CRS.
        config: Settings.

    Returns:
        The :class:`DensityResult` (zone counts with intervals).

    Raises:
        InputFileError: unknown or out-of-range GSD without ``force`` (naming the scene),
            unreadable scene, or zones that cannot be placed.
    """
    cfg = config or DensityRunConfig()
    if cfg.tile < 8 or cfg.margin < 0:
        raise ValueError(f"tile must be >= 8 and margin >= 0 (got {cfg.tile}, {cfg.margin})")
    if not 0 < cfg.coverage < 1:
        raise ValueError(f"coverage must be in (0, 1), got {cfg.coverage}")
    scene_path = Path(scene_path)
    out = Path(out_dir)
    mcfg = model.config
    classes = list(mcfg.classes)
    with bounded_gdal_cache(cfg.gdal_cache_mb), SceneReader(scene_path, mcfg.bands, cfg.bands, cfg.nir_band) as reader:
        info = reader.info
        gsd = cfg.gsd if cfg.gsd is not None else info.gsd
        warnings = check_gsd(scene_path, gsd, model, cfg.force)
        zone_list = _load_zones(zones, scene_path, info, warnings)
        out.mkdir(parents=True, exist_ok=True)
        # Calibrated per-class scale at this GSD: applied to the map itself, so every integral of
        # density.tif is the reported (corrected) count.
        scale = np.array([corrected_count(mcfg.interval, 1.0, c, gsd) for c in classes], dtype=np.float32)
        calibrated_tta = bool((mcfg.interval or {}).get("tta", False))
        tta = calibrated_tta if cfg.tta is None else cfg.tta
        if mcfg.interval and tta != calibrated_tta:
            on_off = {True: "on", False: "off"}
            warnings.append(f"the weights were calibrated with test-time augmentation {on_off[calibrated_tta]}; "
                            f"with it {on_off[tta]} the count scale and intervals may not hold")
        density_path = out / "density.tif"
        tmp = out / ".density.tif.tmp"
        profile = {
            "driver": "GTiff", "width": info.width, "height": info.height, "count": len(classes),
            "dtype": "float32", "crs": info.crs, "transform": info.transform, "compress": "deflate",
            "predictor": 3, "tiled": True, "blockxsize": 256, "blockysize": 256, "BIGTIFF": "IF_SAFER",
        }
        totals = np.zeros(len(classes), dtype=np.float64)
        invalid = 0
        tiles = _partition(info.width, info.height, cfg.tile)
        m = cfg.margin
        # Written beside the final file and renamed at the end: a failure part-way (a truncated
        # scene, Ctrl-C) leaves the previous density.tif as it was and no half-written file.
        try:
            with rasterio.open(tmp, "w", **profile) as dst, progress(
                disable=None if cfg.show_progress is None else not cfg.show_progress
            ) as bar:
                task = bar.add_task(f"density {scene_path.name}", total=len(tiles))
                for core in tiles:
                    c0, r0 = int(core.col_off), int(core.row_off)
                    cw, ch = int(core.width), int(core.height)
                    # Context window clipped to the raster: at the border the model sees the real edge,
                    # exactly as when it runs on the whole image at once.
                    x0, y0 = max(0, c0 - m), max(0, r0 - m)
                    x1, y1 = min(info.width, c0 + cw + m), min(info.height, r0 + ch + m)
                    img, valid = reader.read(Window(x0, y0, x1 - x0, y1 - y0))
                    sl = (slice(r0 - y0, r0 - y0 + ch), slice(c0 - x0, c0 - x0 + cw))
                    if valid[sl].any():
                        dens = model.predict(img, valid, tta=tta)[:, sl[0], sl[1]] * scale[:, None, None]
                    else:
                        dens = np.zeros((len(classes), ch, cw), dtype=np.float32)
                    invalid += int((~valid[sl]).sum())
                    dens = np.ascontiguousarray(dens, dtype=np.float32)
                    dst.write(dens, window=core)
                    totals += dens.sum(axis=(1, 2), dtype=np.float64)
                    bar.advance(task)
                for i, c in enumerate(classes, start=1):
                    dst.set_band_description(i, c)
                dst.units = [UNITS] * len(classes)
                dst.update_tags(
                    UNITS=UNITS, CLASSES=",".join(classes), GSD="" if gsd is None else f"{gsd:.4f}",
                    SOURCE_SCENE=scene_path.name,
                    **{f"COUNT_{c.upper()}": f"{totals[i]:.3f}" for i, c in enumerate(classes)},
                )
            if invalid == info.width * info.height:
                raise RasterError(scene_path, "scene has no valid pixels (all nodata): nothing to count")
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(density_path)
    if invalid:
        warnings.append(f"{invalid} nodata pixel(s) counted as empty")
    for w in warnings:
        log.warning("%s: %s", scene_path, w)

    def row(zone: str, kind: str, cls: str, count: float) -> dict[str, Any]:
        lo, hi = count_interval(mcfg.interval, count, cls, gsd, cfg.coverage, kind)
        return {"zone": zone, "kind": kind, "class": cls, "count": float(count), "lower": lo, "upper": hi}

    rows = [row("all", "scene", c, totals[i]) for i, c in enumerate(classes)]
    if zone_list:
        with rasterio.open(density_path) as ds:
            for z in zone_list:
                sums = _zone_sums(ds, z.geometry)
                rows.extend(row(z.name, z.kind, c, sums[i]) for i, c in enumerate(classes))
    result = DensityResult(scene_path, density_path, gsd, classes, rows, warnings, {"density": density_path})
    result.files.update(write_counts(result, out, model, cfg.coverage, info))
    return result


def _fmt(v: float) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:.2f}"


def write_counts(
    result: DensityResult, out_dir: str | Path, model: DensityModel, coverage: float, info: Any = None
) -> dict[str, Path]:
    """Write ``counts.csv`` (columns :data:`CSV_COLUMNS`) and ``counts.json`` (rows plus metadata)."""
    out = Path(out_dir)
    csv_path = out / "counts.csv"
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in result.rows:
        w.writerow([r["zone"], r["class"], f"{r['count']:.2f}", _fmt(r["lower"]), _fmt(r["upper"])])
    atomic_write_bytes(csv_path, buf.getvalue().encode())
    calib = model.config.interval or {}
    meta = {
        "scene": str(result.scene),
        "gsd": result.gsd,
        "crs": getattr(info, "crs", None),
        "acquired": info.acquired.isoformat() if getattr(info, "acquired", None) else None,
        "density": str(result.density),
        "units": UNITS,
        "classes": result.classes,
        "interval": {
            "coverage": coverage,
            "method": calib.get("method", "none (model is not calibrated)"),
            "note": "lower/upper: split-conformal interval calibrated on held-out synthetic sites at "
                    f"{model.config.gsd_range[0]:g}-{model.config.gsd_range[1]:g} m; valid for similar scenes",
        },
        "model": {"classes": model.config.classes, "gsd_range": list(model.config.gsd_range),
                  "created": model.config.created},
        "counts": [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                   for r in result.rows],
        "warnings": result.warnings,
    }
    json_path = out / "counts.json"
    atomic_write_bytes(json_path, json.dumps(meta, indent=2).encode())
    return {"counts_csv": csv_path, "counts_json": json_path}


def density_to_dir(
    scene_path: str | Path,
    out_dir: str | Path,
    weights: str | Path | None = None,
    zones: str | Path | None = None,
    config: DensityRunConfig | None = None,
) -> DensityResult:
    """Load a density model (bundled by default) and run :func:`density_scene` (the CLI command)."""
    return density_scene(scene_path, DensityModel.load(weights), out_dir, zones, config)


