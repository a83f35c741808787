"""YOLO / ultralytics datasets: ``data.yaml`` plus one ``.txt`` label file per image.

Layout (ultralytics convention)::

    root/data.yaml            path, train, val, [test], names
    root/images/<split>/a.jpg
    root/labels/<split>/a.txt  one object per line

A label file sits where the image is with the *last* ``/images/`` path component replaced by
``/labels/`` and the extension by ``.txt``. Lines are, with coordinates normalised to 0-1:

* ``cls cx cy w h`` - an axis-aligned box (detect), or
* ``cls x1 y1 x2 y2 x3 y3 x4 y4`` - an oriented box (YOLO-OBB, e.g. DOTA-derived data),

each optionally followed by a confidence (ultralytics ``save_conf``), read as ``score``. Other
field counts (e.g. segmentation polygons) are malformed. ``cls`` indexes ``names`` (a list, or a
dict of id -> name); an id not in ``names`` is malformed, a name the mapping does not know is
dropped and counted.

An image without a label file has no objects (normal in YOLO). A label file without an image is
malformed. Image sizes come from the image headers, so the images must be present.

The format carries neither boat state nor anything about the image beyond its pixels: read boats
are ``unknown``, and gsd/crs/transform are lost on writing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import yaml
from shapely.geometry import Polygon

from freightwatch.datasets.annotations import Annotation, ImageLabels, LabelSet
from freightwatch.datasets.formats._common import (
    BOX_TOL_NORM,
    IMAGE_SUFFIXES,
    Issues,
    Malformed,
    as_images,
    fit_box,
    fit_polygon,
    fmt_num,
    image_size,
    parse_floats,
    parse_int,
    read_text,
    resolve_mapping,
)
from freightwatch.errors import InputFileError, LabelFormatError
from freightwatch.taxonomy import CLASSES, ClassMapping, class_id

SPLITS: tuple[str, ...] = ("train", "val", "test")
"""Split keys looked for in ``data.yaml``, in reading order."""

DATA_YAML = "data.yaml"


def read_yolo(
    root_or_yaml: str | Path,
    mapping: ClassMapping | None = None,
    lenient: bool = False,
    *,
    split: str | None = None,
) -> LabelSet:
    """Read a YOLO detect or OBB dataset.

    The dataset root is the YAML's ``path`` when that exists (absolute, or relative to the YAML's
    folder), else the YAML's folder, so moved datasets still read.

    Args:
        root_or_yaml: The dataset's YAML file, or a folder holding ``data.yaml`` (or a single
            other ``*.yaml``, e.g. ``dota8.yaml``).
        mapping: Name -> freightwatch class; default :meth:`ClassMapping.builtin`.
        lenient: Skip malformed lines, unreadable images and label files without an image (noted in
            ``LabelSet.skipped``) instead of raising.
        split: Read only this split key (``train``, ``val``, ``test``); default all present.

    Returns:
        One :class:`ImageLabels` per image with ``file_name`` relative to the dataset root (absolute
        if outside it) and ``attrs["split"]``. An image listed by two splits is read once, under
        the first. Clipped polygons keep ``Annotation.attrs["visible_fraction"]``.

    Raises:
        LabelFormatError: no/invalid YAML, no ``names``, a missing split folder, an unreadable
            label file, or (strict mode) a malformed line/orphan label/unreadable image.
    """
    mapping = resolve_mapping(mapping, ClassMapping.builtin())
    yaml_path = _find_yaml(Path(root_or_yaml))
    data = _load_yaml(yaml_path)
    names = _names(yaml_path, data.get("names"))
    root = _dataset_root(yaml_path, data.get("path"))
    if split is not None:
        if not data.get(split):
            raise LabelFormatError(yaml_path, f"no {split!r} split (has: {_present_splits(data) or 'none'})")
        splits = [split]
    else:
        splits = _present_splits(data)
        if not splits:
            raise LabelFormatError(yaml_path, f"no split listed (expected one of {', '.join(SPLITS)})")

    labels = LabelSet()
    issues = Issues(labels, lenient)
    seen: set[Path] = set()
    for name in splits:
        entries = data[name] if isinstance(data[name], list) else [data[name]]
        for entry in entries:
            if not isinstance(entry, str):
                raise LabelFormatError(yaml_path, f"split {name!r}: expected a path, got {entry!r}")
            for image_path in _split_images(yaml_path, root, entry, issues):
                key = image_path.resolve()
                if key in seen:  # e.g. val: images/train - do not count objects twice
                    continue
                seen.add(key)
                image = _read_image(image_path, root, names, mapping, labels, issues)
                if image is not None:
                    image.attrs["split"] = name
                    labels.images.append(image)
    return labels


def write_yolo(
    images: LabelSet | list[ImageLabels],
    root: str | Path,
    split: str = "train",
    image_source: str | Path | None = None,
    obb: bool = False,
) -> Path:
    """Write labels in YOLO layout and create or update ``data.yaml``.

    Writes ``labels/<split>/<stem>.txt`` for every image (empty for images without objects) and
    sets ``<split>: images/<split>``, ``path`` (the absolute root) and freightwatch ``names``
    (0 truck, 1 railcar, 2 boat) in ``data.yaml``, keeping splits already listed there. Training
    with ultralytics needs both a ``train`` and a ``val`` split.

    Args:
        images: What to write. Image file names must have distinct stems.
        root: Dataset root.
        split: Split key to write.
        image_source: Folder the images' ``file_name`` is relative to; when given, the images are
            copied to ``images/<split>/`` (reading the dataset back needs them there).
        obb: Write oriented boxes (``cls x1 y1 ... x4 y4``; polygons of more than 4 points become
            their minimum rotated rectangle) instead of axis-aligned ``cls cx cy w h``.

    Returns:
        The ``data.yaml`` path.

    Raises:
        LabelFormatError: an existing ``data.yaml`` is invalid or names other classes.
        InputFileError: an image to copy does not exist.
        ValueError: two images share a stem, or an image has no size.
    """
    root = Path(root)
    label_dir, image_dir = root / "labels" / split, root / "images" / split
    label_dir.mkdir(parents=True, exist_ok=True)
    yaml_path = root / DATA_YAML
    data = _merge_yaml(yaml_path, split, root)

    stems: dict[str, str] = {}
    for im in as_images(images):
        name = PurePath(im.file_name).name
        stem = PurePath(name).stem
        if stem in stems:
            raise ValueError(f"{im.file_name} and {stems[stem]} would share the label file {stem}.txt")
        stems[stem] = im.file_name
        if im.width <= 0 or im.height <= 0:
            raise ValueError(f"{im.file_name}: image size {im.width}x{im.height} cannot normalise labels")
        lines = [_format_line(a, im.width, im.height, obb) for a in im.annotations]
        (label_dir / f"{stem}.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        if image_source is not None:
            src = Path(image_source) / im.file_name
            if not src.is_file():
                raise InputFileError(src, "image not found (needed to copy into the YOLO dataset)")
            image_dir.mkdir(parents=True, exist_ok=True)
            dst = image_dir / name
            if not (dst.exists() and dst.samefile(src)):
                shutil.copy2(src, dst)
    yaml_path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return yaml_path


def label_path(image_path: Path) -> Path:
    """The label file of an image: last ``/images/`` -> ``/labels/``, extension -> ``.txt``."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return Path(sb.join(str(image_path).rsplit(sa, 1))).with_suffix(".txt")


# --- reading -------------------------------------------------------------------------------------


def _find_yaml(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise LabelFormatError(path, "no such YOLO dataset (expected data.yaml or its folder)")
    if (path / DATA_YAML).is_file():
        return path / DATA_YAML
    found = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise LabelFormatError(path, f"no {DATA_YAML} in the YOLO dataset folder")
    raise LabelFormatError(path, f"several YAML files ({', '.join(p.name for p in found)}); pass one")


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        raise LabelFormatError(path, f"invalid YAML: {exc}", line=None if line is None else line + 1) from exc
    if not isinstance(data, dict):
        raise LabelFormatError(path, "expected a YAML mapping with path, train, val and names")
    return data


def _names(path: Path, raw: object) -> dict[int, str]:
    """``names`` as id -> name; a dataset without names cannot be read at all."""
    if isinstance(raw, list):
        items = list(enumerate(raw))
    elif isinstance(raw, dict):
        items = list(raw.items())
    else:
        raise LabelFormatError(path, "missing 'names' (a list or a mapping of class id -> name)")
    if not items:
        raise LabelFormatError(path, "'names' is empty")
    names: dict[int, str] = {}
    for key, value in items:
        try:
            cid = parse_int(key, "class id")
        except Malformed as exc:
            raise LabelFormatError(path, f"names: {exc}") from None
        if not isinstance(value, str | int | float) or isinstance(value, bool) or cid < 0:
            raise LabelFormatError(path, f"names: bad entry {key!r}: {value!r}")
        names[cid] = str(value)
    return names


def _dataset_root(yaml_path: Path, raw: object) -> Path:
    base = yaml_path.parent
    if isinstance(raw, str) and raw:
        candidate = Path(raw).expanduser()
        candidate = candidate if candidate.is_absolute() else base / candidate
        if candidate.is_dir():
            return candidate
    return base


def _present_splits(data: dict[str, Any]) -> list[str]:
    return [s for s in SPLITS if data.get(s)]


def _split_images(yaml_path: Path, root: Path, entry: str, issues: Issues) -> Iterator[Path]:
    """Images of one split entry (a folder, or a .txt list of images), then orphan-label checks."""
    p = Path(entry).expanduser()
    p = p if p.is_absolute() else root / p
    if p.is_dir():
        images = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        yield from images
        labels_dir = label_path(p / "x").parent
        if labels_dir != p and labels_dir.is_dir():
            expected = {label_path(f) for f in images}
            for txt in sorted(labels_dir.rglob("*.txt")):
                if txt not in expected:
                    issues.report(txt, f"label file has no image (no {txt.stem}.* under {p})")
    elif p.is_file():
        # ultralytics: "./x.jpg" is relative to the list file; we take other relative paths
        # relative to the dataset root (ultralytics uses the working directory).
        for n, line in enumerate(read_text(p).splitlines(), start=1):
            line = line.strip()
            if not line:
                continue
            f = p.parent / line[2:] if line.startswith("./") else Path(line)
            f = f if f.is_absolute() else root / f
            if not f.is_file():
                issues.report(p, f"image {line} does not exist", line=n)
                continue
            yield f
    else:
        raise LabelFormatError(yaml_path, f"split path {entry!r} does not exist ({p})")


def _read_image(
    image_path: Path,
    root: Path,
    names: dict[int, str],
    mapping: ClassMapping,
    labels: LabelSet,
    issues: Issues,
) -> ImageLabels | None:
    try:
        width, height = image_size(image_path)
    except LabelFormatError as exc:
        issues.report(exc.path, exc.message)
        return None
    try:
        file_name = image_path.relative_to(root).as_posix()
    except ValueError:
        file_name = str(image_path)
    image = ImageLabels(file_name=file_name, width=width, height=height)
    lab = label_path(image_path)
    if not lab.is_file():
        return image  # no label file = no objects
    for n, line in enumerate(read_text(lab).splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            name, ann = _parse_line(tokens, names, width, height)
        except Malformed as exc:
            issues.report(lab, str(exc), line=n)
            continue
        cls = mapping(name)
        if cls is None:
            labels.dropped[name] += 1
            continue
        ann.cls = cls
        image.annotations.append(ann)
    return image


def _parse_line(tokens: list[str], names: dict[int, str], width: int, height: int) -> tuple[str, Annotation]:
    n = len(tokens)
    if n not in (5, 6, 9, 10):
        raise Malformed(
            f"expected 5 fields (class cx cy w h) or 9 (class x1 y1 ... x4 y4), optionally plus a "
            f"confidence; got {n}"
        )
    cid = parse_int(tokens[0], "class id")
    if cid not in names:
        raise Malformed(f"unknown class id {cid} (names has ids {min(names)}..{max(names)})")
    values = parse_floats(tokens[1:], "coordinate")
    score = None
    if n in (6, 10):
        score = values.pop()
        if not 0.0 <= score <= 1.0:
            raise Malformed(f"confidence {score:g} is not in 0..1")
    tol = (BOX_TOL_NORM * width, BOX_TOL_NORM * height)
    attrs: dict[str, Any] = {"source_class": names[cid]}
    if len(values) == 4:
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            raise Malformed(f"box has zero or negative size (w={w:g}, h={h:g})")
        poly = fit_box((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                       (cy + h / 2) * height, width, height, tol)
    else:
        raw = np.asarray(values, dtype=np.float64).reshape(4, 2) * np.array([width, height])
        poly, visible = fit_polygon(raw, width, height, tol)
        if visible < 1.0:
            attrs["visible_fraction"] = visible
    return names[cid], Annotation(CLASSES[0], poly, score=score, attrs=attrs)


# --- writing -------------------------------------------------------------------------------------


def _format_line(ann: Annotation, width: int, height: int, obb: bool) -> str:
    if obb:
        poly = ann.polygon
        if len(poly) != 4:
            poly = np.asarray(Polygon(poly).minimum_rotated_rectangle.exterior.coords)[:4]
        coords = (poly / np.array([width, height])).ravel()
    else:
        x0, y0, x1, y1 = ann.bbox
        coords = np.array([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width,
                           (y1 - y0) / height])
    fields = [str(class_id(ann.cls)), *(fmt_num(float(v), 8) for v in coords)]
    if ann.score is not None:
        fields.append(fmt_num(float(ann.score), 6))
    return " ".join(fields)


def _merge_yaml(yaml_path: Path, split: str, root: Path) -> dict[str, Any]:
    """The data.yaml content after adding ``split``; other splits and keys are kept."""
    old: dict[str, Any] = {}
    if yaml_path.is_file():
        old = _load_yaml(yaml_path)
        if "names" in old:
            existing = _names(yaml_path, old["names"])
            if [existing.get(i) for i in range(max(len(existing), len(CLASSES)))] != list(CLASSES):
                raise LabelFormatError(
                    yaml_path,
                    f"names {sorted(existing.items())} differ from freightwatch's ({', '.join(CLASSES)}); "
                    "write to a new dataset root",
                )
    data: dict[str, Any] = {"path": str(root.resolve())}
    for key in SPLITS:
        if key == split:
            data[key] = f"images/{split}"
        elif old.get(key):
            data[key] = old[key]
    if split not in data:  # a split key other than train/val/test
        data[split] = f"images/{split}"
    data["names"] = dict(enumerate(CLASSES))
    data.update({k: v for k, v in old.items() if k not in data})
    return data
