"""Scene catalogs: which scenes were taken when, at what resolution.

A catalog is one of:

* a **folder** of GeoTIFFs (searched recursively; ``*_mask.tif`` / ``*_udm*.tif`` cloud masks and
  density maps written by freightwatch are recognised and left out);
* a **CSV** with a ``path`` column (relative to the CSV) and optional ``time`` (ISO 8601; also
  ``acquired``/``datetime``), ``gsd`` (metres), ``method`` (``detector``/``density``), ``mask`` (a
  cloud/invalid mask raster, nonzero = unusable), ``id`` and ``cloud_cover`` columns;
* a **STAC** ItemCollection (or single Item) JSON: ``properties.datetime`` (or ``start_datetime``),
  ``properties.gsd``, ``properties.eo:cloud_cover``, the image asset (role ``data``/``visual`` or
  key ``visual``/``analytic``/``image``/``data``, else the first GeoTIFF) and a mask asset (role
  ``cloud``/``mask`` or key ``udm``/``udm2``/``cloud_mask``). Asset hrefs are local paths, relative
  to the JSON; remote URLs are reported (freightwatch never downloads).

Acquisition time comes, in order, from the CSV/STAC record, the GeoTIFF's tags or sidecar JSON
(:func:`freightwatch.datasets.raster.read_info`), then a filename pattern (``%Y%m%d_%H%M%S`` style;
a few common ones by default). A scene with no time from any of these is *reported* (``time`` is
``None``), never guessed. Unreadable scenes get an ``error`` and are reported too; one bad scene
never stops a catalog from being read.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from freightwatch.datasets.raster import parse_time, read_info
from freightwatch.errors import FreightwatchError, InputFileError
from freightwatch.taxonomy import CLASSES

log = logging.getLogger(__name__)

DEFAULT_TIME_PATTERNS: tuple[str, ...] = (
    "%Y%m%dT%H%M%S", "%Y%m%d_%H%M%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H-%M-%S", "%Y-%m-%d_%H-%M-%S",
    "%Y-%m-%d", "%Y%m%d",
)
"""Filename patterns tried when a scene has no time in its metadata (PlanetScope-style names first)."""

MASK_SUFFIXES = ("_mask", "_udm", "_udm2", "_cloud", "_cloudmask")
_FIELDS = {"%Y": r"\d{4}", "%m": r"\d{2}", "%d": r"\d{2}", "%H": r"\d{2}", "%M": r"\d{2}", "%S": r"\d{2}",
           "%j": r"\d{3}", "%y": r"\d{2}", "%f": r"\d{1,6}"}
METHODS = ("detector", "density")


class CatalogError(InputFileError):
    """A catalog that cannot be read at all (a single bad scene is reported in its entry instead)."""


@dataclass
class CatalogEntry:
    """One scene of a catalog.

    Attributes:
        path: The image file.
        time: Acquisition time (UTC), ``None`` when no source gives one (reported, not guessed).
        time_source: ``csv``, ``stac``, ``metadata`` (TIFF tags or sidecar JSON), ``filename`` or ``""``.
        gsd: Ground sample distance in metres (``None`` without a CRS and not given).
        crs: The scene CRS, if georeferenced.
        scene_id: Identifier (CSV/STAC id, else the path relative to the catalog).
        method: Counting method forced for this scene (CSV ``method`` column), else ``None`` (by GSD).
        mask: Raster of unusable pixels (cloud, haze; nonzero = unusable) on the scene grid, if any.
        cloud_cover: Scene-level cloud cover 0-1 from the catalog, if given (informational).
        error: Why the scene cannot be used (unreadable, missing, remote), ``None`` when fine.
        properties: Other fields of the catalog record.
    """

    path: Path
    time: datetime | None
    time_source: str = ""
    gsd: float | None = None
    crs: str | None = None
    scene_id: str = ""
    method: str | None = None
    mask: Path | None = None
    cloud_cover: float | None = None
    error: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    @property
    def usable(self) -> bool:
        """Readable and dated."""
        return self.error is None and self.time is not None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly summary."""
        return {"scene": self.scene_id, "path": str(self.path), "time": self.time.isoformat() if self.time else None,
                "time_source": self.time_source, "gsd": self.gsd, "crs": self.crs, "method": self.method,
                "mask": str(self.mask) if self.mask else None, "cloud_cover": self.cloud_cover, "error": self.error}


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """Compile a ``strftime``-style filename pattern (``%Y%m%d_%H%M%S``) into a search regex."""
    out, i = [], 0
    while i < len(pattern):
        tok = pattern[i:i + 2]
        if tok in _FIELDS:
            out.append(_FIELDS[tok])
            i += 2
        elif tok.startswith("%"):
            raise ValueError(f"unsupported field {tok!r} in time pattern {pattern!r} "
                             f"(supported: {' '.join(_FIELDS)})")
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile(rf"(?<!\d)({''.join(out)})(?!\d)")


def time_from_name(name: str, patterns: tuple[str, ...] | list[str] = DEFAULT_TIME_PATTERNS) -> datetime | None:
    """Acquisition time (UTC) from a file name with the first pattern that matches a valid date.

    Dates outside 1972-2100 (before Landsat 1, or digits that are not a date) are ignored.
    """
    for pat in patterns:
        for m in pattern_regex(pat).finditer(name):
            try:
                t = datetime.strptime(m.group(1), pat)
            except ValueError:
                continue
            if 1972 <= t.year <= 2100:
                return t.replace(tzinfo=UTC)
    return None


def is_mask_name(path: Path) -> bool:
    """Whether a file name marks a cloud/validity mask rather than an image."""
    stem = path.stem.lower()
    return any(stem.endswith(s) for s in MASK_SUFFIXES)


def _mask_beside(path: Path) -> Path | None:
    for s in MASK_SUFFIXES:
        for ext in (".tif", ".tiff"):
            cand = path.with_name(path.stem + s + ext)
            if cand.is_file():
                return cand
    return None


def _entry(path: Path, scene_id: str, time: datetime | None, time_source: str, patterns: tuple[str, ...],
           gsd: float | None = None, method: str | None = None, mask: Path | None = None,
           cloud_cover: float | None = None, properties: dict[str, Any] | None = None) -> CatalogEntry:
    e = CatalogEntry(path=path, time=time, time_source=time_source if time else "", gsd=gsd, scene_id=scene_id,
                     method=method, mask=mask, cloud_cover=cloud_cover, properties=properties or {})
    if method is not None and method not in METHODS:
        e.error = f"method {method!r} is not one of {', '.join(METHODS)}"
        return e
    if not path.is_file():
        e.error = "file does not exist"
        return e
    try:
        info = read_info(path)
    except FreightwatchError as exc:
        e.error = str(getattr(exc, "message", exc))
        return e
    e.crs = info.crs
    if e.gsd is None:
        e.gsd = info.gsd
    if e.time is None and info.acquired is not None:
        e.time, e.time_source = info.acquired, "metadata"
    if e.time is None and (t := time_from_name(path.name, patterns)) is not None:
        e.time, e.time_source = t, "filename"
    if e.mask is None:
        e.mask = _mask_beside(path)
    return e


def _is_density_map(path: Path) -> bool:
    try:
        info = read_info(path)
    except FreightwatchError:
        return False
    names = [d for d in info.descriptions if d]
    return bool(names) and set(names) <= set(CLASSES)


def read_catalog(path: str | Path, time_pattern: str | list[str] | None = None) -> list[CatalogEntry]:
    """Read a scene catalog: a folder of GeoTIFFs, a CSV, or a STAC ItemCollection JSON.

    Args:
        path: The folder, ``.csv`` or ``.json``.
        time_pattern: ``strftime``-style filename pattern(s) for scenes without time metadata (tried
            before the defaults in :data:`DEFAULT_TIME_PATTERNS`).

    Returns:
        One entry per scene, sorted by time (undated and unreadable ones last, with ``time=None`` or
        an ``error``: report them).

    Raises:
        CatalogError: the catalog itself is missing, unreadable or has no scene column.
    """
    p = Path(path)
    pats = ([time_pattern] if isinstance(time_pattern, str) else list(time_pattern or [])) + list(
        DEFAULT_TIME_PATTERNS)
    for pat in pats:
        try:
            pattern_regex(pat)
        except ValueError as exc:
            raise CatalogError(p, str(exc)) from None
    patterns = tuple(pats)
    if p.is_dir():
        entries = _read_folder(p, patterns)
    elif p.suffix.lower() == ".csv":
        entries = _read_csv(p, patterns)
    elif p.suffix.lower() in (".json", ".geojson"):
        entries = _read_stac(p, patterns)
    elif p.exists():
        raise CatalogError(p, "a catalog is a folder of GeoTIFFs, a .csv or a STAC .json")
    else:
        raise CatalogError(p, "catalog does not exist")
    entries.sort(key=lambda e: (e.time is None, e.time or datetime.max.replace(tzinfo=UTC), e.scene_id))
    return entries


def _read_folder(root: Path, patterns: tuple[str, ...]) -> list[CatalogEntry]:
    files = sorted(f for ext in ("*.tif", "*.tiff", "*.TIF", "*.TIFF") for f in root.rglob(ext))
    files = [f for f in dict.fromkeys(files) if not f.name.startswith(".") and not is_mask_name(f)]
    out = []
    for f in files:
        if _is_density_map(f):
            log.debug("%s: a density map (bands named by class), not a scene; left out", f)
            continue
        rel = f.relative_to(root)
        out.append(_entry(f, str(rel.with_suffix("")), None, "", patterns))
    if not out:
        raise CatalogError(root, "no GeoTIFF scenes (*.tif) in this folder")
    return out


def _first(row: dict[str, Any], *keys: str) -> Any:
    for k in keys:
        v = row.get(k)
        if v not in (None, ""):
            return v
    return None


def _read_csv(path: Path, patterns: tuple[str, ...]) -> list[CatalogEntry]:
    try:
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise CatalogError(path, f"not a readable CSV ({exc})") from exc
    if not rows:
        raise CatalogError(path, "no rows")
    cols = {c.strip().lower() for c in rows[0] if c}
    if not cols & {"path", "file", "href", "scene"}:
        raise CatalogError(path, f"needs a 'path' column (found: {', '.join(sorted(cols))})")
    out = []
    for i, raw in enumerate(rows, start=2):
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
        ref = _first(row, "path", "file", "href", "scene")
        if ref is None:
            raise CatalogError(path, "empty path", line=i)
        f = Path(ref) if Path(ref).is_absolute() else path.parent / ref
        t_text = _first(row, "time", "acquired", "datetime", "acquisition_time")
        t = parse_time(t_text) if t_text else None
        if t_text and t is None:
            raise CatalogError(path, f"time {t_text!r} is not an ISO 8601 time", line=i)
        try:
            gsd = float(row["gsd"]) if row.get("gsd") else None
            cc = float(row["cloud_cover"]) if row.get("cloud_cover") else None
        except ValueError as exc:
            raise CatalogError(path, f"not a number ({exc})", line=i) from None
        mask = row.get("mask")
        mpath = None if not mask else (Path(mask) if Path(mask).is_absolute() else path.parent / mask)
        out.append(_entry(f, row.get("id") or Path(ref).with_suffix("").as_posix(), t, "csv", patterns, gsd=gsd,
                          method=(row.get("method") or None), mask=mpath, cloud_cover=cc))
    return out


def _asset(assets: dict[str, Any], roles: tuple[str, ...], keys: tuple[str, ...], tiff_fallback: bool) -> Any:
    for a in assets.values():
        if isinstance(a, dict) and set(a.get("roles") or ()) & set(roles):
            return a
    for k in keys:
        if isinstance(assets.get(k), dict):
            return assets[k]
    if tiff_fallback:
        for a in assets.values():
            if isinstance(a, dict) and ("tiff" in str(a.get("type", "")) or
                                        str(a.get("href", "")).lower().endswith((".tif", ".tiff"))):
                return a
    return None


def _local_href(base: Path, href: str) -> tuple[Path | None, str | None]:
    if href.startswith("file://"):
        href = href[7:]
    if re.match(r"^[a-z][a-z0-9+.-]*://", href, re.I):
        return None, f"remote asset {href} (freightwatch reads local files only; download it first)"
    p = Path(href)
    return (p if p.is_absolute() else base / p), None


def _read_stac(path: Path, patterns: tuple[str, ...]) -> list[CatalogEntry]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogError(path, f"not a readable JSON file ({exc})") from exc
    if isinstance(data, dict) and data.get("type") == "Feature":
        items = [data]
    elif isinstance(data, dict) and isinstance(data.get("features"), list):
        items = data["features"]
    else:
        raise CatalogError(path, "expected a STAC ItemCollection (FeatureCollection of Items) or an Item")
    out = []
    for i, item in enumerate(items, start=1):
        if not isinstance(item, dict) or not isinstance(item.get("assets"), dict):
            raise CatalogError(path, f"item {i} has no 'assets'", line=i)
        props = item.get("properties") or {}
        sid = str(item.get("id") or f"item{i}")
        t_text = props.get("datetime") or props.get("start_datetime")
        t = parse_time(t_text) if t_text else None
        asset = _asset(item["assets"], ("data", "visual"), ("visual", "analytic", "image", "data"), True)
        if asset is None or not asset.get("href"):
            out.append(CatalogEntry(path=path, time=t, time_source="stac" if t else "", scene_id=sid,
                                    error="no image asset (role data/visual or a GeoTIFF)"))
            continue
        img, err = _local_href(path.parent, str(asset["href"]))
        if err or img is None:
            out.append(CatalogEntry(path=Path(str(asset["href"])), time=t, time_source="stac" if t else "",
                                    scene_id=sid, error=err))
            continue
        m = _asset(item["assets"], ("cloud", "mask", "cloud-shadow"), ("udm2", "udm", "cloud_mask", "mask"), False)
        mpath = _local_href(path.parent, str(m["href"]))[0] if m and m.get("href") else None
        gsd = props.get("gsd")
        cc = props.get("eo:cloud_cover")
        out.append(_entry(img, sid, t, "stac", patterns, gsd=float(gsd) if gsd is not None else None, mask=mpath,
                          cloud_cover=float(cc) / 100.0 if cc is not None else None,  # STAC: percent
                          properties={k: v for k, v in props.items() if isinstance(v, str | int | float | bool)}))
    return out


def undated(entries: list[CatalogEntry]) -> list[CatalogEntry]:
    """Readable entries with no acquisition time (to report)."""
    return [e for e in entries if e.error is None and e.time is None]
