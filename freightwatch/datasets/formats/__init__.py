"""Label file formats: COCO, YOLO, DOTA, xView.

Every reader returns a :class:`~freightwatch.datasets.annotations.LabelSet` and takes
``(path, mapping=None, lenient=False, *, format options)``:

* ``mapping`` turns source class names into freightwatch classes; unmapped names are dropped and
  counted in ``LabelSet.dropped``.
* Malformed records raise :class:`~freightwatch.errors.LabelFormatError` naming the file and the
  line (or record); with ``lenient=True`` they are skipped and noted in ``LabelSet.skipped``.
  Whole-file problems (unreadable file, invalid JSON/YAML, no class names) always raise.

What each format can carry:

========  ==============  ===========  ======  =====================================
format    geometry        boat state   score   image metadata
========  ==============  ===========  ======  =====================================
coco      polygon + bbox  yes          yes     gsd, crs, transform, acquired, scene_id
yolo      bbox or OBB     no           yes     none (size from the image file)
dota      4-point polygon no           no      gsd (size from image or labels)
xview     bbox            no           no      map geometry (size from image or labels)
========  ==============  ===========  ======  =====================================
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from freightwatch.datasets.annotations import ImageLabels, LabelSet
from freightwatch.datasets.formats.coco import read_coco, write_coco
from freightwatch.datasets.formats.dota import read_dota, write_dota
from freightwatch.datasets.formats.xview import read_xview, write_xview
from freightwatch.datasets.formats.yolo import read_yolo, write_yolo
from freightwatch.taxonomy import ClassMapping

FORMATS: tuple[str, ...] = ("coco", "yolo", "dota", "xview")
"""Names accepted by :func:`read_labels` and :func:`write_labels`."""

_READERS: dict[str, Callable[..., LabelSet]] = {
    "coco": read_coco, "yolo": read_yolo, "dota": read_dota, "xview": read_xview,
}
_WRITERS: dict[str, Callable[..., Path]] = {
    "coco": write_coco, "yolo": write_yolo, "dota": write_dota, "xview": write_xview,
}


def _check(format: str) -> str:
    name = str(format).lower()
    if name not in FORMATS:
        raise ValueError(f"unknown label format {format!r}; expected one of {', '.join(FORMATS)}")
    return name


def read_labels(
    path: str | Path,
    format: str,
    mapping: ClassMapping | None = None,
    lenient: bool = False,
    **kw: Any,
) -> LabelSet:
    """Read labels in any supported format.

    Args:
        path: File or folder, as the format's reader expects (COCO/xView JSON file, YOLO root or
            YAML, DOTA label folder or file).
        format: One of :data:`FORMATS`.
        mapping: Source name -> freightwatch class; ``None`` for the format's default.
        lenient: Skip and note malformed records instead of raising.
        **kw: Format options: ``split`` (yolo), ``image_dir`` (dota, xview).

    Raises:
        ValueError: unknown format.
        LabelFormatError: see the format's reader.
    """
    return _READERS[_check(format)](path, mapping=mapping, lenient=lenient, **kw)


def write_labels(
    labels: LabelSet | list[ImageLabels], path: str | Path, format: str, **kw: Any
) -> Path:
    """Write labels in any supported format.

    Args:
        labels: What to write.
        path: COCO/xView JSON file, YOLO dataset root, or DOTA label folder.
        format: One of :data:`FORMATS`.
        **kw: Format options: ``split``, ``image_source``, ``obb`` (yolo); ``indent`` (coco).

    Returns:
        The main file or folder written.
    """
    return _WRITERS[_check(format)](labels, path, **kw)


__all__ = [
    "FORMATS", "read_coco", "read_dota", "read_labels", "read_xview", "read_yolo", "write_coco",
    "write_dota", "write_labels", "write_xview", "write_yolo",
]
