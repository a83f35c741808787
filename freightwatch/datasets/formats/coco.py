"""COCO detection JSON (``images`` / ``annotations`` / ``categories``).

Written files load with ``pycocotools.coco.COCO``. Conventions:

* Categories are written for :data:`~freightwatch.taxonomy.CLASSES` with ids 1..3 (``truck`` 1,
  ``railcar`` 2, ``boat`` 3): COCO ids start at 1 and some tools treat 0 as background. Class ids
  elsewhere in freightwatch are 0-based; use :data:`CATEGORY_IDS` to convert.
* Every annotation gets its oriented polygon as ``segmentation`` (one polygon), its axis-aligned
  ``bbox`` ``[x, y, w, h]``, ``area`` (the polygon's), ``iscrowd: 0``, the boat ``state`` and, for
  predictions, ``score``.
* Image records may carry freightwatch extras, written when known and read back: ``gsd`` (metres),
  ``crs`` (string), ``transform`` (6 numbers in ``affine.Affine`` order ``[a, b, c, d, e, f]``:
  ``x = a*col + b*row + c``, ``y = d*col + e*row + f`` - *not* GDAL's ``(c, a, b, f, d, e)``),
  ``acquired`` (ISO 8601) and ``scene_id``.

Reading takes the polygon from ``segmentation`` when it is a polygon list (the first polygon),
else (RLE masks, empty lists) from ``bbox``. The boat state is read from ``"state"`` or
``"attributes": {"state": ...}``. Crowd regions (``iscrowd: 1``) are not single objects: they are
dropped and counted as ``"<name> (iscrowd)"``. Malformed records are named by their position, e.g.
``annotations[12] (id 40)``: JSON has no useful line numbers once parsed.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from freightwatch.datasets.annotations import Annotation, ImageLabels, LabelSet
from freightwatch.datasets.formats._common import (
    BOX_TOL_PX,
    Issues,
    Malformed,
    as_images,
    fit_box,
    fit_polygon,
    load_json,
    parse_float,
    parse_floats,
    parse_int,
    polygon_area,
    resolve_mapping,
)
from freightwatch.errors import LabelFormatError
from freightwatch.taxonomy import CLASSES, BoatState, ClassMapping

CATEGORY_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(CLASSES)}
"""COCO category id written for each freightwatch class (1-based, see module notes)."""

_STATES = ", ".join(s.value for s in BoatState)


def read_coco(
    path: str | Path, mapping: ClassMapping | None = None, lenient: bool = False
) -> LabelSet:
    """Read a COCO detection JSON file.

    Args:
        path: The JSON file.
        mapping: Category name -> freightwatch class; default :meth:`ClassMapping.builtin`.
        lenient: Skip malformed image/annotation records (noted in ``LabelSet.skipped``) instead
            of raising.

    Returns:
        One :class:`ImageLabels` per image record, in file order. ``ImageLabels.attrs["coco_id"]``
        and ``Annotation.attrs["coco_id"]`` keep the source ids; ``Annotation.attrs["source_class"]``
        the category name.

    Raises:
        LabelFormatError: unreadable file, invalid JSON, missing ``images``/``categories``,
            malformed categories, or (strict mode) a malformed record.
    """
    path = Path(path)
    mapping = resolve_mapping(mapping, ClassMapping.builtin())
    data = load_json(path)
    if not isinstance(data, dict):
        raise LabelFormatError(path, "expected a JSON object with images, annotations and categories")
    for key in ("images", "categories"):
        if key not in data:
            raise LabelFormatError(path, f"missing required key {key!r}")
    # Image-info files (e.g. COCO test sets) have no annotations: that is an unlabelled dataset.
    ann_records = data.get("annotations", [])
    for key, value in (("images", data["images"]), ("categories", data["categories"]),
                       ("annotations", ann_records)):
        if not isinstance(value, list):
            raise LabelFormatError(path, f"{key!r} must be a list, got {type(value).__name__}")

    categories = _read_categories(path, data["categories"])
    if not categories and ann_records:
        raise LabelFormatError(path, "no categories: annotations cannot be named")

    labels = LabelSet()
    issues = Issues(labels, lenient)
    by_id: dict[int, ImageLabels] = {}
    for i, rec in enumerate(data["images"]):
        try:
            image = _read_image(rec)
            if image.attrs["coco_id"] in by_id:
                raise Malformed(f"duplicate image id {image.attrs['coco_id']}")
        except Malformed as exc:
            issues.report(path, f"{_where('images', i, rec)}: {exc}")
            continue
        by_id[image.attrs["coco_id"]] = image
        labels.images.append(image)

    for i, rec in enumerate(ann_records):
        try:
            image, name, ann, crowd = _read_annotation(rec, by_id, categories)
        except Malformed as exc:
            issues.report(path, f"{_where('annotations', i, rec)}: {exc}")
            continue
        cls = mapping(name)
        if crowd:
            labels.dropped[f"{name} (iscrowd)"] += 1
        elif cls is None:
            labels.dropped[name] += 1
        else:
            ann.cls = cls
            image.annotations.append(ann)
    return labels


def write_coco(images: LabelSet | list[ImageLabels], path: str | Path, *, indent: int | None = None) -> Path:
    """Write a COCO detection JSON file (see module notes for the conventions).

    Image and annotation ids are assigned 1..N in order; ids read from another file are not reused.

    Args:
        images: What to write.
        path: The JSON file to create (parent folders are created).
        indent: JSON indentation; ``None`` for compact output.

    Returns:
        ``path``.
    """
    path = Path(path)
    out_images: list[dict[str, Any]] = []
    out_anns: list[dict[str, Any]] = []
    for image_id, im in enumerate(as_images(images), start=1):
        rec: dict[str, Any] = {
            "id": image_id, "file_name": im.file_name, "width": int(im.width), "height": int(im.height),
        }
        if im.gsd is not None:
            rec["gsd"] = float(im.gsd)
        if im.crs is not None:
            rec["crs"] = str(im.crs)
        if im.transform is not None:
            rec["transform"] = [float(v) for v in tuple(im.transform)[:6]]
        if im.acquired is not None:
            rec["acquired"] = im.acquired.isoformat()
        if im.scene_id is not None:
            rec["scene_id"] = str(im.scene_id)
        out_images.append(rec)
        for ann in im.annotations:
            x0, y0, x1, y1 = ann.bbox
            a: dict[str, Any] = {
                "id": len(out_anns) + 1,
                "image_id": image_id,
                "category_id": CATEGORY_IDS[ann.cls],
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                # Always the oriented polygon: the bbox alone would lose the orientation.
                "segmentation": [[float(v) for v in ann.polygon.ravel()]],
                "area": polygon_area(ann.polygon),
                "iscrowd": 0,
                "state": ann.state.value,
            }
            if ann.score is not None:
                a["score"] = float(ann.score)
            out_anns.append(a)
    doc = {
        "info": {"description": "written by freightwatch"},
        "images": out_images,
        "annotations": out_anns,
        "categories": [
            {"id": cid, "name": name, "supercategory": "freight"} for name, cid in CATEGORY_IDS.items()
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # allow_nan=False: NaN/Infinity are not JSON and would make the file unreadable elsewhere.
    path.write_text(json.dumps(doc, indent=indent, allow_nan=False), encoding="utf-8")
    return path


def _where(key: str, index: int, rec: object) -> str:
    """``annotations[3] (id 17)``: a record's position, plus its id when it has a usable one."""
    rid = rec.get("id") if isinstance(rec, dict) else None
    return f"{key}[{index}]" + (f" (id {rid})" if isinstance(rid, int | str) else "")


def _require(rec: object, *keys: str) -> dict[str, Any]:
    if not isinstance(rec, dict):
        raise Malformed(f"expected an object, got {type(rec).__name__}")
    missing = [k for k in keys if k not in rec]
    if missing:
        raise Malformed(f"missing required key{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    return rec


def _read_categories(path: Path, records: list[Any]) -> dict[int, str]:
    """Category id -> name. The names table is needed for everything else, so errors always raise."""
    out: dict[int, str] = {}
    for i, rec in enumerate(records):
        try:
            rec = _require(rec, "id", "name")
            cid = parse_int(rec["id"], "category id")
            if not isinstance(rec["name"], str) or not rec["name"].strip():
                raise Malformed("category name must be a non-empty string")
            if cid in out:
                raise Malformed(f"duplicate category id {cid}")
        except Malformed as exc:
            raise LabelFormatError(path, f"{_where('categories', i, rec)}: {exc}") from None
        out[cid] = rec["name"]
    return out


def _read_image(rec: object) -> ImageLabels:
    rec = _require(rec, "id", "file_name", "width", "height")
    image_id = parse_int(rec["id"], "image id")
    if not isinstance(rec["file_name"], str) or not rec["file_name"]:
        raise Malformed("file_name must be a non-empty string")
    width, height = parse_int(rec["width"], "width"), parse_int(rec["height"], "height")
    if width <= 0 or height <= 0:
        raise Malformed(f"image size {width}x{height} is not positive")
    gsd = rec.get("gsd")
    if gsd is not None:
        gsd = parse_float(gsd, "gsd")
        if gsd <= 0:
            raise Malformed(f"gsd {gsd:g} is not positive")
    crs = rec.get("crs")
    if crs is not None and not isinstance(crs, str):
        raise Malformed("crs must be a string")
    transform = rec.get("transform")
    if transform is not None:
        if not isinstance(transform, list) or len(transform) != 6:
            raise Malformed("transform must be 6 numbers [a, b, c, d, e, f] (affine order)")
        transform = Affine(*parse_floats(transform, "transform"))
    acquired = rec.get("acquired")
    if acquired is not None:
        try:
            acquired = datetime.fromisoformat(str(acquired))
        except ValueError:
            raise Malformed(f"acquired {acquired!r} is not an ISO 8601 time") from None
    scene_id = rec.get("scene_id")
    return ImageLabels(
        file_name=rec["file_name"], width=width, height=height, gsd=gsd, crs=crs, transform=transform,
        scene_id=None if scene_id is None else str(scene_id), acquired=acquired,
        attrs={"coco_id": image_id},
    )


def _read_annotation(
    rec: object, images: dict[int, ImageLabels], categories: dict[int, str]
) -> tuple[ImageLabels, str, Annotation, bool]:
    """Parse one annotation; the returned Annotation has a placeholder class until mapped."""
    rec = _require(rec, "image_id", "category_id", "bbox")
    image_id = parse_int(rec["image_id"], "image_id")
    if image_id not in images:
        raise Malformed(f"image_id {image_id} is not among the (valid) images")
    image = images[image_id]
    cat = parse_int(rec["category_id"], "category_id")
    if cat not in categories:
        raise Malformed(f"unknown category_id {cat} (categories: {sorted(categories)})")
    bbox = rec["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise Malformed("bbox must be 4 numbers [x, y, w, h]")
    x, y, w, h = parse_floats(bbox, "bbox")
    if w <= 0 or h <= 0:
        raise Malformed(f"bbox has zero or negative size (w={w:g}, h={h:g})")
    box = fit_box(x, y, x + w, y + h, image.width, image.height, (BOX_TOL_PX, BOX_TOL_PX))

    attrs: dict[str, Any] = {"source_class": categories[cat]}
    if isinstance(rec.get("id"), int):
        attrs["coco_id"] = rec["id"]
    poly = _segmentation_polygon(rec.get("segmentation"))
    if poly is None:
        poly = box
    else:
        poly, visible = fit_polygon(poly, image.width, image.height, (BOX_TOL_PX, BOX_TOL_PX))
        if visible < 1.0:
            attrs["visible_fraction"] = visible

    attributes = rec.get("attributes")
    state = rec.get("state", attributes.get("state") if isinstance(attributes, dict) else None)
    try:
        state = BoatState.UNKNOWN if state is None else BoatState(state)
    except ValueError:
        raise Malformed(f"state {state!r} is not one of {_STATES}") from None
    score = rec.get("score")
    score = None if score is None else parse_float(score, "score")
    crowd = rec.get("iscrowd", 0)
    if crowd not in (0, 1, False, True):
        raise Malformed(f"iscrowd must be 0 or 1, got {crowd!r}")
    ann = Annotation(CLASSES[0], poly, state=state, score=score, attrs=attrs)
    return image, categories[cat], ann, bool(crowd)


def _segmentation_polygon(seg: object) -> np.ndarray | None:
    """The first polygon of a polygon segmentation as an (N, 2) array, or None to use the bbox."""
    if seg is None or isinstance(seg, dict):  # absent, or an RLE mask: no polygon to take
        return None
    if not isinstance(seg, list):
        raise Malformed("segmentation must be a list of polygons or an RLE object")
    if not seg:
        return None
    first = seg[0] if isinstance(seg[0], list) else seg  # tolerate a bare [x1, y1, ...] list
    if len(first) < 6 or len(first) % 2:
        raise Malformed(f"segmentation polygon needs an even number (>= 6) of coordinates, got {len(first)}")
    return np.asarray(parse_floats(first, "segmentation"), dtype=np.float64).reshape(-1, 2)
