"""Mix YOLO datasets (synthetic scenes + real tiles) into one ultralytics dataset.

Real overhead datasets come with their own class ids and splits, and exports such as Roboflow's
ship several augmented copies of one source tile under different names. Mixing them with
synthetic chips needs three things no library does for us: remapping class ids onto
freightwatch's, keeping augmented copies of one source tile in the same split (or a dev split
leaks into training), and writing one ``data.yaml``. Images are linked, not copied.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from freightwatch.errors import InputFileError
from freightwatch.taxonomy import CLASSES, class_id

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")


def roboflow_group(path: Path) -> str:
    """The source tile of a Roboflow export file: ``GE_101_jpg.rf.<hash>.jpg`` -> ``GE_101``."""
    return re.sub(r"_(jpe?g|png|tiff?)\.rf\.[0-9a-f]+$", "", path.stem, flags=re.IGNORECASE)


def list_images(folder: Path) -> list[Path]:
    """Images of a folder, sorted by name."""
    if not folder.is_dir():
        raise InputFileError(folder, "image folder does not exist")
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def label_path(image: Path) -> Path:
    """YOLO convention: ``.../images/x.jpg`` -> ``.../labels/x.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def split_groups(
    images: Sequence[Path], dev_fraction: float, key: Callable[[Path], str] = roboflow_group, salt: str = "fw"
) -> tuple[list[Path], list[Path]]:
    """Split images into (train, dev) by group, deterministically (a hash of the group name).

    All images of one group (augmented copies of one source tile) land on the same side.
    """
    train, dev = [], []
    for im in images:
        h = int(hashlib.sha1(f"{salt}:{key(im)}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (dev if h < dev_fraction else train).append(im)
    return train, dev


def one_per_group(images: Sequence[Path], key: Callable[[Path], str] = roboflow_group) -> list[Path]:
    """The first image (by name) of each group: one copy of each source tile."""
    seen: dict[str, Path] = {}
    for im in sorted(images):
        seen.setdefault(key(im), im)
    return sorted(seen.values())


@dataclass
class MixPart:
    """Images (with YOLO labels beside them) going into one split of the mixed dataset.

    Attributes:
        name: Short prefix for the linked file names (keeps sources apart and names unique).
        images: The image files; labels are found by the ``images`` -> ``labels`` convention.
        split: ``train`` or ``val``.
        class_map: Source class id -> freightwatch class name; ids not in it are dropped.
    """

    name: str
    images: Sequence[Path]
    split: str
    class_map: Mapping[int, str]


def _link(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.symlink(src.resolve(), dst)
    except OSError:  # filesystems without symlinks
        shutil.copy2(src, dst)


def mix_yolo(out_dir: str | Path, parts: Sequence[MixPart]) -> tuple[Path, dict[str, dict[str, int]]]:
    """Write a YOLO dataset (``data.yaml`` with freightwatch classes) from several sources.

    Returns:
        The ``data.yaml`` and, per part name, counts of images and kept/dropped boxes.

    Raises:
        InputFileError: a label file with a malformed line (the file and line are named).
    """
    out = Path(out_dir)
    summary: dict[str, dict[str, int]] = {}
    for split in ("train", "val"):
        for sub in ("images", "labels"):
            d = out / sub / split
            if d.exists():
                shutil.rmtree(d)
            d.mkdir(parents=True)
    for part in parts:
        if part.split not in ("train", "val"):
            raise ValueError(f"split must be train or val, not {part.split!r}")
        ids = {int(k): class_id(v) for k, v in part.class_map.items()}
        stats = {"images": 0, "boxes": 0, "dropped": 0}
        for im in part.images:
            lines = []
            lp = label_path(im)
            if lp.is_file():
                for n, line in enumerate(lp.read_text().splitlines(), 1):
                    f = line.split()
                    if not f:
                        continue
                    if len(f) != 5:  # polygons/OBB would need conversion first
                        raise InputFileError(lp, f"line {n}: expected 'class cx cy w h', got {len(f)} fields")
                    try:
                        c = int(float(f[0]))
                        [float(v) for v in f[1:]]
                    except ValueError:
                        raise InputFileError(lp, f"line {n}: not numbers: {line!r}") from None
                    if c in ids:
                        lines.append(" ".join([str(ids[c]), *f[1:]]))
                        stats["boxes"] += 1
                    else:
                        stats["dropped"] += 1
            stem = f"{part.name}__{im.stem}"
            _link(im, out / "images" / part.split / f"{stem}{im.suffix.lower()}")
            (out / "labels" / part.split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
            stats["images"] += 1
        summary[part.name] = stats
    data_yaml = out / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({
        "path": str(out.resolve()), "train": "images/train", "val": "images/val",
        "names": dict(enumerate(CLASSES)),
    }, sort_keys=False))
    return data_yaml, summary
