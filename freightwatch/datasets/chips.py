"""Cut labeled scenes into training chips and write ultralytics-ready YOLO + COCO datasets.

Splits are made by scene, never by chip: overlapping chips of one scene share pixels, so a
chip-level split would leak training pixels into validation.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rasterio.windows import Window

from freightwatch._progress import progress
from freightwatch.datasets.annotations import Annotation, ImageLabels
from freightwatch.datasets.formats.coco import write_coco
from freightwatch.datasets.formats.yolo import write_yolo
from freightwatch.datasets.raster import Scene
from freightwatch.datasets.tiling import overlap_pixels, tile_windows

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class ChipConfig:
    """How scenes are cut into chips.

    Attributes:
        size: Chip edge in pixels.
        overlap: Overlap between neighbouring chips, a fraction of ``size`` (<1) or pixels.
        min_visible: Objects cut by a chip border are kept when at least this fraction of their
            area is inside the chip, dropped otherwise (slivers teach the detector nothing).
        keep_empty: Fraction of chips without objects to keep (background examples).
        fractions: Train/val/test fractions of scenes.
        seed: Seed for the scene split and for sampling empty chips.
        image_ext: ``png`` (lossless) or ``jpg``.
        bands: Optional 1-based RGB band choice for multi-band scenes.
    """

    size: int = 640
    overlap: float | int = 0.2
    min_visible: float = 0.5
    keep_empty: float = 0.2
    fractions: tuple[float, float, float] = (0.8, 0.2, 0.0)
    seed: int = 0
    image_ext: str = "png"
    bands: tuple[int, int, int] | None = None


@dataclass
class ChipExport:
    """What :func:`export_chips` wrote.

    Attributes:
        root: Dataset root.
        data_yaml: The ultralytics ``data.yaml``.
        coco: COCO JSON per split.
        chips: Chips written per split.
        objects: Objects per split and class.
        scenes: Scene id -> split.
        dropped_slivers: Object parts dropped at chip borders (below ``min_visible``).
    """

    root: Path
    data_yaml: Path | None = None
    coco: dict[str, Path] = field(default_factory=dict)
    chips: Counter[str] = field(default_factory=Counter)
    objects: dict[str, Counter[str]] = field(default_factory=dict)
    scenes: dict[str, str] = field(default_factory=dict)
    dropped_slivers: int = 0


def split_scenes(scene_ids: Sequence[str], fractions: Sequence[float], seed: int = 0) -> dict[str, str]:
    """Assign whole scenes to train/val/test.

    Deterministic for a seed. Every split with a non-zero fraction gets at least one scene when
    there are enough scenes, so a validation set is never silently empty.

    Raises:
        ValueError: fractions are not three non-negative numbers summing to 1, or there are fewer
            scenes than splits with a non-zero fraction.
    """
    fr = np.asarray(fractions, dtype=float)
    if fr.shape != (3,) or (fr < 0).any() or abs(fr.sum() - 1) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {list(fractions)}")
    ids = sorted(set(scene_ids))
    wanted = [s for s, f in zip(SPLITS, fr, strict=True) if f > 0]
    if len(ids) < len(wanted):
        raise ValueError(
            f"{len(ids)} scene(s) cannot be split by scene into {'/'.join(wanted)}: give more scenes "
            "or set the val/test fractions to 0"
        )
    order = np.random.default_rng(seed).permutation(len(ids))
    counts = np.floor(fr * len(ids)).astype(int)
    for i in np.flatnonzero((fr > 0) & (counts == 0)):
        counts[i] = 1
    while counts.sum() > len(ids):
        counts[int(np.argmax(counts))] -= 1
    counts[0] += len(ids) - counts.sum()
    out: dict[str, str] = {}
    pos = 0
    for split, n in zip(SPLITS, counts, strict=True):
        for k in order[pos: pos + n]:
            out[ids[k]] = split
        pos += n
    return out


def chip_labels(labels: ImageLabels, window: Window, min_visible: float) -> tuple[list[Annotation], int]:
    """Objects of a scene inside a chip window, in chip pixel coordinates.

    Returns:
        The kept annotations and the number of border-cut objects dropped as slivers.
    """
    x0, y0 = float(window.col_off), float(window.row_off)
    x1, y1 = x0 + float(window.width), y0 + float(window.height)
    kept: list[Annotation] = []
    slivers = 0
    for a in labels.annotations:
        bx0, by0, bx1, by1 = a.bbox
        if bx1 <= x0 or bx0 >= x1 or by1 <= y0 or by0 >= y1:
            continue
        clipped, frac = a.clipped(x0, y0, x1, y1)
        if clipped is None or frac < min_visible:
            slivers += clipped is not None
            continue
        kept.append(clipped.translated(-x0, -y0))
    return kept, slivers


def iter_chips(
    scene_path: str | Path, labels: ImageLabels, config: ChipConfig
) -> Iterator[tuple[Window, np.ndarray, list[Annotation], int]]:
    """Yield ``(window, rgb, annotations, slivers)`` for every chip of a scene, read lazily."""
    with Scene(scene_path, bands=config.bands) as scene:
        w, h = scene.info.width, scene.info.height
        if (labels.width, labels.height) != (w, h):
            raise ValueError(
                f"{scene_path}: labels are for a {labels.width}x{labels.height} image, the scene is {w}x{h}"
            )
        for win in tile_windows(w, h, config.size, overlap_pixels(config.size, config.overlap)):
            anns, slivers = chip_labels(labels, win, config.min_visible)
            rgb, _mask = scene.read_rgb(win)
            yield win, rgb, anns, slivers


def export_chips(
    scenes: Sequence[tuple[str | Path, ImageLabels]],
    out_dir: str | Path,
    config: ChipConfig | None = None,
) -> ChipExport:
    """Cut scenes into chips and write a YOLO dataset (``data.yaml``) plus COCO JSON per split.

    Args:
        scenes: ``(raster path, labels)`` pairs; ``labels.scene_id`` (else the raster's stem)
            identifies the scene for splitting.
        out_dir: Dataset root: ``images/<split>/``, ``labels/<split>/``, ``data.yaml``,
            ``annotations/<split>.json``.
        config: Chip settings.

    Returns:
        A summary of what was written.
    """
    cfg = config or ChipConfig()
    root = Path(out_dir)
    ids = [lab.scene_id or Path(p).stem for p, lab in scenes]
    if len(set(ids)) != len(ids):
        raise ValueError("scene ids must be unique (two scenes share an id or a file stem)")
    assignment = split_scenes(ids, cfg.fractions, cfg.seed)
    result = ChipExport(root=root, scenes=assignment)
    per_split: dict[str, list[ImageLabels]] = {s: [] for s in SPLITS}
    rng = np.random.default_rng(cfg.seed)
    with progress() as bar:
        task = bar.add_task("chipping scenes", total=len(scenes))
        for (path, labels), sid in zip(scenes, ids, strict=True):
            split = assignment[sid]
            img_dir = root / "images" / split
            img_dir.mkdir(parents=True, exist_ok=True)
            for win, rgb, anns, slivers in iter_chips(path, labels, cfg):
                result.dropped_slivers += slivers
                if not anns and rng.random() >= cfg.keep_empty:
                    continue
                name = f"{sid}_r{int(win.row_off)}_c{int(win.col_off)}.{cfg.image_ext}"
                if not cv2.imwrite(str(img_dir / name), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
                    raise OSError(f"{img_dir / name}: could not write chip image")
                per_split[split].append(ImageLabels(
                    file_name=name, width=rgb.shape[1], height=rgb.shape[0], annotations=anns,
                    gsd=labels.gsd, scene_id=sid, attrs={"window": [int(win.col_off), int(win.row_off)]},
                ))
            bar.advance(task)
    for split, images in per_split.items():
        if not images:
            continue
        result.data_yaml = write_yolo(images, root, split=split)
        result.coco[split] = write_coco(images, root / "annotations" / f"{split}.json")
        result.chips[split] = len(images)
        counts: Counter[str] = Counter()
        for im in images:
            counts.update(im.counts())
        result.objects[split] = counts
    log.info("wrote %s chips (%s) to %s; %d slivers dropped", sum(result.chips.values()),
             ", ".join(f"{k}: {v}" for k, v in result.chips.items()), root, result.dropped_slivers)
    return result
