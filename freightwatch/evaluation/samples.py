"""Labeled images for evaluation: read labels in any format and find the image of each record.

Labels are read up front (they are small); pixels are read one image at a time by the
benchmark, so thousands of tiles never sit in memory together. Where each format's images are
looked for:

* ``coco``: a COCO JSON file, or a folder of scene folders (``*/labels.json`` beside their
  images, as ``freightwatch synth`` writes them). ``file_name`` is looked up in ``--images``,
  the JSON's folder, its parent, and ``<parent>/images/<json stem>/`` (the layout of
  ``freightwatch chips``: ``annotations/val.json`` -> ``images/val/``).
* ``yolo``: ``data.yaml`` or its folder; images are where the YAML says.
* ``dota``: a ``labelTxt`` folder (or one label file), or a split folder holding ``labelTxt/``
  and ``images/``; images from ``--images`` or the ``images/`` folder beside ``labelTxt``.
* ``xview``: the GeoJSON; images from ``--images``, else ``train_images/`` beside it, else its
  folder.

An image that cannot be found is skipped and reported; the benchmark goes on with the others.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from freightwatch.datasets.annotations import ImageLabels, LabelSet
from freightwatch.datasets.formats import FORMATS, read_labels
from freightwatch.errors import FreightwatchError, InputFileError
from freightwatch.taxonomy import ClassMapping

log = logging.getLogger(__name__)

BUILTIN_MAPPINGS: dict[str, str] = {
    "builtin": "freightwatch names plus the xView and DOTA mappings",
    "dota": "DOTA: large-vehicle -> truck, ship -> boat",
    "xview": "xView: truck kinds -> truck, railway vehicles -> railcar, vessels -> boat",
    "freightwatch": "truck, railcar, boat as named",
}
"""Names accepted by :func:`resolve_mapping` besides a YAML file."""


def resolve_mapping(spec: str | Path | None) -> ClassMapping | None:
    """A class mapping from a built-in name (:data:`BUILTIN_MAPPINGS`) or a YAML file.

    ``None`` keeps each format's default mapping.

    Raises:
        InputFileError: the name is neither built in nor an existing file, or the YAML is bad.
    """
    if spec is None:
        return None
    text = str(spec)
    name = text.strip().lower()
    if name in ("builtin", "dota", "xview"):
        return getattr(ClassMapping, name)()
    if name in ("freightwatch", "identity"):
        return ClassMapping.identity()
    path = Path(text)
    if not path.is_file():
        raise InputFileError(path, f"class mapping is neither a built-in name ({', '.join(BUILTIN_MAPPINGS)}) "
                                   "nor an existing YAML file")
    return ClassMapping.from_yaml(path)


@dataclass
class Sample:
    """One labeled image to evaluate.

    Attributes:
        labels: Its ground truth, in the image's pixels.
        image: The image file.
        zones: A zones GeoJSON for this image (``None``: no zones).
        name: How reports name it (unique in the dataset): ``file_name``, or for scene folders
            ``<folder>/<file_name>``.
    """

    labels: ImageLabels
    image: Path
    zones: Path | None = None
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.labels.file_name


@dataclass
class Dataset:
    """What :func:`load_dataset` found.

    Attributes:
        samples: Images with their labels, in reading order.
        missing: ``(file_name, reason)`` of label records whose image could not be used.
        dropped: Objects of unmapped source classes, by source name.
        skipped: Malformed label records skipped (lenient mode).
        format: Label format.
        path: What was read.
        mapping: Name of the class mapping.
    """

    samples: list[Sample] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)
    format: str = ""
    path: str = ""
    mapping: str = "default"


def _check_format(fmt: str) -> str:
    name = str(fmt).strip().lower()
    if name not in FORMATS:
        raise FreightwatchError(f"unknown label format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return name


def _coco_sources(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if (path / "labels.json").is_file():
        return [path / "labels.json"]
    found = sorted(path.glob("*/labels.json"))
    if not found:
        raise InputFileError(path, "expected a COCO JSON file, or a folder of scene folders with labels.json")
    return found


def _coco_candidates(json_path: Path, file_name: str, images: Path | None) -> list[Path]:
    base = json_path.parent
    fn = Path(file_name)
    if fn.is_absolute():
        return [fn]
    out = [images / fn] if images else []
    out += [base / fn, base.parent / fn, base.parent / "images" / json_path.stem / fn, base / "images" / fn]
    return out


def _dota_dirs(path: Path, images: Path | None) -> tuple[Path, Path | None]:
    label_src = path / "labelTxt" if (path / "labelTxt").is_dir() else path
    if images is not None:
        return label_src, images
    base = label_src.parent if label_src.is_dir() else label_src.parent.parent
    for cand in (base / "images", path / "images"):
        if cand.is_dir():
            return label_src, cand
    return label_src, None


def load_dataset(
    data: str | Path,
    format: str,
    mapping: ClassMapping | None = None,
    images: str | Path | None = None,
    zones: str | Path | None = None,
    lenient: bool = False,
    split: str | None = None,
    max_images: int | None = None,
) -> Dataset:
    """Read labels and pair each image record with its image file.

    Args:
        data: Labels (file or folder, see the module notes).
        format: ``coco``, ``yolo``, ``dota`` or ``xview``.
        mapping: Class mapping (``None``: the format's default).
        images: Image folder, where the format does not say.
        zones: A zones GeoJSON for every image; without it a ``zones.geojson`` beside an image
            (a scene folder) is used for that image.
        lenient: Skip malformed label records instead of failing.
        split: YOLO split to read (``val``, ...); all by default.
        max_images: Keep only the first ``max_images`` images (in reading order).

    Raises:
        FreightwatchError: unknown format, missing files, unreadable labels, or no image found.
    """
    fmt = _check_format(format)
    data = Path(data)
    if not data.exists():
        raise InputFileError(data, "labels do not exist")
    images = Path(images) if images is not None else None
    if images is not None and not images.is_dir():
        raise InputFileError(images, "image folder does not exist")
    zones = Path(zones) if zones is not None else None
    if zones is not None and not zones.is_file():
        raise InputFileError(zones, "zones file does not exist")
    ds = Dataset(format=fmt, path=str(data), mapping=mapping.name if mapping is not None else "default")
    found: list[tuple[ImageLabels, list[Path], str]] = []

    def add(ls: LabelSet, candidates, prefix: str = "") -> None:
        ds.dropped.update(ls.dropped)
        ds.skipped.extend(ls.skipped)
        for im in ls.images:
            found.append((im, candidates(im), prefix + im.file_name))

    if fmt == "coco":
        sources = _coco_sources(data)
        for src in sources:
            # Scene folders all hold "scene.tif": name images by their folder too.
            add(read_labels(src, "coco", mapping=mapping, lenient=lenient),
                lambda im, src=src: _coco_candidates(src, im.file_name, images),
                f"{src.parent.name}/" if len(sources) > 1 else "")
    elif fmt == "yolo":
        # The readers give file names relative to the dataset root; find that root as they do.
        from freightwatch.datasets.formats.yolo import _dataset_root, _find_yaml, _load_yaml

        yaml_path = _find_yaml(data)
        root = _dataset_root(yaml_path, _load_yaml(yaml_path).get("path"))
        add(read_labels(data, "yolo", mapping=mapping, lenient=lenient, split=split),
            lambda im: [Path(im.file_name) if Path(im.file_name).is_absolute() else root / im.file_name])
    elif fmt == "dota":
        label_src, image_dir = _dota_dirs(data, images)
        if image_dir is None:
            raise InputFileError(data, "no images folder beside the DOTA labels; pass --images")
        add(read_labels(label_src, "dota", mapping=mapping, lenient=lenient, image_dir=image_dir),
            lambda im: [image_dir / im.file_name])
    else:  # xview
        image_dir = images or next((d for d in (data.parent / "train_images", data.parent) if d.is_dir()), None)
        add(read_labels(data, "xview", mapping=mapping, lenient=lenient, image_dir=image_dir),
            lambda im: [image_dir / im.file_name])

    if max_images is not None:
        found = found[: max(0, int(max_images))]
    seen: Counter[str] = Counter()
    for im, cands, name in found:
        seen[name] += 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        path = next((c for c in cands if c.is_file()), None)
        if path is None:
            tried = ", ".join(str(c.parent) for c in cands)
            ds.missing.append((name, f"image not found (looked in {tried})"))
            continue
        z = zones if zones is not None else (path.parent / "zones.geojson")
        ds.samples.append(Sample(im, path, z if z.is_file() else None, name))
    if not ds.samples:
        why = f"; e.g. {ds.missing[0][0]}: {ds.missing[0][1]}" if ds.missing else ""
        raise InputFileError(data, f"no labeled image to evaluate ({len(found)} image records{why})")
    for name, reason in ds.missing[:5]:
        log.warning("%s: %s", name, reason)
    return ds
