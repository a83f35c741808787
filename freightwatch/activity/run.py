"""Counting every scene of a catalog at a site: one tidy row per scene, zone and class.

High-resolution scenes go to the detector and coarse ones to the density model, chosen by GSD
(:attr:`Site.detector_max_gsd`, default 1.5 m) unless the catalog or the caller forces a method.
For each zone the fraction of valid pixels (inside the scene, not nodata, not flagged by a cloud
mask) is measured; a zone below ``min_valid_fraction`` is marked ``masked`` with no count (never a
zero), a partly valid zone is counted on its valid part and scaled to the whole zone (``partial``;
the unscaled count stays in ``count_observed``).

:func:`count_scene` is the per-scene unit (batch runs call it scene by scene); :func:`run_catalog`
runs a whole catalog, never losing finished scenes to a bad one, and writes the table.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from rasterio.crs import CRS
from rasterio.features import geometry_mask
from rasterio.warp import transform_geom
from rasterio.windows import Window
from shapely.geometry import mapping, shape

from freightwatch._progress import progress
from freightwatch.activity.catalog import CatalogEntry
from freightwatch.activity.site import Site
from freightwatch.activity.table import COLUMNS, add_calendar, order_columns, write_table
from freightwatch.datasets.geo import Zone, write_zones
from freightwatch.datasets.raster import grid_footprint
from freightwatch.errors import FreightwatchError, InputFileError

log = logging.getLogger(__name__)

METHODS = ("auto", "detector", "density")
PARTIAL_BELOW = 0.99
"""Zones with less valid area than this are ``partial`` (counted on the valid part, scaled)."""


@dataclass
class RunConfig:
    """How scenes are counted.

    Attributes:
        method: ``auto`` (by GSD), ``detector`` or ``density`` for every scene.
        detector_max_gsd: GSD threshold in metres for ``auto`` (default: the site's).
        min_valid_fraction: Zones with less valid area are ``masked`` (default: the site's).
        coverage: Nominal coverage of the count intervals.
        detect: Detector settings (:class:`freightwatch.inference.detect.DetectConfig`).
        density: Density settings (:class:`freightwatch.inference.density.DensityRunConfig`).
        maps_dir: Keep per-scene outputs (density maps, detections) in ``maps_dir/<scene>``; ``None``
            keeps nothing.
    """

    method: str = "auto"
    detector_max_gsd: float | None = None
    min_valid_fraction: float | None = None
    coverage: float = 0.9
    detect: Any = None
    density: Any = None
    maps_dir: Path | None = None


def choose_method(entry: CatalogEntry, site: Site, config: RunConfig | None = None) -> str:
    """``detector`` or ``density`` for a scene: the catalog's choice, the config's, else by GSD.

    Raises:
        InputFileError: the GSD is unknown and no method is forced.
    """
    cfg = config or RunConfig()
    if cfg.method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    if entry.method:
        return entry.method
    if cfg.method != "auto":
        return cfg.method
    if entry.gsd is None:
        raise InputFileError(entry.path, "GSD unknown (no CRS and none in the catalog): give a gsd in the catalog "
                                         "or choose --method")
    limit = cfg.detector_max_gsd if cfg.detector_max_gsd is not None else site.detector_max_gsd
    return "detector" if entry.gsd <= limit else "density"


def zones_in_crs(site: Site, crs: str | None) -> list[Zone]:
    """The site's zones with geometries in ``crs`` (unchanged when already there or unknown)."""
    if crs is None or site.zones_crs is None or CRS.from_user_input(crs) == CRS.from_user_input(site.zones_crs):
        return list(site.zones)
    return [Zone(z.name, z.kind, shape(transform_geom(site.zones_crs, crs, mapping(z.geometry))), z.classes,
                 dict(z.properties)) for z in site.zones]



def _pixel_window(ds: rasterio.DatasetReader, geom: Any) -> Window | None:
    """Pixel window covering ``geom`` via the inverse transform (``from_bounds`` fails on south-up grids)."""
    x0, y0, x1, y1 = geom.bounds
    cols, rows = ~ds.transform * (np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]))
    c0, r0 = max(0, int(math.floor(cols.min()))), max(0, int(math.floor(rows.min())))
    c1, r1 = min(ds.width, int(math.ceil(cols.max())) + 1), min(ds.height, int(math.ceil(rows.max())) + 1)
    if c1 <= c0 or r1 <= r0:
        return None
    return Window(c0, r0, c1 - c0, r1 - r0)

def zone_valid_fractions(scene_path: Path, zones: Sequence[Zone], mask_path: Path | None = None) -> dict[str, float]:
    """Fraction of each zone's area covered by valid pixels of a scene.

    A pixel is valid when it is inside the scene, not nodata (the dataset mask) and, with a mask
    raster on the same grid, zero there (nonzero = cloud / unusable). Zone parts outside the scene
    count as invalid.

    Raises:
        InputFileError: a mask raster whose grid differs from the scene's.
    """
    out: dict[str, float] = {}
    with rasterio.open(scene_path) as ds:
        mds = rasterio.open(mask_path) if mask_path is not None else None
        try:
            if mds is not None and (mds.width, mds.height) != (ds.width, ds.height):
                raise InputFileError(mask_path, f"mask is {mds.width}x{mds.height} px but the scene "
                                                f"{scene_path.name} is {ds.width}x{ds.height}: they must share a grid")
            footprint = grid_footprint(ds.transform, ds.width, ds.height)
            for z in zones:
                part = z.geometry.intersection(footprint)
                if part.is_empty or z.geometry.area <= 0:
                    out[z.name] = 0.0
                    continue
                w = _pixel_window(ds, part)
                if w is None:
                    out[z.name] = 0.0
                    continue
                inside = geometry_mask([part], out_shape=(int(w.height), int(w.width)),
                                       transform=ds.window_transform(w), invert=True)
                valid = ds.dataset_mask(window=w) > 0
                if mds is not None:
                    valid &= mds.read(1, window=w) == 0
                n_inside = int(inside.sum())
                if n_inside == 0:
                    # A zone thinner than a pixel: judge it by the pixel under its centre.
                    out[z.name] = float(valid.any()) * min(1.0, part.area / z.geometry.area)
                    continue
                # Valid share of the zone's pixels, times the share of the zone that lies in the scene.
                out[z.name] = float((inside & valid).sum() / n_inside) * min(1.0, part.area / z.geometry.area)
        finally:
            if mds is not None:
                mds.close()
    return out


def _scene_dir(config: RunConfig, entry: CatalogEntry) -> Path | None:
    if config.maps_dir is None:
        return None
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in entry.scene_id) or "scene"
    return Path(config.maps_dir) / safe


def _detector_counts(entry: CatalogEntry, site: Site, detector: Any, config: RunConfig,
                     zones: list[Zone]) -> tuple[dict[tuple[str, str], float], list[str]]:
    from freightwatch.inference.detect import DetectConfig, detect_scene, write_detections

    dcfg = config.detect or DetectConfig()
    with tempfile.TemporaryDirectory(prefix="fw-zones-") as tmp:
        zpath = Path(tmp) / "zones.geojson"
        write_zones(zpath, zones, entry.crs)
        res = detect_scene(entry.path, detector, dcfg, zpath if entry.crs else None, show_progress=False)
    # Objects under cloud-masked pixels are dropped like the cloud's other pixels: the zone is counted on
    # its valid part only (and scaled up later), whatever the detector made of the cloud.
    hidden = np.zeros(len(res.labels.annotations), dtype=bool)
    if entry.mask is not None and len(hidden):
        centres = res.labels.centers()
        with rasterio.open(entry.mask) as mds:  # point samples: bounded memory on any scene size
            xs, ys = mds.transform @ (centres[:, 0], centres[:, 1])
            hidden = np.array([v[0] != 0 for v in mds.sample(zip(xs, ys, strict=True), indexes=1)], dtype=bool)
    counts: dict[tuple[str, str], float] = {}
    for a, zone, h in zip(res.labels.annotations, res.zone_of, hidden, strict=True):
        if zone is not None and not h:
            counts[(zone, a.cls)] = counts.get((zone, a.cls), 0.0) + 1
    out_dir = _scene_dir(config, entry)
    if out_dir is not None:
        write_detections(res, entry.path, out_dir, bands=dcfg.bands)
    return counts, list(res.warnings)


def _density_counts(entry: CatalogEntry, site: Site, model: Any, config: RunConfig, zones: list[Zone],
                    ) -> tuple[dict[tuple[str, str], float], list[str], dict[str, float]]:
    from freightwatch.inference.density import DensityRunConfig, density_scene

    dcfg = config.density or DensityRunConfig(show_progress=False)
    keep = _scene_dir(config, entry)
    with tempfile.TemporaryDirectory(prefix="fw-density-") as tmp:
        out_dir = keep or Path(tmp)
        res = density_scene(entry.path, model, out_dir, zones=None, config=dcfg)
        counts: dict[tuple[str, str], float] = {}
        # Integrate the map over each zone's valid pixels only: a cloud hides objects, it is not empty road.
        with rasterio.open(res.density) as ds:
            mds = rasterio.open(entry.mask) if entry.mask is not None else None
            try:
                for z in zones:
                    sums = _masked_zone_sums(ds, z, mds)
                    for i, c in enumerate(res.classes):
                        counts[(z.name, c)] = float(sums[i])
            finally:
                if mds is not None:
                    mds.close()
    gsd = res.gsd
    return counts, list(res.warnings), {"gsd": gsd if gsd is not None else math.nan}


def _masked_zone_sums(ds: rasterio.DatasetReader, zone: Zone, mds: Any) -> np.ndarray:
    sums = np.zeros(ds.count, dtype=np.float64)
    part = zone.geometry.intersection(grid_footprint(ds.transform, ds.width, ds.height))
    if part.is_empty:
        return sums
    w = _pixel_window(ds, part)
    if w is None:
        return sums
    inside = geometry_mask([part], out_shape=(int(w.height), int(w.width)), transform=ds.window_transform(w),
                           invert=True)
    if mds is not None:
        inside &= mds.read(1, window=w) == 0
    data = ds.read(window=w)
    return data[:, inside].sum(axis=1, dtype=np.float64)


def _interval(method: str, count: float, cls: str, kind: str, gsd: float | None, site: Site, model: Any,
              coverage: float) -> tuple[float, float]:
    if method == "density" and model is not None:
        from freightwatch.models.density import count_interval

        return count_interval(model.config.interval, count, cls, gsd, coverage, kind)
    # The detector has no calibrated interval: +-(relative error x count + 1 object), from the site file.
    half = site.detector_rel_error * count + 1.0
    return max(0.0, count - half), count + half


def count_scene(
    entry: CatalogEntry,
    site: Site,
    *,
    detector: Any = None,
    density_model: Any = None,
    config: RunConfig | None = None,
) -> list[dict[str, Any]]:
    """Count one scene: one row per zone and class of the site (columns :data:`~freightwatch.activity.table.COLUMNS`).

    Args:
        entry: The scene (dated; see :func:`freightwatch.activity.catalog.read_catalog`).
        site: The site (zones are reprojected to the scene CRS).
        detector: A loaded :class:`freightwatch.models.detector.Detector` (needed for detector scenes).
        density_model: A loaded :class:`freightwatch.models.density.DensityModel` (for density scenes).
        config: Method choice and settings.

    Returns:
        Row dicts; ``masked`` rows have ``count``/``lower``/``upper`` NaN.

    Raises:
        InputFileError: undated, unreadable or ungeoreferenced scene, unknown GSD, a missing model for
            its method, or zones that miss the scene entirely.
    """
    cfg = config or RunConfig()
    if entry.error:
        raise InputFileError(entry.path, entry.error)
    if entry.time is None:
        raise InputFileError(entry.path, "no acquisition time (catalog, TIFF tags, sidecar JSON or file name)")
    if entry.crs is None:
        raise InputFileError(entry.path, "scene has no CRS, so the site's zones cannot be placed on it")
    method = choose_method(entry, site, cfg)
    zones = zones_in_crs(site, entry.crs)
    fractions = zone_valid_fractions(entry.path, zones, entry.mask)
    if not any(v > 0 for v in fractions.values()):
        raise InputFileError(entry.path, f"no zone of site {site.name} overlaps valid pixels of this scene")
    if method == "detector":
        if detector is None:
            raise InputFileError(entry.path, "a detector scene needs detector weights")
        counts, warns = _detector_counts(entry, site, detector, cfg, zones)
        gsd = entry.gsd
    else:
        if density_model is None:
            raise InputFileError(entry.path, "a density scene needs density weights")
        counts, warns, extra = _density_counts(entry, site, density_model, cfg, zones)
        gsd = extra["gsd"] if math.isfinite(extra["gsd"]) else entry.gsd
    for w in warns:
        log.debug("%s: %s", entry.path, w)
    min_valid = cfg.min_valid_fraction if cfg.min_valid_fraction is not None else site.min_valid_fraction
    rows = []
    for z in zones:
        vf = float(fractions.get(z.name, 0.0))
        for cls in site.zone_classes_of(z.name):
            observed = float(counts.get((z.name, cls), 0.0))
            if vf < max(min_valid, 1e-9):
                status, count, lo, hi = "masked", math.nan, math.nan, math.nan
            else:
                status = "ok" if vf >= PARTIAL_BELOW else "partial"
                count = observed / vf if status == "partial" else observed
                lo, hi = _interval(method, count, cls, z.kind, gsd, site, density_model, cfg.coverage)
            rows.append({
                "site": site.name, "zone": z.name, "class": cls, "time": entry.time, "count": count,
                "lower": lo, "upper": hi, "method": method, "gsd": gsd, "valid_fraction": round(vf, 4),
                "status": status, "scene": entry.scene_id, "coverage": cfg.coverage, "count_observed": observed,
            })
    return rows


@dataclass
class RunResult:
    """What :func:`run_catalog` did.

    Attributes:
        table: The counts table (with calendar context).
        problems: ``{"scene", "path", "problem"}`` for every scene left out (undated, unreadable, failed).
        files: Written files by name.
        methods: Scenes per method.
    """

    table: pd.DataFrame
    problems: list[dict[str, str]] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    methods: dict[str, int] = field(default_factory=dict)


def _load_models(needed: set[str], weights: str | Path | None, density_weights: str | Path | None) -> tuple[Any, Any]:
    detector = density = None
    if "detector" in needed:
        from freightwatch.models.detector import Detector, bundled_detector

        if weights is None and not bundled_detector().is_file():
            raise InputFileError(bundled_detector(), "high-resolution scenes need the detector, but no detector "
                                                     "weights are installed: pass --weights W (train with "
                                                     "`freightwatch train detector`), or --method density")
        detector = Detector.load(weights)
    if "density" in needed:
        from freightwatch.models.density import DensityModel

        density = DensityModel.load(density_weights)
    return detector, density


def run_catalog(
    entries: Sequence[CatalogEntry],
    site: Site,
    out_dir: str | Path,
    config: RunConfig | None = None,
    weights: str | Path | None = None,
    density_weights: str | Path | None = None,
    detector: Any = None,
    density_model: Any = None,
    show_progress: bool | None = None,
) -> RunResult:
    """Count every usable scene and write ``counts.parquet``, ``counts.csv`` and ``run.json`` to ``out_dir``.

    Scenes without a time, unreadable scenes and scenes that fail are listed in ``problems`` (and
    ``run.json``); the rest are counted. The table is written even when interrupted part-way.

    Args:
        entries: Catalog entries (:func:`freightwatch.activity.catalog.read_catalog`).
        site: The site.
        out_dir: Output folder.
        config: Method choice and settings.
        weights: Detector weights (default: bundled, when present).
        density_weights: Density weights (default: bundled).
        detector: An already loaded detector (instead of ``weights``).
        density_model: An already loaded density model (instead of ``density_weights``).
        show_progress: Progress bar (default: on a terminal).

    Raises:
        InputFileError: weights needed by some scene are missing (before any scene is counted).
    """
    cfg = config or RunConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    problems: list[dict[str, str]] = []
    todo: list[tuple[CatalogEntry, str]] = []
    for e in entries:
        if e.error:
            problems.append({"scene": e.scene_id, "path": str(e.path), "problem": e.error})
        elif e.time is None:
            problems.append({"scene": e.scene_id, "path": str(e.path),
                             "problem": "no acquisition time in the catalog, TIFF tags, sidecar JSON or file name: "
                                        "not counted (add it to a CSV catalog or pass --time-pattern)"})
        else:
            try:
                todo.append((e, choose_method(e, site, cfg)))
            except FreightwatchError as exc:
                problems.append({"scene": e.scene_id, "path": str(e.path),
                                 "problem": getattr(exc, "message", str(exc))})
    needed = {m for _, m in todo}
    if detector is None and "detector" in needed or density_model is None and "density" in needed:
        det, den = _load_models({m for m in needed if (m == "detector" and detector is None)
                                 or (m == "density" and density_model is None)}, weights, density_weights)
        detector = detector or det
        density_model = density_model or den
    rows: list[dict[str, Any]] = []
    methods: dict[str, int] = {}
    result = RunResult(pd.DataFrame(columns=list(COLUMNS)), problems)
    try:
        with progress(disable=None if show_progress is None else not show_progress) as bar:
            task = bar.add_task(f"counting {site.name}", total=len(todo))
            for e, m in todo:
                try:
                    rows.extend(count_scene(e, site, detector=detector, density_model=density_model, config=cfg))
                    methods[m] = methods.get(m, 0) + 1
                except Exception as exc:  # noqa: BLE001 - one bad scene must not lose the others
                    msg = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                    log.warning("%s: %s (left out)", e.path, msg)
                    problems.append({"scene": e.scene_id, "path": str(e.path), "problem": msg})
                bar.advance(task)
    finally:
        table = pd.DataFrame(rows, columns=list(COLUMNS))
        if len(table):
            table = add_calendar(table, site.site_calendar())
        result.table = order_columns(table)
        result.methods = methods
        paths = write_table(result.table, out / "counts", site.metadata())
        result.files.update({"parquet": paths[0], "csv": paths[1]})
        summary = {
            "site": site.metadata(), "written": datetime.now(UTC).isoformat(timespec="seconds"),
            "scenes": len(entries), "counted": sum(methods.values()), "methods": methods,
            "settings": {"method": cfg.method, "detector_max_gsd": cfg.detector_max_gsd or site.detector_max_gsd,
                         "min_valid_fraction": cfg.min_valid_fraction if cfg.min_valid_fraction is not None
                         else site.min_valid_fraction, "coverage": cfg.coverage},
            "masked_rows": int((result.table["status"] == "masked").sum()) if len(result.table) else 0,
            "problems": problems,
        }
        (out / "run.json").write_text(json.dumps(summary, indent=2, default=str))
        result.files["summary"] = out / "run.json"
    return result
