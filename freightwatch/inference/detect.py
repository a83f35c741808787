"""Sliced detection over georeferenced scenes of any size, with zone counts and boat states.

Windows are read lazily (never the whole scene), sent to the detector in batches, and their
detections merged across slice borders (:mod:`freightwatch.inference.merge`). Memory is bounded
by the batch of slices plus the detections themselves, whatever the scene size.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from rasterio.windows import Window
from shapely.geometry import Polygon

from freightwatch._progress import progress
from freightwatch.datasets.annotations import Annotation, ImageLabels
from freightwatch.datasets.geo import (
    Zone,
    atomic_write_bytes,
    read_zones,
    write_geojson,
    zone_of_points,
    zones_outside,
)
from freightwatch.datasets.raster import DEFAULT_GDAL_CACHE_MB, Scene, bounded_gdal_cache
from freightwatch.datasets.tiling import overlap_pixels, tile_windows
from freightwatch.errors import RasterError
from freightwatch.inference.merge import DEFAULT_IOS, MERGES, merge_slice_detections, nms_merge
from freightwatch.models.detector import Detector, DetectorCard
from freightwatch.taxonomy import CLASSES, BoatState, class_id
from freightwatch.viz import draw_annotations, save_png

log = logging.getLogger(__name__)

DOCK_KINDS = ("dock", "shore")
WATER_KINDS = ("river", "water")


@dataclass
class DetectConfig:
    """Settings of sliced detection.

    Attributes:
        slice_size: Slice edge in model-input pixels (default: the detector's training size).
        overlap: Slice overlap, fraction of the slice (<1) or pixels. It should exceed the largest
            object so every object is seen whole in some slice.
        batch: Slices per forward pass.
        conf: Score threshold for every class; ``None`` uses the detector card's per-class
            counting thresholds (calibrated on held-out sites), else 0.25.
        iou: IoU threshold of the per-slice NMS and the cross-slice merge.
        class_iou: Per-class overrides of ``iou`` (``None``: the detector card's calibrated
            ``class_iou``; ``{}``: ``iou`` for every class).
        max_det: Detections per slice (ultralytics defaults to 300, too few for dense lots).
        resample: Resample the scene to the detector's training GSD.
        gsd_tolerance: Relative GSD mismatch that triggers a warning (or resampling).
        dock_distance_m: A boat this close to a dock/shore zone is ``docked``.
        bands: RGB band choice for multi-band scenes.
        device: Torch device for the detector.
        precision: ``fp32`` or ``bf16`` (CPU: faster where the CPU has AMX/AVX512-BF16; see
            :meth:`Detector.predict`).
        gdal_cache_mb: GDAL block cache while scanning (``None``: GDAL's default, 5 % of RAM),
            so peak memory does not grow with the scene.
        merge: How detections of overlapping slices are merged (:data:`~freightwatch.inference.merge.MERGES`):
            ``partial`` (default: border-cut partial views give way to whole views of the same
            object, then NMS on IoU ``iou`` or intersection-over-smaller ``merge_threshold``), or
            plain class-wise NMS on intersection-over-smaller (``nms-ios``) or IoU (``nms-iou``)
            above ``merge_threshold``: SAHI's ``NMS`` postprocess, to reproduce a SAHI set-up.
        merge_threshold: Overlap threshold of the merge (``None``: 0.7 for ``partial`` and
            ``nms-ios``, ``iou`` for ``nms-iou``).
        runtime: What runs the forward pass on the CPU: ``torch``, ``onnxruntime`` or ``openvino``
            (optional installs, about 1.5x faster at fp32; see :mod:`freightwatch.models.runtimes`).
    """

    slice_size: int | None = None
    overlap: float | int = 0.2
    batch: int = 8
    conf: float | None = None
    iou: float = 0.5
    class_iou: dict[str, float] | None = None
    max_det: int = 2000
    resample: bool = False
    gsd_tolerance: float = 0.3
    dock_distance_m: float = 15.0
    bands: tuple[int, int, int] | None = None
    device: str | None = None
    precision: str = "fp32"
    gdal_cache_mb: int | None = DEFAULT_GDAL_CACHE_MB
    merge: str = "partial"
    merge_threshold: float | None = None
    runtime: str = "torch"


@dataclass
class SceneDetections:
    """Detections of one scene, in scene pixels, with their zones.

    Attributes:
        labels: Detections as an :class:`ImageLabels` (transform/CRS of the scene).
        zones: Zones in the scene CRS (empty without a zones file).
        zone_of: Zone name per detection (``None`` outside every zone).
        warnings: Things the user should know (GSD mismatch, ...).
    """

    labels: ImageLabels
    zones: list[Zone] = field(default_factory=list)
    zone_of: list[str | None] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def counts(self) -> Counter[tuple[str, str, str]]:
        """Detections per (zone, class, state); zone ``outside`` when in no zone, ``all`` totals too."""
        c: Counter[tuple[str, str, str]] = Counter()
        for a, z in zip(self.labels.annotations, self.zone_of, strict=True):
            state = a.state.value if a.cls == "boat" else ""
            c[(z or "outside", a.cls, state)] += 1
            c[("all", a.cls, state)] += 1
        return c


def class_thresholds(card: DetectorCard, conf: float | None = None) -> dict[str, float]:
    """Score threshold per class: ``conf`` for all when given, else the card's calibrated
    ``count_conf``, else 0.25."""
    if conf is not None:
        return dict.fromkeys(CLASSES, float(conf))
    return {c: float(card.count_conf.get(c, 0.25)) for c in CLASSES}


def class_ious(card: DetectorCard, iou: float = 0.5, class_iou: dict[str, float] | None = None) -> dict[str, float]:
    """NMS IoU threshold per class: ``class_iou`` (``None``: the card's calibrated ``class_iou``)
    over ``iou``."""
    over = card.class_iou if class_iou is None else class_iou
    return {c: float(over.get(c, iou)) for c in CLASSES}


def _slices(scene: Scene, size_px: int, overlap_px: int) -> Iterator[Window]:
    return iter(tile_windows(scene.info.width, scene.info.height, size_px, overlap_px))


def assign_boat_states(
    anns: list[Annotation], transform, zones: list[Zone], dock_distance_m: float, metres_per_unit: float = 1.0
) -> None:
    """Set each boat's state from its distance to dock/shore zones and its position on water.

    ``docked``: within ``dock_distance_m`` of a dock or shore zone. ``undocked``: in a river or
    water zone and farther than that. ``unknown``: no such zones, or a boat on neither.
    """
    docks = [z.geometry for z in zones if z.kind in DOCK_KINDS]
    water = [z.geometry for z in zones if z.kind in WATER_KINDS]
    if not docks and not water:
        return
    limit = dock_distance_m / metres_per_unit
    for a in anns:
        if a.cls != "boat":
            continue
        geom = a.to_map(transform) if transform is not None else Polygon(a.polygon)
        if docks and min(d.distance(geom) for d in docks) <= limit:
            a.state = BoatState.DOCKED
        elif water and any(w.intersects(geom.centroid) for w in water):
            a.state = BoatState.UNDOCKED
        else:
            a.state = BoatState.UNKNOWN


def detect_scene(
    scene_path: str | Path,
    detector: Detector,
    config: DetectConfig | None = None,
    zones_path: str | Path | None = None,
    show_progress: bool | None = None,
) -> SceneDetections:
    """Run sliced detection on a scene.

    Args:
        scene_path: GeoTIFF (any size).
        detector: A loaded :class:`Detector`.
        config: Slicing and thresholds.
        zones_path: Optional zones GeoJSON (any CRS that can be transformed to the scene's).
        show_progress: Force the progress bar on/off (default: on a terminal).

    Raises:
        RasterError: unreadable scene, or zones given for a scene without a CRS.
        ZonesError: unreadable zones, or zones that do not overlap the scene.
    """
    cfg = config or DetectConfig()
    if cfg.merge not in MERGES:
        raise ValueError(f"merge must be one of {', '.join(MERGES)}, not {cfg.merge!r}")
    warnings: list[str] = []
    with bounded_gdal_cache(cfg.gdal_cache_mb), Scene(scene_path, bands=cfg.bands) as scene:
        info = scene.info
        zones: list[Zone] = []
        if zones_path is not None:
            if info.crs is None:
                raise RasterError(scene_path, "scene has no CRS, so zones cannot be placed on it")
            zones, _ = read_zones(zones_path, to_crs=info.crs)
            warnings.extend(zones_outside(zones, info.footprint(), zones_path, Path(scene_path).name))
        # GSD check against the model card
        scale = 1.0  # scene pixels per model pixel
        if detector.card.gsd and info.gsd:
            ratio = info.gsd / detector.card.gsd
            if abs(ratio - 1) > cfg.gsd_tolerance:
                if cfg.resample:
                    scale = detector.card.gsd / info.gsd
                    warnings.append(f"scene GSD {info.gsd:.2f} m resampled to the detector's {detector.card.gsd:.2f} m")
                else:
                    warnings.append(
                        f"scene GSD {info.gsd:.2f} m is far from the detector's training GSD "
                        f"{detector.card.gsd:.2f} m: objects will look {ratio:.1f}x smaller/larger than in "
                        "training; pass --resample to resample"
                    )
        for w in warnings:
            log.warning("%s: %s", scene_path, w)
        slice_model = cfg.slice_size or detector.card.imgsz
        slice_px = max(8, round(slice_model * scale))
        overlap_px = overlap_pixels(slice_px, cfg.overlap if isinstance(cfg.overlap, float)
                                    else round(cfg.overlap * scale))
        overlap_px = min(overlap_px, slice_px - 1)
        windows = tile_windows(info.width, info.height, slice_px, overlap_px)
        thresholds = class_thresholds(detector.card, cfg.conf)
        ious = class_ious(detector.card, cfg.iou, cfg.class_iou)
        # a plain number when all classes agree: detector stand-ins need not take a mapping
        slice_iou: float | dict[str, float] = ious if len(set(ious.values())) > 1 else cfg.iou
        min_conf = min(thresholds.values(), default=0.25)
        all_boxes: list[np.ndarray] = []
        all_scores: list[np.ndarray] = []
        all_cls: list[np.ndarray] = []
        all_cut: list[np.ndarray] = []
        n_valid = 0
        with progress(disable=None if show_progress is None else not show_progress) as bar:
            task = bar.add_task(f"detecting {Path(scene_path).name}", total=len(windows))
            for start in range(0, len(windows), cfg.batch):
                batch_w = windows[start: start + cfg.batch]
                imgs, valid = [], []
                for win in batch_w:
                    rgb, mask = scene.read_rgb(win)
                    if scale != 1.0:
                        size = (max(1, round(rgb.shape[1] / scale)), max(1, round(rgb.shape[0] / scale)))
                        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale > 1 else cv2.INTER_LINEAR)
                    imgs.append(rgb)
                    valid.append(mask.any())
                # precision/runtime only when asked: detector stand-ins need not know the keywords
                extra: dict[str, str] = {"precision": cfg.precision} if cfg.precision != "fp32" else {}
                if cfg.runtime != "torch":
                    extra["runtime"] = cfg.runtime
                preds = detector.predict(imgs, conf=min_conf, iou=slice_iou, imgsz=slice_model, max_det=cfg.max_det,
                                         device=cfg.device, **extra)
                for win, anns, ok in zip(batch_w, preds, valid, strict=True):
                    if not ok or not anns:
                        continue
                    b = np.array([a.bbox for a in anns]) * scale + [win.col_off, win.row_off] * 2
                    all_boxes.append(b)
                    all_scores.append(np.array([a.score for a in anns]))
                    all_cls.append(np.array([class_id(a.cls) for a in anns]))
                    all_cut.append(_touches_interior_edge(b, win, info.width, info.height, margin=2 * scale))
                n_valid += sum(valid)
                bar.advance(task, len(batch_w))
    if windows and not n_valid:  # zero detections here would read as "no traffic", not "not imaged"
        raise RasterError(scene_path, "scene has no valid pixels (all nodata): nothing to detect")
    if all_boxes:
        boxes, scores = np.concatenate(all_boxes), np.concatenate(all_scores)
        classes, cut = np.concatenate(all_cls), np.concatenate(all_cut)
        metric = cfg.merge.removeprefix("nms-")
        thr = cfg.merge_threshold if cfg.merge_threshold is not None else (cfg.iou if metric == "iou" else DEFAULT_IOS)
        if cfg.merge == "partial":
            keep, kept_boxes = merge_slice_detections(boxes, scores, classes, cut, ios_thr=thr,
                                                      iou_thr=np.array([ious[c] for c in CLASSES]))
        else:
            keep, kept_boxes = nms_merge(boxes, scores, classes, metric=metric, threshold=thr)
        anns = [Annotation.from_bbox(CLASSES[classes[k]], b, score=float(scores[k]))
                for k, b in zip(keep, kept_boxes, strict=True)
                if scores[k] >= thresholds.get(CLASSES[classes[k]], min_conf)]
    else:
        anns = []
    labels = ImageLabels(
        file_name=str(scene_path), width=info.width, height=info.height, annotations=anns, gsd=info.gsd,
        crs=info.crs, transform=info.transform, acquired=info.acquired,
    )
    zone_of: list[str | None] = [None] * len(anns)
    if zones:
        centres = labels.centers()
        mx, my = info.transform @ (centres[:, 0], centres[:, 1]) if len(centres) else (np.zeros(0), np.zeros(0))
        zone_of = zone_of_points(np.column_stack([mx, my]), zones)
        assign_boat_states(anns, info.transform, zones, cfg.dock_distance_m)
    return SceneDetections(labels=labels, zones=zones, zone_of=zone_of, warnings=warnings)


def _touches_interior_edge(boxes: np.ndarray, win: Window, width: int, height: int, margin: float) -> np.ndarray:
    x0, y0 = win.col_off, win.row_off
    x1, y1 = x0 + win.width, y0 + win.height
    cut = np.zeros(len(boxes), dtype=bool)
    if x0 > 0:
        cut |= boxes[:, 0] <= x0 + margin
    if y0 > 0:
        cut |= boxes[:, 1] <= y0 + margin
    if x1 < width:
        cut |= boxes[:, 2] >= x1 - margin
    if y1 < height:
        cut |= boxes[:, 3] >= y1 - margin
    return cut


def write_detections(result: SceneDetections, scene_path: str | Path, out_dir: str | Path,
                     overlay_max_side: int = 4096, bands: tuple[int, int, int] | None = None) -> dict[str, Path]:
    """Write ``detections.geojson`` (+ ``_4326`` copy), ``counts.csv``, ``counts.json`` and ``overlay.png``.

    Detections are polygons in the scene CRS (pixel coordinates when the scene has none).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lab = result.labels
    feats = []
    for a, z in zip(lab.annotations, result.zone_of, strict=True):
        geom = a.to_map(lab.transform) if lab.crs else a.shape
        feats.append((geom, {"class": a.cls, "score": round(float(a.score or 0), 4),
                             "state": a.state.value if a.cls == "boat" else None, "zone": z}))
    paths = write_geojson(out / "detections.geojson", feats, lab.crs, wgs84_copy=lab.crs is not None)
    files = {"detections": paths[0]}
    if len(paths) > 1:
        files["detections_4326"] = paths[1]
    counts = result.counts()
    rows = [{"zone": z, "class": c, "state": s, "count": n} for (z, c, s), n in sorted(counts.items())]
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=["zone", "class", "state", "count"])
    w.writeheader()
    w.writerows(rows)
    atomic_write_bytes(out / "counts.csv", buf.getvalue().encode())
    files["counts_csv"] = out / "counts.csv"
    atomic_write_bytes(out / "counts.json", json.dumps({
        "scene": str(scene_path), "gsd": lab.gsd, "crs": lab.crs,
        "acquired": lab.acquired.isoformat() if lab.acquired else None,
        "counts": rows, "warnings": result.warnings,
    }, indent=2).encode())
    files["counts_json"] = out / "counts.json"
    with Scene(scene_path, bands=bands) as scene:
        try:
            img, f = scene.read_overview(overlay_max_side)
        except RasterError:
            img, f = None, 1.0
    if img is not None:
        thick = 2 if f > 0.5 else 1
        files["overlay"] = save_png(out / "overlay.png", draw_annotations(img, lab.annotations, thickness=thick,
                                                                          scale=f))
    return files


def detect_to_dir(scene_path: str | Path, out_dir: str | Path, weights: str | Path | None = None,
                  zones_path: str | Path | None = None, config: DetectConfig | None = None) -> dict[str, Path]:
    """Load a detector, detect on one scene and write all outputs (the ``freightwatch detect`` command)."""
    cfg = config or DetectConfig()
    result = detect_scene(scene_path, Detector.load(weights), cfg, zones_path)
    return write_detections(result, scene_path, out_dir, bands=cfg.bands)
