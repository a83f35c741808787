"""xView GeoJSON (``xView_train.geojson``): one feature per object, grouped by image.

Each feature's ``properties`` carry ``bounds_imcoords`` (``"xmin,ymin,xmax,ymax"`` in pixels),
``type_id`` (see :data:`~freightwatch.taxonomy.XVIEW_TYPE_NAMES`) and ``image_id`` (the image's
file name); its ``geometry`` is the box in EPSG:4326, kept as ``Annotation.attrs["map_geometry"]``.

Objects are axis-aligned boxes: orientation, boat state and scores cannot be stored and are lost
on writing; boats read back as ``unknown``. Images without objects cannot be represented.

Reading: a ``type_id`` outside the 60 xView classes is malformed, except 75 and 82, which occur in
the released training labels without being xView classes; they are dropped and counted as
``"xView type 75"``/``"xView type 82"``. A known type the mapping does not keep (e.g. 18 "Small
Car") is dropped and counted under its name. Boxes with ``xmin >= xmax`` or ``ymin >= ymax``
(a known defect of the released labels) are malformed. Malformed records are named by position,
e.g. ``features[12]``.

Writing uses one representative type per class (truck 23 "Truck", railcar 33 "Railway Vehicle",
boat 40 "Maritime Vessel") unless ``Annotation.attrs["type_id"]`` holds an xView type of the same
class (it does after reading xView), which is kept.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from rasterio.warp import transform_geom

from freightwatch.datasets.annotations import Annotation, ImageLabels, LabelSet
from freightwatch.datasets.formats._common import (
    BOX_TOL_PX,
    Issues,
    Malformed,
    as_images,
    find_image,
    fit_box,
    fmt_num,
    load_json,
    parse_floats,
    parse_int,
    raster_info,
    resolve_mapping,
    size_from_extent,
)
from freightwatch.errors import LabelFormatError
from freightwatch.taxonomy import XVIEW_TYPE_NAMES, ClassMapping

XVIEW_WRITE_IDS: dict[str, int] = {"truck": 23, "railcar": 33, "boat": 40}
"""The xView ``type_id`` written for each freightwatch class (see module notes)."""

XVIEW_UNUSED_TYPE_IDS: frozenset[int] = frozenset({75, 82})
"""Type ids found in the released xView labels that are not among its 60 classes (dropped)."""


def read_xview(
    path: str | Path,
    mapping: ClassMapping | None = None,
    lenient: bool = False,
    *,
    image_dir: str | Path | None = None,
) -> LabelSet:
    """Read an xView GeoJSON file.

    Args:
        path: The GeoJSON FeatureCollection.
        mapping: xView type name -> freightwatch class; default :meth:`ClassMapping.xview`.
        lenient: Skip malformed features (and images missing from ``image_dir``), noted in
            ``LabelSet.skipped``, instead of raising.
        image_dir: Folder with the images, for their true size (and crs/transform of GeoTIFFs).
            Without it the size is the largest box coordinate, rounded up
            (``attrs["size_from_labels"] = True``; only a lower bound).

    Returns:
        One :class:`ImageLabels` per ``image_id``, in order of first appearance.

    Raises:
        LabelFormatError: unreadable file, invalid JSON, no ``features`` list, or (strict mode) a
            malformed feature.
    """
    path = Path(path)
    mapping = resolve_mapping(mapping, ClassMapping.xview())
    data = load_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("features"), list):
        raise LabelFormatError(path, "expected a GeoJSON FeatureCollection with a 'features' list")
    labels = LabelSet()
    issues = Issues(labels, lenient)

    by_image: dict[str, list[tuple[int, str, np.ndarray, dict[str, Any]]]] = {}
    for i, feat in enumerate(data["features"]):
        try:
            image_id, name, box, attrs = _parse_feature(feat)
        except Malformed as exc:
            issues.report(path, f"features[{i}]: {exc}")
            continue
        by_image.setdefault(image_id, []).append((i, name, box, attrs))

    for image_id, records in by_image.items():
        crs = transform = None
        im_attrs: dict[str, Any] = {}
        if image_dir is not None:
            image_path = Path(image_dir) / image_id
            if not image_path.is_file():
                image_path = find_image(Path(image_dir), PurePath(image_id).stem)
            if image_path is None:
                issues.report(path, f"no image {image_id} in {image_dir} ({len(records)} features)")
                continue
            try:
                width, height, crs, transform = raster_info(image_path)
            except LabelFormatError as exc:
                issues.report(exc.path, exc.message)
                continue
        else:
            width, height = size_from_extent(r[2] for r in records)
            im_attrs["size_from_labels"] = True
        image = ImageLabels(file_name=image_id, width=width, height=height, crs=crs, transform=transform,
                            attrs=im_attrs)
        for i, name, raw, attrs in records:
            try:
                poly = fit_box(*raw[0], *raw[2], width, height, (BOX_TOL_PX, BOX_TOL_PX))
            except Malformed as exc:
                issues.report(path, f"features[{i}] (image {image_id}): {exc}")
                continue
            cls = None if attrs["type_id"] in XVIEW_UNUSED_TYPE_IDS else mapping(name)
            if cls is None:
                labels.dropped[name] += 1
                continue
            image.annotations.append(Annotation(cls, poly, attrs=attrs))
        labels.images.append(image)
    return labels


def write_xview(images: LabelSet | list[ImageLabels], path: str | Path) -> Path:
    """Write an xView GeoJSON FeatureCollection.

    ``geometry`` is each box in EPSG:4326 when the image has ``crs`` and ``transform``; otherwise
    the ``attrs["map_geometry"]`` read from xView, if any; otherwise ``null``.

    Args:
        images: What to write; ``image_id`` is the file name of ``ImageLabels.file_name``.
        path: The GeoJSON file to create (parent folders are created).

    Returns:
        ``path``.
    """
    path = Path(path)
    keep = ClassMapping.xview()
    features: list[dict[str, Any]] = []
    for im in as_images(images):
        image_id = PurePath(im.file_name).name
        boxes = [ann.bbox for ann in im.annotations]
        geoms = _map_boxes(im, boxes)
        for ann, (x0, y0, x1, y1), geom in zip(im.annotations, boxes, geoms, strict=True):
            type_id = ann.attrs.get("type_id")
            if not (isinstance(type_id, int) and type_id in XVIEW_TYPE_NAMES
                    and keep(XVIEW_TYPE_NAMES[type_id]) == ann.cls):
                type_id = XVIEW_WRITE_IDS[ann.cls]
            if geom is None and isinstance(ann.attrs.get("map_geometry"), Mapping):
                geom = ann.attrs["map_geometry"]
            features.append({
                "type": "Feature",
                "geometry": geom,
                "properties": {
                    "bounds_imcoords": ",".join(fmt_num(v) for v in (x0, y0, x1, y1)),
                    "type_id": int(type_id),
                    "image_id": image_id,
                    "feature_id": len(features) + 1,
                },
            })
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"type": "FeatureCollection", "features": features}
    path.write_text(json.dumps(doc, allow_nan=False), encoding="utf-8")
    return path


def _parse_feature(feat: object) -> tuple[str, str, np.ndarray, dict[str, Any]]:
    """Image id, xView type name, raw box polygon and annotation attrs of one feature."""
    if not isinstance(feat, dict) or not isinstance(feat.get("properties"), dict):
        raise Malformed("expected a Feature object with 'properties'")
    props = feat["properties"]
    missing = [k for k in ("bounds_imcoords", "type_id", "image_id") if k not in props]
    if missing:
        raise Malformed(f"missing required propert{'ies' if len(missing) > 1 else 'y'} {', '.join(missing)}")
    image_id = props["image_id"]
    if isinstance(image_id, int) and not isinstance(image_id, bool):
        image_id = str(image_id)
    if not isinstance(image_id, str) or not image_id.strip():
        raise Malformed(f"image_id must be a file name, got {image_id!r}")
    type_id = parse_int(props["type_id"], "type_id")
    if type_id in XVIEW_TYPE_NAMES:
        name = XVIEW_TYPE_NAMES[type_id]
    elif type_id in XVIEW_UNUSED_TYPE_IDS:
        name = f"xView type {type_id}"
    else:
        raise Malformed(f"unknown type_id {type_id} (not an xView class)")
    bounds = props["bounds_imcoords"]
    parts = bounds.split(",") if isinstance(bounds, str) else bounds
    if not isinstance(parts, list) or len(parts) != 4:
        raise Malformed(f"bounds_imcoords must be 'xmin,ymin,xmax,ymax', got {bounds!r:.60}")
    x0, y0, x1, y1 = parse_floats(parts, "bounds_imcoords")
    if x1 <= x0 or y1 <= y0:
        raise Malformed(f"box has zero or negative size (bounds_imcoords {x0:g},{y0:g},{x1:g},{y1:g})")
    attrs: dict[str, Any] = {"source_class": name, "type_id": type_id}
    if isinstance(feat.get("geometry"), dict):
        attrs["map_geometry"] = feat["geometry"]
    fid = props.get("feature_id")
    if isinstance(fid, int | str) and not isinstance(fid, bool):
        attrs["feature_id"] = fid
    box = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)
    return image_id, name, box, attrs


def _map_boxes(im: ImageLabels, boxes: list[tuple[float, float, float, float]]) -> list[dict[str, Any] | None]:
    """Each box's corners in EPSG:4326 as GeoJSON, or ``None``s when the image is not georeferenced."""
    if im.crs is None or im.transform is None or not boxes:
        return [None] * len(boxes)
    polys = []
    for x0, y0, x1, y1 in boxes:
        ring = [im.transform * corner for corner in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
        polys.append({"type": "Polygon", "coordinates": [ring]})
    # transform_geom keeps GeoJSON's (lon, lat) order for EPSG:4326.
    return [_plain(g) for g in transform_geom(im.crs, "EPSG:4326", polys)]



def _plain(geom: Any) -> Any:
    """A geometry as plain dicts/lists, so it serialises and compares like parsed JSON."""
    if isinstance(geom, Mapping):
        return {k: _plain(v) for k, v in geom.items()}
    if isinstance(geom, list | tuple):
        return [_plain(v) for v in geom]
    return geom
