"""Writing rasters and vectors in map coordinates, and reading site zones.

GeoJSON written in a scene's projected CRS carries the (pre-RFC 7946) ``crs`` member so GIS tools
place it; every such file can also be written as an EPSG:4326 copy, which RFC 7946 requires.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from freightwatch.datasets.annotations import ImageLabels
from freightwatch.errors import ZonesError
from freightwatch.taxonomy import CLASSES

ZONE_KINDS: tuple[str, ...] = ("lot", "bridge", "rail_yard", "river", "dock", "road", "water", "shore", "other")
"""Zone kinds freightwatch knows. ``dock``/``shore`` mark mooring edges, ``river``/``water`` open water."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write a file via a temporary file and rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        # mkstemp creates 0600; give the file the permissions a plain open() would have
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_geotiff(
    path: str | Path,
    array: np.ndarray,
    crs: str | CRS | None,
    transform: Affine,
    nodata: float | None = None,
    descriptions: Sequence[str] | None = None,
    tags: dict[str, str] | None = None,
    photometric_rgb: bool = False,
) -> Path:
    """Write a tiled, deflate-compressed GeoTIFF.

    Args:
        path: Output file.
        array: ``(bands, H, W)`` or ``(H, W)``.
        crs: CRS of ``transform`` (``None`` writes an ungeoreferenced TIFF).
        transform: Pixel -> map affine.
        nodata: Nodata value to record.
        descriptions: One name per band (e.g. class names for density maps).
        tags: Dataset-level metadata tags (e.g. ``ACQUISITION_TIME``).
        photometric_rgb: Mark a 3-band uint8 image as RGB so viewers show colour.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = array[None] if array.ndim == 2 else array
    count, height, width = arr.shape
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": count, "dtype": arr.dtype.name,
        "crs": crs, "transform": transform, "nodata": nodata, "compress": "deflate",
        "tiled": True, "blockxsize": 256, "blockysize": 256, "BIGTIFF": "IF_SAFER",
    }
    if arr.dtype == np.uint8:
        profile["predictor"] = 2
    elif np.issubdtype(arr.dtype, np.floating):
        profile["predictor"] = 3
    if photometric_rgb and count == 3 and arr.dtype == np.uint8:
        profile["photometric"] = "RGB"
    tmp = path.with_name(f".{path.name}.tmp")
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(arr)
        if descriptions:
            for i, d in enumerate(descriptions, start=1):
                dst.set_band_description(i, d)
        if tags:
            dst.update_tags(**tags)
    os.replace(tmp, path)
    return path


def _feature_collection(
    features: Iterable[tuple[BaseGeometry | dict[str, Any], dict[str, Any]]],
    src_crs: str | None,
    dst_crs: str | None,
) -> dict[str, Any]:
    feats = []
    for geom, props in features:
        g = mapping(geom) if isinstance(geom, BaseGeometry) else geom
        if src_crs and dst_crs and CRS.from_user_input(src_crs) != CRS.from_user_input(dst_crs):
            g = transform_geom(src_crs, dst_crs, g)
        feats.append({"type": "Feature", "properties": props, "geometry": g})
    fc: dict[str, Any] = {"type": "FeatureCollection", "features": feats}
    out_crs = dst_crs or src_crs
    if out_crs and CRS.from_user_input(out_crs) != CRS.from_epsg(4326):
        fc["crs"] = {"type": "name", "properties": {"name": _crs_urn(out_crs)}}
    return fc


def _crs_urn(crs: str) -> str:
    epsg = CRS.from_user_input(crs).to_epsg()
    return f"urn:ogc:def:crs:EPSG::{epsg}" if epsg else CRS.from_user_input(crs).to_wkt()


def write_geojson(
    path: str | Path,
    features: Iterable[tuple[BaseGeometry | dict[str, Any], dict[str, Any]]],
    crs: str | None,
    wgs84_copy: bool = False,
) -> list[Path]:
    """Write features (geometry in ``crs``, properties) as GeoJSON.

    Args:
        path: Output file, in the features' own CRS.
        features: ``(geometry, properties)`` pairs.
        crs: CRS of the geometries; ``None`` for pixel or unknown coordinates.
        wgs84_copy: Also write ``<stem>_4326.geojson`` reprojected to EPSG:4326.

    Returns:
        The files written.
    """
    feats = list(features)
    path = Path(path)
    atomic_write_bytes(path, json.dumps(_feature_collection(feats, crs, None)).encode())
    written = [path]
    if wgs84_copy and crs:
        p2 = path.with_name(f"{path.stem}_4326{path.suffix}")
        atomic_write_bytes(p2, json.dumps(_feature_collection(feats, crs, "EPSG:4326")).encode())
        written.append(p2)
    return written


@dataclass
class Zone:
    """A named area of a site in map coordinates.

    Attributes:
        name: Unique name (e.g. ``lot_north``).
        kind: One of :data:`ZONE_KINDS`.
        geometry: Polygon (or multipolygon) in the zones' CRS.
        classes: Classes counted in this zone (all when empty).
        properties: Other properties from the file.
    """

    name: str
    kind: str
    geometry: BaseGeometry
    classes: tuple[str, ...] = ()
    properties: dict[str, Any] = field(default_factory=dict)


def read_zones(path: str | Path, to_crs: str | None = None) -> tuple[list[Zone], str | None]:
    """Read a zones GeoJSON; optionally reproject it to a scene's CRS.

    Each feature needs ``name`` and ``kind`` properties and a polygonal geometry. The file's CRS
    comes from its ``crs`` member, else EPSG:4326 (RFC 7946).

    Args:
        path: GeoJSON file.
        to_crs: Reproject the zones to this CRS.

    Returns:
        The zones and the CRS their geometries are now in.

    Raises:
        ZonesError: unreadable JSON, missing properties, non-polygon geometry, unknown kind or
            class, or a CRS that cannot be transformed. Nothing else, whatever the file holds.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ZonesError(path, f"not a readable GeoJSON file ({exc})") from exc
    except RecursionError as exc:  # absurdly deep nesting
        raise ZonesError(path, "not a readable GeoJSON file (nested too deeply)") from exc
    if not isinstance(data, dict) or data.get("type") != "FeatureCollection" or not isinstance(
        data.get("features"), list
    ):
        raise ZonesError(path, "expected a GeoJSON FeatureCollection with a 'features' list")
    src_crs = "EPSG:4326"
    crs_member = data.get("crs")
    if crs_member is not None:
        try:
            name = crs_member["properties"]["name"]
            if not isinstance(name, str):
                raise TypeError("the name must be a string")
            src_crs = CRS.from_user_input(name).to_string()
        except (KeyError, TypeError, ValueError, CRSError) as exc:
            raise ZonesError(path, f"unrecognised 'crs' member {_clip(crs_member)}") from exc
    if to_crs is not None:
        try:
            same_crs = CRS.from_user_input(to_crs) == CRS.from_user_input(src_crs)
        except CRSError as exc:
            raise ZonesError(path, f"cannot reproject zones from {src_crs} to {to_crs} ({exc})") from exc
    zones: list[Zone] = []
    seen: set[str] = set()
    for i, feat in enumerate(data["features"], start=1):
        if not isinstance(feat, dict):
            raise ZonesError(path, f"feature {i} is not an object")
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            raise ZonesError(path, f"feature {i}: 'properties' is not an object")
        name, kind = props.get("name"), props.get("kind")
        if not isinstance(name, str) or not name:
            raise ZonesError(path, f"feature {i} has no 'name' property")
        if not isinstance(kind, str) or kind not in ZONE_KINDS:
            raise ZonesError(path, f"zone {_clip(name)}: kind {_clip(kind)} is not one of {', '.join(ZONE_KINDS)}")
        if name in seen:
            raise ZonesError(path, f"zone name {_clip(name)} is used twice")
        seen.add(name)
        classes = props.get("classes") or ()
        if isinstance(classes, str) or not isinstance(classes, list | tuple):
            raise ZonesError(path, f"zone {_clip(name)}: 'classes' must be a list of class names")
        unknown = [c for c in classes if c not in CLASSES]
        if unknown:
            raise ZonesError(path, f"zone {_clip(name)}: unknown class {_clip(unknown[0])} in 'classes' "
                             f"(known: {', '.join(CLASSES)})")
        try:
            geom_json = feat["geometry"]
            geom = shape(geom_json)
        except Exception as exc:  # noqa: BLE001 - shapely raises many types for bad geometry
            raise ZonesError(path, f"zone {_clip(name)}: bad geometry ({_clip(exc)})") from exc
        if crs_member is None and not geom.is_empty and np.isfinite(geom.bounds).all():
            x0, y0, x1, y1 = geom.bounds
            if x0 < -180 or x1 > 180 or y0 < -90 or y1 > 90:
                raise ZonesError(path, f"zone {_clip(name)}: coordinates ({x0:.6g}, {y0:.6g}) are not longitude/"
                                 "latitude, and a file without a 'crs' member is read as longitude/latitude "
                                 "(RFC 7946): add a 'crs' member naming the file's CRS")
        if to_crs is not None and not same_crs and geom.geom_type in ("Polygon", "MultiPolygon"):
            try:
                geom = shape(transform_geom(src_crs, to_crs, geom_json))
            except Exception as exc:  # noqa: BLE001 - GDAL/PROJ raise many types
                raise ZonesError(path, f"zone {_clip(name)}: cannot transform from {src_crs} to {to_crs} "
                                 f"({_clip(exc)})") from exc
        if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.is_empty:
            raise ZonesError(path, f"zone {_clip(name)}: geometry must be a non-empty Polygon/MultiPolygon")
        if not np.isfinite(geom.bounds).all():
            where = f"cannot be transformed from {src_crs} to {to_crs}" if to_crs else "are not all finite numbers"
            if to_crs and crs_member is None:
                where += " (a file without a 'crs' member is read as longitude/latitude, RFC 7946)"
            raise ZonesError(path, f"zone {_clip(name)}: coordinates {where}")
        if not geom.is_valid:
            geom = geom.buffer(0)
            if geom.is_empty or geom.geom_type not in ("Polygon", "MultiPolygon"):
                raise ZonesError(path, f"zone {_clip(name)}: invalid polygon with no area (self-intersecting?)")
        extra = {k: v for k, v in props.items() if k not in ("name", "kind", "classes")}
        zones.append(Zone(name, kind, geom, tuple(classes), extra))
    return zones, (to_crs or src_crs)


def _clip(value: object, n: int = 80) -> str:
    """``repr`` of a value from a file, shortened: messages stay one line whatever the file holds."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= n else text[: n - 3] + "..."


def zones_outside(
    zones: Sequence[Zone], footprint: BaseGeometry, zones_path: str | Path, scene_name: str
) -> list[str]:
    """Check zones against a scene's footprint (in the zones' CRS).

    Args:
        zones: The zones.
        footprint: The scene's outline (:meth:`SceneInfo.footprint`, exact for rotated grids).
        zones_path: The zones file, named in the error.
        scene_name: The scene, named in the messages.

    Returns:
        A warning naming the zones outside the scene (their counts are 0 because they were not
        imaged, not because they were empty), or nothing.

    Raises:
        ZonesError: no zone overlaps the scene at all (wrong site, or zones in the wrong CRS).
    """
    outside = [z.name for z in zones if not z.geometry.intersects(footprint)]
    if zones and len(outside) == len(zones):
        raise ZonesError(zones_path, f"no zone overlaps the scene {scene_name} (wrong site, or zones in the wrong "
                         "CRS?)")
    if outside:
        shown = ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else "")
        return [f"zone(s) {shown} lie outside the scene {scene_name}: their counts are 0 because they were not "
                "imaged"]
    return []


def write_zones(path: str | Path, zones: Sequence[Zone], crs: str | None) -> list[Path]:
    """Write zones as GeoJSON in ``crs`` (plus nothing else: zones are inputs, kept in one CRS)."""
    feats = [
        (z.geometry, {"name": z.name, "kind": z.kind, "classes": list(z.classes), **z.properties}) for z in zones
    ]
    return write_geojson(path, feats, crs)


def zone_of_points(points_map: np.ndarray, zones: Sequence[Zone]) -> list[str | None]:
    """Name of the zone containing each map point (first in file order), ``None`` outside all zones.

    Args:
        points_map: ``(N, 2)`` map coordinates in the zones' CRS.
        zones: Zones to test, in priority order where they overlap.
    """
    out: list[str | None] = [None] * len(points_map)
    if len(points_map) == 0 or not zones:
        return out
    xy = np.asarray(points_map, dtype=float)
    for z in reversed(zones):  # reversed so the first zone in file order wins on overlaps
        for i in np.flatnonzero(shapely.contains_xy(z.geometry, xy[:, 0], xy[:, 1])):
            out[i] = z.name
    return out


def count_by_zone(labels: ImageLabels, zones: Sequence[Zone]) -> Counter[tuple[str, str]]:
    """Objects per (zone, class) by object centre; zone ``outside`` for objects in no zone.

    Args:
        labels: Objects with the ``transform`` of their image (zones are in map coordinates).
        zones: Zones in the same CRS as ``labels.transform``.
    """
    centres = labels.centers()
    if not len(centres):
        return Counter()
    if labels.transform is None:
        raise ValueError(f"{labels.file_name}: counting by zone needs the image's transform")
    mx, my = labels.transform @ (centres[:, 0], centres[:, 1])
    names = zone_of_points(np.column_stack([mx, my]), zones)
    return Counter((n or "outside", a.cls) for n, a in zip(names, labels.annotations, strict=True))
