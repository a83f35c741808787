"""DOTA ``labelTxt``: one text file per image, oriented boxes as four corners in pixels.

File layout::

    imagesource:GoogleEarth        optional header lines "key:value"
    gsd:0.146343590398             ("gsd:null" when unknown)
    x1 y1 x2 y2 x3 y3 x4 y4 class difficult
    ...

``difficult`` may be absent (9 fields). It is kept in ``Annotation.attrs["difficult"]`` and
written back (0 when unknown). Class names go through the mapping (default DOTA names plus
freightwatch's own, so files written here read back); on writing, ``truck`` becomes
``large-vehicle``, ``boat`` ``ship`` and ``railcar`` stays ``railcar`` (DOTA has no rail class).

DOTA has no field for the boat state or for scores: boats read back as ``unknown`` and scores
are not written. Image size is not in the labels: it is read from the image when an image folder
is given, else taken as the largest label coordinate (rounded up), with
``ImageLabels.attrs["size_from_labels"] = True`` - such a size is only a lower bound.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path, PurePath
from typing import Any

import numpy as np
from shapely.geometry import Polygon

from freightwatch.datasets.annotations import Annotation, ImageLabels, LabelSet
from freightwatch.datasets.formats._common import (
    BOX_TOL_PX,
    IMAGE_SUFFIXES,
    Issues,
    Malformed,
    as_images,
    find_image,
    fit_polygon,
    fmt_num,
    parse_float,
    parse_floats,
    parse_int,
    raster_info,
    read_text,
    resolve_mapping,
    size_from_extent,
)
from freightwatch.errors import LabelFormatError
from freightwatch.taxonomy import ClassMapping

log = logging.getLogger(__name__)

DOTA_NAMES: dict[str, str] = {"truck": "large-vehicle", "railcar": "railcar", "boat": "ship"}
"""Class name written for each freightwatch class."""

_NULLS = ("", "null", "none", "nan")


def read_dota(
    label_dir: str | Path,
    mapping: ClassMapping | None = None,
    lenient: bool = False,
    *,
    image_dir: str | Path | None = None,
) -> LabelSet:
    """Read DOTA label files.

    Args:
        label_dir: A folder of ``*.txt`` label files (e.g. ``labelTxt/``), or one label file.
        mapping: Name -> freightwatch class; default ``ClassMapping.dota() | ClassMapping.identity()``.
        lenient: Skip malformed lines (and label files whose image is missing from ``image_dir``),
            noted in ``LabelSet.skipped``, instead of raising.
        image_dir: Folder with the images (matched by stem, any common image extension); gives
            the true image size and, for GeoTIFFs, crs and transform.

    Returns:
        One :class:`ImageLabels` per label file, sorted by name; ``file_name`` is the image's
        name when found, else ``<stem>.png``. Header values other than ``gsd`` are kept in
        ``attrs`` (e.g. ``attrs["imagesource"]``).

    Raises:
        LabelFormatError: a missing folder, an unreadable file, or (strict mode) a malformed line.
    """
    mapping = resolve_mapping(mapping, ClassMapping.dota() | ClassMapping.identity())
    label_dir = Path(label_dir)
    if label_dir.is_file():
        files = [label_dir]
    elif label_dir.is_dir():
        files = sorted(label_dir.glob("*.txt"))
    else:
        raise LabelFormatError(label_dir, "no such DOTA label file or folder")
    labels = LabelSet()
    issues = Issues(labels, lenient)
    for path in files:
        image = _read_file(path, None if image_dir is None else Path(image_dir), mapping, labels, issues)
        if image is not None:
            labels.images.append(image)
    if image_dir is not None and Path(image_dir).is_dir() and label_dir.is_dir():
        # DOTA gives every labelled image a label file (an empty one when it has no objects), so an
        # image without one is unlabelled, not empty: left out, never taken as a negative.
        stems = {f.stem for f in files}
        unlabelled = sorted(f.name for f in Path(image_dir).iterdir()
                            if f.suffix.lower() in IMAGE_SUFFIXES and f.stem not in stems)
        if unlabelled:
            log.warning("%s: %d image(s) in %s have no label file and are left out (e.g. %s)", label_dir,
                        len(unlabelled), image_dir, ", ".join(unlabelled[:3]))
    return labels


def write_dota(images: LabelSet | list[ImageLabels], label_dir: str | Path) -> Path:
    """Write one DOTA label file per image, ``<label_dir>/<image stem>.txt``.

    The header has ``imagesource`` when ``ImageLabels.attrs`` has one and ``gsd`` when known.
    Polygons of other than 4 points are written as their minimum rotated rectangle.

    Args:
        images: What to write. Image file names must have distinct stems.
        label_dir: Folder to write into (created).

    Returns:
        ``label_dir``.

    Raises:
        ValueError: two images share a stem.
    """
    label_dir = Path(label_dir)
    label_dir.mkdir(parents=True, exist_ok=True)
    stems: dict[str, str] = {}
    for im in as_images(images):
        stem = PurePath(im.file_name).stem
        if stem in stems:
            raise ValueError(f"{im.file_name} and {stems[stem]} would share the label file {stem}.txt")
        stems[stem] = im.file_name
        lines = []
        if im.attrs.get("imagesource"):
            lines.append(f"imagesource:{im.attrs['imagesource']}")
        if im.gsd is not None:
            lines.append(f"gsd:{float(im.gsd)!r}")  # float(): numpy scalars repr as np.float64(...)
        for ann in im.annotations:
            poly = ann.polygon
            if len(poly) != 4:
                poly = np.asarray(Polygon(poly).minimum_rotated_rectangle.exterior.coords)[:4]
            coords = " ".join(fmt_num(float(v)) for v in poly.ravel())
            difficult = ann.attrs.get("difficult", 0)
            lines.append(f"{coords} {DOTA_NAMES[ann.cls]} {int(difficult)}")
        (label_dir / f"{stem}.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return label_dir


def _read_file(
    path: Path, image_dir: Path | None, mapping: ClassMapping, labels: LabelSet, issues: Issues
) -> ImageLabels | None:
    header: dict[str, Any] = {}
    gsd: float | None = None
    records: list[tuple[int, str, np.ndarray, int | None]] = []
    for n, line in enumerate(read_text(path).splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            if (len(tokens) == 1 and ":" in tokens[0]) or (len(tokens) == 2 and tokens[0].endswith(":")):
                key, _, value = line.strip().partition(":")
                key, value = key.strip().lower(), value.strip()
                if key == "gsd":
                    gsd = _parse_gsd(value)
                else:
                    header[key] = value
                continue
            records.append((n, *_parse_object(tokens)))
        except Malformed as exc:
            issues.report(path, str(exc), line=n)

    crs = transform = None
    file_name = f"{path.stem}.png"
    attrs: dict[str, Any] = dict(header)
    if image_dir is not None:
        image_path = find_image(image_dir, path.stem)
        if image_path is None:
            issues.report(path, f"no image {path.stem}.* in {image_dir}")
            return None
        try:
            width, height, crs, transform = raster_info(image_path)
        except LabelFormatError as exc:
            issues.report(exc.path, exc.message)
            return None
        file_name = image_path.name
    else:
        # The labels do not say how big the image is; its extent is the best lower bound we have.
        width, height = size_from_extent(r[2] for r in records)
        attrs["size_from_labels"] = True

    image = ImageLabels(file_name=file_name, width=width, height=height, gsd=gsd, crs=crs,
                        transform=transform, attrs=attrs)
    for n, name, raw, difficult in records:
        try:
            poly, visible = fit_polygon(raw, width, height, (BOX_TOL_PX, BOX_TOL_PX))
        except Malformed as exc:
            issues.report(path, str(exc), line=n)
            continue
        cls = mapping(name)
        if cls is None:
            labels.dropped[name] += 1
            continue
        ann_attrs: dict[str, Any] = {"source_class": name}
        if difficult is not None:
            ann_attrs["difficult"] = difficult
        if visible < 1.0:
            ann_attrs["visible_fraction"] = visible
        image.annotations.append(Annotation(cls, poly, attrs=ann_attrs))
    return image


def _parse_gsd(value: str) -> float | None:
    if value.lower() in _NULLS:
        return None
    gsd = parse_float(value, "gsd")
    if gsd <= 0:
        raise Malformed(f"gsd {gsd:g} is not positive")
    return gsd


def _parse_object(tokens: list[str]) -> tuple[str, np.ndarray, int | None]:
    if len(tokens) not in (9, 10):
        raise Malformed(f"expected 10 fields (x1 y1 x2 y2 x3 y3 x4 y4 class difficult), got {len(tokens)}")
    coords = parse_floats(tokens[:8], "coordinate")
    name = tokens[8]
    if not math.isnan(_number_or_nan(name)):
        raise Malformed(f"class name expected in field 9, got the number {name}")
    difficult = parse_int(tokens[9], "difficult") if len(tokens) == 10 else None
    return name, np.asarray(coords, dtype=np.float64).reshape(4, 2), difficult


def _number_or_nan(token: str) -> float:
    """A shifted line (a class where a coordinate should be) shows up as a number here."""
    try:
        return float(token)
    except ValueError:
        return math.nan

