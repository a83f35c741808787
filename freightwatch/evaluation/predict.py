"""Running the models on one labeled image for evaluation, from memory or from file.

Tiles small enough to hold are predicted from memory: the detector sees the tile resampled to
its training GSD and padded (never letterbox-scaled) to a multiple of 32; larger images go
through the sliced :func:`~freightwatch.inference.detect.detect_scene`. The density model sees
the image at a GSD inside its trained range: finer imagery is degraded with the coarse-sensor
simulation first (:func:`density_input_gsd`). Scenes too large to hold are streamed from file
(``detect_scene`` with resampling; ``degrade_scene`` then ``density_scene``), in bounded memory.
"""

from __future__ import annotations

import math
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning
from rasterio.features import geometry_mask

from freightwatch.datasets.annotations import ImageLabels
from freightwatch.datasets.coarse import SensorModel, degrade_image, degrade_scene
from freightwatch.datasets.geo import Zone, write_geotiff
from freightwatch.evaluation.detection import BoxSet
from freightwatch.inference.detect import DetectConfig, detect_scene
from freightwatch.models.density import DensityModel, corrected_count, count_interval
from freightwatch.models.detector import Detector
from freightwatch.taxonomy import CLASSES

DIRECT_DENSITY_PX = 1024
"""Largest side (pixels) the density model is run on in one piece; larger inputs are tiled."""


@dataclass
class PredictConfig:
    """How the models are run for evaluation.

    Attributes:
        min_score: Detections scored below this are dropped (low, so PR curves reach full recall).
        max_det: Detections per slice kept by the detector.
        resample_tolerance: Relative GSD mismatch beyond which images are resampled to the
            detector's training GSD (evaluation resamples even small mismatches).
        batch: Slices per forward pass for sliced detection.
        device: Torch device of the detector.
        bands: RGB band choice for multi-band images.
        coverage: Coverage of the density model's count intervals.
    """

    min_score: float = 0.001
    max_det: int = 2000
    resample_tolerance: float = 0.05
    batch: int = 8
    device: str | None = None
    bands: tuple[int, int, int] | None = None
    coverage: float = 0.9


def _boxset(anns: list, sx: float = 1.0, sy: float = 1.0, width: float | None = None,
            height: float | None = None) -> BoxSet:
    if not anns:
        return BoxSet.empty()
    boxes = np.array([a.bbox for a in anns], dtype=np.float64) / [sx, sy, sx, sy]
    if width is not None and height is not None:
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    classes = np.array([CLASSES.index(a.cls) for a in anns])
    scores = np.array([float(a.score or 0.0) for a in anns])
    return BoxSet(boxes[ok], classes[ok], scores[ok])


def detector_scale(detector: Detector, gsd: float | None, tolerance: float) -> float:
    """Model pixels per image pixel: ``gsd / card GSD`` when both are known and differ by more than
    ``tolerance``, else 1."""
    card = detector.card.gsd
    if gsd and card and abs(gsd / card - 1) > tolerance:
        return gsd / card
    return 1.0


def detect_array(detector: Detector, rgb: np.ndarray, gsd: float | None, cfg: PredictConfig) -> BoxSet:
    """Detections in an RGB uint8 image held in memory, in its own pixel coordinates.

    The image is resampled to the detector's training GSD (when ``gsd`` is known). When it then
    fits in one model input it is padded to a multiple of 32 and predicted directly, so the
    network sees objects at their trained size (ultralytics would otherwise scale small inputs up
    to ``imgsz``); larger images are sliced by :func:`detect_scene`.
    """
    h, w = rgb.shape[:2]
    f = detector_scale(detector, gsd, cfg.resample_tolerance)
    img = rgb
    if f != 1.0:
        size = (max(1, round(w * f)), max(1, round(h * f)))
        img = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    hh, ww = img.shape[:2]
    sx, sy = ww / w, hh / h
    if max(hh, ww) <= detector.card.imgsz:
        s = 32 * math.ceil(max(hh, ww) / 32)
        pad = np.full((s, s, 3), 114, dtype=np.uint8)  # ultralytics' own letterbox grey
        pad[:hh, :ww] = img
        anns = detector.predict([pad], conf=cfg.min_score, imgsz=s, max_det=cfg.max_det, device=cfg.device)[0]
    else:
        with tempfile.TemporaryDirectory(prefix="fw-bench-") as tmp, warnings.catch_warnings():
            # A plain pixel grid, on purpose: no CRS, so detect_scene neither warns about nor resamples it.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            path = write_geotiff(Path(tmp) / "image.tif", np.ascontiguousarray(img.transpose(2, 0, 1)), None,
                                 Affine.identity(), photometric_rgb=True)
            dcfg = DetectConfig(conf=cfg.min_score, max_det=cfg.max_det, batch=cfg.batch, device=cfg.device)
            anns = detect_scene(path, detector, dcfg, show_progress=False).labels.annotations
    return _boxset(anns, sx, sy, w, h)


def detect_file(detector: Detector, path: Path, cfg: PredictConfig) -> tuple[BoxSet, list[str]]:
    """Sliced detection on a scene streamed from file (resampled to the detector's GSD when the
    file's CRS gives its GSD). Returns the boxes and warnings."""
    dcfg = DetectConfig(conf=cfg.min_score, max_det=cfg.max_det, batch=cfg.batch, device=cfg.device,
                        resample=True, gsd_tolerance=cfg.resample_tolerance, bands=cfg.bands)
    res = detect_scene(path, detector, dcfg, show_progress=False)
    return _boxset(res.labels.annotations, width=res.labels.width, height=res.labels.height), res.warnings


def density_input_gsd(model: DensityModel, gsd: float | None, target: float | None = None) -> tuple[float | None, str]:
    """The GSD the density model is run at for imagery of ``gsd``, and how it gets there.

    Returns:
        ``(gsd, mode)``: ``native`` when ``gsd`` is inside the model's accepted range; ``degraded``
        when finer (simulated at ``target``, default the range's lower end); ``outside`` when
        coarser than the range (run anyway, flagged); ``(None, "unknown")`` without a GSD.
    """
    if gsd is None:
        return None, "unknown"
    cfg = model.config
    if cfg.gsd_accepted(gsd):
        return gsd, "native"
    lo = cfg.gsd_range[0]
    if gsd < lo:
        t = lo if target is None else float(target)
        return max(t, gsd), "degraded"
    return gsd, "outside"


@dataclass
class DensityCounts:
    """Density-model counts of one image.

    Attributes:
        gsd: GSD the model ran at.
        mode: ``native``, ``degraded``, ``outside`` (see :func:`density_input_gsd`) or ``sweep``.
        counts: Class -> (count, lower, upper) for the whole image.
        zones: (zone, class) -> (count, lower, upper).
        in_range: Whether ``gsd`` is inside the model's accepted range.
    """

    gsd: float
    mode: str
    counts: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    zones: dict[tuple[str, str], tuple[float, float, float]] = field(default_factory=dict)
    in_range: bool = True


def _zone_masks(zones: list[Zone], shape: tuple[int, int], transform: Affine) -> list[np.ndarray]:
    """One mask per zone of the pixels whose centre it contains; a pixel belongs to the first zone
    in file order, as objects do in :func:`~freightwatch.datasets.geo.count_by_zone`."""
    claimed = np.zeros(shape, dtype=bool)
    out = []
    for z in zones:
        m = geometry_mask([z.geometry], out_shape=shape, transform=transform, invert=True) & ~claimed
        claimed |= m
        out.append(m)
    return out


def _intervals(model: DensityModel, totals: dict[str, float], gsd: float, coverage: float,
               kind: str) -> dict[str, tuple[float, float, float]]:
    out = {}
    for c, v in totals.items():
        lo, hi = count_interval(model.config.interval, v, c, gsd, coverage, kind)
        out[c] = (float(v), lo, hi)
    return out


def density_array(
    model: DensityModel,
    rgb: np.ndarray,
    valid: np.ndarray | None,
    src_gsd: float,
    gsd: float,
    mode: str,
    coverage: float = 0.9,
    zones: list[Zone] | None = None,
    transform: Affine | None = None,
    rng: np.random.Generator | None = None,
) -> DensityCounts:
    """Density counts of an image held in memory, degraded from ``src_gsd`` to ``gsd`` first if coarser.

    Args:
        model: The density model.
        rgb: ``(H, W, 3)`` uint8 image at ``src_gsd``.
        valid: Its validity mask, or ``None``.
        src_gsd: The image's GSD.
        gsd: GSD to run the model at (>= ``src_gsd``).
        mode: Recorded in the result.
        coverage: Interval coverage.
        zones: Zones in the image's CRS (needs ``transform``).
        transform: The image's pixel -> map transform.
        rng: Noise of the sensor simulation.
    """
    img, vmask = rgb, valid
    sx = sy = 1.0
    if gsd > src_gsd * (1 + 1e-6):
        img = degrade_image(rgb, src_gsd, SensorModel(gsd=gsd), rng, valid=valid)
        sx, sy = img.shape[1] / rgb.shape[1], img.shape[0] / rgb.shape[0]
        vmask = None if valid is None or valid.all() else cv2.resize(
            valid.astype(np.float32), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA) >= 0.5
    cfg = model.config
    tta = bool((cfg.interval or {}).get("tta", False))
    h, w = img.shape[:2]
    if max(h, w) <= DIRECT_DENSITY_PX:
        maps = model.predict(img, vmask, tta=tta)
    else:
        maps = np.zeros((len(cfg.classes), h, w), dtype=np.float32)
        step, m = 512, 48  # core tiles plus context, as density_scene does
        for r0 in range(0, h, step):
            for c0 in range(0, w, step):
                y0, x0 = max(0, r0 - m), max(0, c0 - m)
                y1, x1 = min(h, r0 + step + m), min(w, c0 + step + m)
                part = model.predict(img[y0:y1, x0:x1], None if vmask is None else vmask[y0:y1, x0:x1], tta=tta)
                ch, cw = min(step, h - r0), min(step, w - c0)
                maps[:, r0:r0 + ch, c0:c0 + cw] = part[:, r0 - y0:r0 - y0 + ch, c0 - x0:c0 - x0 + cw]
    scale = np.array([corrected_count(cfg.interval, 1.0, c, gsd) for c in cfg.classes])
    sums = maps.reshape(len(cfg.classes), -1).sum(axis=1, dtype=np.float64) * scale
    res = DensityCounts(gsd, mode, in_range=cfg.gsd_accepted(gsd))
    res.counts = _intervals(model, dict(zip(cfg.classes, sums.tolist(), strict=True)), gsd, coverage, "scene")
    if zones and transform is not None:
        t = transform * Affine.scale(1 / sx, 1 / sy)
        for z, mask in zip(zones, _zone_masks(zones, (h, w), t), strict=True):
            zs = maps[:, mask].sum(axis=1, dtype=np.float64) * scale
            for c, v in zip(cfg.classes, zs.tolist(), strict=True):
                lo, hi = count_interval(cfg.interval, v, c, gsd, coverage, z.kind)
                res.zones[(z.name, c)] = (float(v), lo, hi)
    return res


def density_file(
    model: DensityModel,
    path: Path,
    labels: ImageLabels,
    src_gsd: float,
    gsd: float,
    mode: str,
    coverage: float = 0.9,
    zones: list[Zone] | None = None,
    bands: tuple[int, int, int] | None = None,
    seed: int = 0,
) -> DensityCounts:
    """Density counts of a scene streamed from file: ``degrade_scene`` to ``gsd`` (when coarser than
    ``src_gsd``) then tiled ``density_scene``, both in bounded memory."""
    from freightwatch.inference.density import DensityRunConfig, density_scene

    with tempfile.TemporaryDirectory(prefix="fw-bench-") as tmp:
        scene = path
        if gsd > src_gsd * (1 + 1e-6):
            scene = degrade_scene(path, labels, gsd, Path(tmp) / "coarse", seed=seed, bands=bands)["scene"]
        rcfg = DensityRunConfig(coverage=coverage, force=True, gsd=gsd, show_progress=False,
                                bands=None if scene != path else bands)
        result = density_scene(scene, model, Path(tmp) / "density", zones or None, rcfg)
    res = DensityCounts(gsd, mode, in_range=model.config.gsd_accepted(gsd))
    for r in result.rows:
        key = (float(r["count"]), float(r["lower"]), float(r["upper"]))
        if r["zone"] == "all":
            res.counts[r["class"]] = key
        else:
            res.zones[(r["zone"], r["class"])] = key
    return res
