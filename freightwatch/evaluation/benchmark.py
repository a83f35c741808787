"""``freightwatch benchmark``: detection, counting and density metrics on labeled tiles or scenes.

One pass over the images, one at a time (pixels are never all in memory):

1. the detector predicts every image down to a low score (``min_score``), so COCO AP
   (pycocotools, overhead size buckets) and precision-recall curves cover the whole range;
2. its detections are matched to the ground truth (IoU >= 0.5) to find each class's best-F1 score
   threshold; counts are then taken at that threshold and at the user's (``conf``);
3. the density model counts every image at a GSD inside its trained range (finer imagery is
   degraded with the coarse-sensor simulation first), with intervals;
4. counts are compared with the truth per image and per zone (:mod:`~.counting`).

Then, optionally, the GSD sweep (:mod:`~.sweep`), and the outputs: ``metrics.json`` (stable
keys, :data:`METRICS_KEYS`), ``report.md``, PNGs (:mod:`~.report`) and per-image / per-zone CSVs.

The best-F1 thresholds are chosen on the data being evaluated, so counts at them are an
optimistic upper bound for that threshold rule; counts at the user threshold are not tuned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import freightwatch
from freightwatch._progress import progress
from freightwatch.datasets.geo import Zone, atomic_write_bytes, read_zones, zone_of_points
from freightwatch.datasets.raster import Scene
from freightwatch.errors import FreightwatchError, InputFileError
from freightwatch.evaluation.counting import count_table
from freightwatch.evaluation.detection import (
    AREA_BUCKETS,
    BoxSet,
    ImageMatch,
    PRCurve,
    best_f1,
    coco_metrics,
    f1_at,
    match_image,
    nan_to_none,
    pr_curve,
)
from freightwatch.evaluation.predict import (
    DensityCounts,
    PredictConfig,
    density_array,
    density_file,
    density_input_gsd,
    detect_array,
    detect_file,
)
from freightwatch.evaluation.samples import Dataset, Sample
from freightwatch.inference.detect import class_thresholds
from freightwatch.models.density import DensityModel, bundled_density
from freightwatch.models.detector import Detector, bundled_detector, git_commit
from freightwatch.taxonomy import CLASSES

log = logging.getLogger(__name__)

SCHEMA = "freightwatch-benchmark/1"
"""``schema`` of ``metrics.json``; bumped when a key changes meaning or goes away."""

METRICS_KEYS: tuple[str, ...] = (
    "schema", "created", "seconds", "command", "versions", "models", "data", "settings", "detection",
    "counting", "density", "sweep", "examples", "files", "warnings",
)
"""Top-level keys of ``metrics.json``, always present (``null`` where a part did not run)."""

COUNT_METHODS: tuple[str, ...] = ("detector_best_f1", "detector_conf", "density")
"""Counting methods: the detector at its best-F1 thresholds, at the user threshold; the density model."""

PACKAGES: tuple[str, ...] = (
    "numpy", "torch", "torchvision", "ultralytics", "pycocotools", "rasterio", "opencv-python-headless",
    "opencv-python", "shapely", "pandas", "matplotlib", "safetensors",
)
"""Packages whose versions are recorded (those installed)."""


@dataclass
class BenchmarkConfig:
    """Settings of a benchmark run (mirrors ``freightwatch benchmark`` options).

    Attributes:
        conf: The user's detector score threshold for every class (counts are reported at it too);
            ``None``: the detector card's per-class counting thresholds, as ``freightwatch detect``
            uses them (0.25 where the card has none).
        iou: IoU for matching detections to ground truth (PR curves, F1, examples).
        min_score: Detections below this score are dropped before evaluation.
        max_det: Detections kept per image for AP (at least five times its ground truth).
        gsd: GSD in metres of images that state none (no CRS, no GSD in the labels).
        density_gsd: GSD to simulate for the density model when images are finer than its range
            (default: the range's lower end, 3 m for the bundled model).
        coverage: Nominal coverage of the density intervals.
        sweep: GSDs of the sweep (empty: no sweep).
        examples: Example images with errors drawn.
        bands: RGB band choice for multi-band images.
        device: Torch device of the detector.
        batch: Slices per forward pass for sliced detection.
        seed: Seed of the sensor simulation.
        max_pixels: Images larger than this are streamed from file instead of held in memory.
        tolerance: Relative tolerance of ``within_10pct``.
        show_progress: Progress bars (``None``: when stderr is a terminal).
    """

    conf: float | None = None
    iou: float = 0.5
    min_score: float = 0.001
    max_det: int = 1000
    gsd: float | None = None
    density_gsd: float | None = None
    coverage: float = 0.9
    sweep: tuple[float, ...] = ()
    examples: int = 6
    bands: tuple[int, int, int] | None = None
    device: str | None = None
    batch: int = 8
    seed: int = 0
    max_pixels: int = 6000 * 6000
    tolerance: float = 0.1
    show_progress: bool | None = None

    def __post_init__(self) -> None:
        if (self.conf is not None and not 0 <= self.conf <= 1) or not 0 <= self.min_score <= 1:
            raise FreightwatchError(f"score thresholds must be in [0, 1] (conf={self.conf}, "
                                    f"min_score={self.min_score})")
        if not 0 < self.iou < 1:
            raise FreightwatchError(f"IoU threshold must be in (0, 1), got {self.iou}")
        if not 0 < self.coverage < 1:
            raise FreightwatchError(f"coverage must be in (0, 1), got {self.coverage}")
        if self.gsd is not None and not self.gsd > 0:
            raise FreightwatchError(f"--gsd must be positive, got {self.gsd}")


@dataclass
class Models:
    """The models under test and where they came from."""

    detector: Detector | None = None
    density: DensityModel | None = None
    detector_path: Path | None = None
    density_path: Path | None = None
    warnings: list[str] = field(default_factory=list)


def load_models(
    weights: str | Path | None = None,
    density_weights: str | Path | None = None,
    use_detector: bool = True,
    use_density: bool = True,
) -> Models:
    """Load the detector and the density model; the bundled weights where none are given.

    A model whose weights are given but unusable is an error. A bundled model that does not exist
    is left out with a warning.

    Raises:
        InputFileError: given weights that are missing or unreadable.
        FreightwatchError: no model at all to benchmark.
    """
    m = Models()
    if use_detector:
        if weights is not None:
            m.detector_path = Path(weights)
        elif bundled_detector().is_file():
            m.detector_path = bundled_detector()
        else:
            m.warnings.append(f"detector left out: no --weights and no bundled detector ({bundled_detector()}); "
                              "pass --weights W (train one with `freightwatch train detector`)")
        if m.detector_path is not None:
            m.detector = Detector.load(m.detector_path)
    if use_density:
        if density_weights is not None:
            m.density_path = Path(density_weights)
        elif bundled_density().is_file():
            m.density_path = bundled_density()
        else:
            m.warnings.append(f"density model left out: no --density-weights and no bundled weights "
                              f"({bundled_density()})")
        if m.density_path is not None:
            m.density = DensityModel.load(m.density_path)
    if m.detector is None and m.density is None:
        why = "; ".join(m.warnings) or "both models were switched off"
        raise FreightwatchError(f"no model to benchmark: {why}")
    return m


@dataclass
class ImageRecord:
    """What the benchmark keeps of one image (compact: boxes as arrays, no pixels).

    Attributes:
        name: The image's name in reports (:attr:`Sample.name`).
        image: Its file.
        width: Width in pixels.
        height: Height in pixels.
        gsd: GSD in metres, or ``None``.
        gsd_source: Where the GSD came from: ``file``, ``labels``, ``option`` or ``unknown``.
        gt: Ground-truth boxes.
        pred: Detections (``None`` without a detector).
        match: Greedy matches of ``pred`` to ``gt``.
        zones: Zones of this image (in its CRS); empty without zones.
        gt_zone: Zone index of each ground-truth object (-1: in no zone).
        pred_zone: Zone index of each detection.
        density: Density-model counts (``None`` when it did not run).
        notes: Why something did not run for this image.
    """

    name: str
    image: Path
    width: int
    height: int
    gsd: float | None
    gsd_source: str
    gt: BoxSet
    pred: BoxSet | None = None
    match: ImageMatch | None = None
    zones: list[Zone] = field(default_factory=list)
    gt_zone: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    pred_zone: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    density: DensityCounts | None = None
    notes: list[str] = field(default_factory=list)


def _zone_index(boxes: np.ndarray, transform: Any, zones: list[Zone]) -> np.ndarray:
    if not zones or not len(boxes):
        return np.full(len(boxes), -1, dtype=np.int64)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    mx, my = transform @ (cx, cy)
    index = {z.name: i for i, z in enumerate(zones)}
    return np.array([-1 if n is None else index[n] for n in zone_of_points(np.column_stack([mx, my]), zones)])


class _ZoneCache:
    """Zones files read once per (file, CRS)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], list[Zone]] = {}

    def get(self, path: Path, crs: str) -> list[Zone]:
        key = (str(path), crs)
        if key not in self._cache:
            self._cache[key] = read_zones(path, to_crs=crs)[0]
        return self._cache[key]


def evaluate_image(sample: Sample, models: Models, cfg: BenchmarkConfig, zone_cache: _ZoneCache | None = None,
                   index: int = 0) -> ImageRecord:
    """Run the models on one labeled image and keep what the metrics need.

    Raises:
        InputFileError: unreadable image, or labels for another image size.
    """
    labels = sample.labels
    pcfg = PredictConfig(min_score=cfg.min_score, batch=cfg.batch, device=cfg.device, bands=cfg.bands,
                         coverage=cfg.coverage)
    with Scene(sample.image, bands=cfg.bands) as scene:
        info = scene.info
        if (info.width, info.height) != (labels.width, labels.height) and not labels.attrs.get("size_from_labels"):
            raise InputFileError(sample.image, f"labels are for {labels.width}x{labels.height} px, "
                                               f"the image is {info.width}x{info.height} px")
        if info.gsd is not None:
            gsd, src = info.gsd, "file"
        elif labels.gsd is not None:
            gsd, src = labels.gsd, "labels"
        elif cfg.gsd is not None:
            gsd, src = cfg.gsd, "option"
        else:
            gsd, src = None, "unknown"
        crs = info.crs or labels.crs
        transform = info.transform if info.crs else labels.transform
        big = info.width * info.height > cfg.max_pixels
        rgb, valid = (None, None) if big else scene.read_rgb()
    rec = ImageRecord(sample.name, sample.image, info.width, info.height, gsd, src, BoxSet.from_labels(labels,
                                                                                                              False))
    if sample.zones is not None:
        if crs and transform is not None:
            rec.zones = (zone_cache or _ZoneCache()).get(sample.zones, crs)
        else:
            rec.notes.append("zones ignored: the image has no CRS")
    rec.gt_zone = _zone_index(rec.gt.boxes, transform, rec.zones)

    det = models.detector
    if det is not None:
        if rgb is not None:
            pred = detect_array(det, rgb, gsd, pcfg)
        else:
            pred, warns = detect_file(det, sample.image, pcfg)
            rec.notes.extend(warns)
            if info.gsd is None and gsd is not None and det.card.gsd:
                rec.notes.append("large image without a CRS streamed from file: not resampled to the detector's GSD")
        if gsd is None and det.card.gsd:
            rec.notes.append(f"GSD unknown: not resampled to the detector's {det.card.gsd:g} m (pass --gsd)")
        elif not det.card.gsd:
            rec.notes.append("the detector's card states no training GSD: images are not resampled")
        rec.pred = pred.top(max(cfg.max_det, 5 * len(rec.gt)))
        rec.match = match_image(rec.gt, rec.pred, cfg.iou)
        rec.pred_zone = _zone_index(rec.pred.boxes, transform, rec.zones)

    dm = models.density
    if dm is not None:
        target, mode = density_input_gsd(dm, gsd, cfg.density_gsd)
        try:
            if target is None:
                rec.notes.append("density model not run: GSD unknown (pass --gsd)")
            elif rgb is not None:
                rng = np.random.default_rng([cfg.seed, index])
                rec.density = density_array(dm, rgb, valid, gsd, target, mode, cfg.coverage, rec.zones, transform,
                                            rng)
            else:
                rec.density = density_file(dm, sample.image, replace(labels, gsd=gsd), gsd, target, mode,
                                           cfg.coverage, rec.zones, cfg.bands, cfg.seed + index)
        except (FreightwatchError, ValueError) as exc:
            # The detector's results for this image stay; only the density count is missing.
            rec.notes.append(f"density model not run on some images: {str(exc)[:200]}")
            log.warning("%s: density model not run (%s)", sample.name, exc)
    return rec


# -- compiling the metrics --------------------------------------------------------------------------
def _pr_curves(records: list[ImageRecord]) -> dict[str, tuple[PRCurve, np.ndarray, np.ndarray]]:
    """Per class: the PR curve plus all detection scores and match flags."""
    out = {}
    for k, c in enumerate(CLASSES):
        scores, tps, n_gt = [], [], 0
        for r in records:
            if r.pred is None:
                continue
            sel = r.pred.classes == k
            scores.append(r.pred.scores[sel])
            tps.append(r.match.pred_tp[sel])
            n_gt += int((r.gt.classes == k).sum())
        s = np.concatenate(scores) if scores else np.zeros(0)
        t = np.concatenate(tps) if tps else np.zeros(0, dtype=bool)
        out[c] = (pr_curve(s, t, n_gt), s, t)
    return out


def _count_rows(records: list[ImageRecord], thresholds: dict[str, float], user: dict[str, float]
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Long tables of counts per (image, class) and per (image, zone, class)."""
    img_rows, zone_rows = [], []
    for r in records:
        for k, c in enumerate(CLASSES):
            row: dict[str, Any] = {"image": r.name, "class": c, "true": float((r.gt.classes == k).sum()),
                                   "gsd": r.gsd}
            if r.pred is not None:
                sel = r.pred.classes == k
                row["detector_best_f1"] = float((sel & (r.pred.scores >= thresholds[c])).sum())
                row["detector_conf"] = float((sel & (r.pred.scores >= user[c])).sum())
            if r.density is not None and c in r.density.counts:
                v, lo, hi = r.density.counts[c]
                row.update(density=v, density_lower=lo, density_upper=hi, density_gsd=r.density.gsd)
            img_rows.append(row)
        for zi, z in enumerate(r.zones):
            for k, c in enumerate(CLASSES):
                if z.classes and c not in z.classes:
                    continue
                row = {"image": r.name, "zone": z.name, "kind": z.kind, "class": c,
                       "true": float(((r.gt.classes == k) & (r.gt_zone == zi)).sum())}
                if r.pred is not None:
                    sel = (r.pred.classes == k) & (r.pred_zone == zi)
                    row["detector_best_f1"] = float((sel & (r.pred.scores >= thresholds[c])).sum())
                    row["detector_conf"] = float((sel & (r.pred.scores >= user[c])).sum())
                if r.density is not None and (z.name, c) in r.density.zones:
                    v, lo, hi = r.density.zones[(z.name, c)]
                    row.update(density=v, density_lower=lo, density_upper=hi)
                zone_rows.append(row)
    cols = ["detector_best_f1", "detector_conf", "density", "density_lower", "density_upper"]
    img, zone = pd.DataFrame.from_records(img_rows), pd.DataFrame.from_records(zone_rows)
    for df in (img, zone):
        for col in cols:
            if len(df) and col not in df:
                df[col] = np.nan
    return img, zone


def versions() -> dict[str, Any]:
    """Python, platform, freightwatch (and its git commit) and the installed package versions."""
    out: dict[str, Any] = {"freightwatch": freightwatch.__version__, "commit": git_commit(Path(__file__).parent),
                           "python": sys.version.split()[0], "platform": platform.platform()}
    for p in PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            continue
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_cards(models: Models) -> dict[str, Any]:
    """The models' cards for ``metrics.json`` (architecture tables and training file lists left out)."""
    out: dict[str, Any] = {"detector": None, "density": None}
    if models.detector is not None:
        card = asdict(models.detector.card)
        card.pop("model_yaml", None)
        out["detector"] = {"weights": str(models.detector_path), "sha256": _sha256(models.detector_path),
                           "card": card}
    if models.density is not None:
        cfg = asdict(models.density.config)
        interval = cfg.pop("interval") or {}
        training = dict(cfg.get("training") or {})
        scenes = training.pop("scenes", None)
        if scenes is not None:
            training["n_scenes"] = len(scenes)
        cfg["training"] = training
        cfg["interval"] = {k: interval.get(k) for k in ("method", "coverage", "k", "gsd_nodes", "tta", "n")}
        out["density"] = {"weights": str(models.density_path), "sha256": _sha256(models.density_path), "config": cfg}
    return out


def _summary_stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "median": None, "max": None}
    a = np.asarray(values, dtype=np.float64)
    return {"min": float(a.min()), "median": float(np.median(a)), "max": float(a.max())}


def data_summary(dataset: Dataset, records: list[ImageRecord], failed: list[tuple[str, str]]) -> dict[str, Any]:
    """What was evaluated: images, objects per class, GSDs, sizes, zones, and what was left out."""
    objects: Counter[str] = Counter()
    for r in records:
        objects.update(CLASSES[k] for k in r.gt.classes.tolist())
    gsds = [r.gsd for r in records if r.gsd is not None]
    left_out = [{"image": n, "reason": why} for n, why in dataset.missing + failed]
    return {
        "path": dataset.path, "format": dataset.format, "mapping": dataset.mapping,
        "images": len(dataset.samples) + len(dataset.missing), "images_evaluated": len(records),
        "images_left_out": len(left_out), "left_out": left_out[:50],
        "objects": {c: int(objects.get(c, 0)) for c in CLASSES},
        "dropped_unmapped": dict(dataset.dropped.most_common()), "skipped_records": len(dataset.skipped),
        "gsd_m": _summary_stats(gsds),
        "gsd_source": dict(Counter(r.gsd_source for r in records)),
        "width_px": _summary_stats([r.width for r in records]),
        "height_px": _summary_stats([r.height for r in records]),
        "images_with_zones": sum(1 for r in records if r.zones),
        "zones": sum(len(r.zones) for r in records),
    }


@dataclass
class BenchmarkResult:
    """A finished benchmark.

    Attributes:
        metrics: The content of ``metrics.json`` (NaN as ``None``).
        files: Name -> path of everything written.
        records: Per-image records (boxes, matches, density counts).
        per_image: Counts per image and class (also ``counts_per_image.csv``).
        per_zone: Counts per image, zone and class (also ``counts_per_zone.csv``).
    """

    metrics: dict[str, Any]
    files: dict[str, Path]
    records: list[ImageRecord]
    per_image: pd.DataFrame
    per_zone: pd.DataFrame


def run_benchmark(
    dataset: Dataset,
    out_dir: str | Path,
    models: Models,
    config: BenchmarkConfig | None = None,
    command: list[str] | None = None,
) -> BenchmarkResult:
    """Evaluate the models on a labeled dataset and write ``metrics.json``, ``report.md`` and PNGs.

    Args:
        dataset: Labeled images (:func:`~freightwatch.evaluation.samples.load_dataset`).
        out_dir: Output folder (created).
        models: Models under test (:func:`load_models`).
        config: Settings.
        command: The command line, recorded in ``metrics.json``.

    Raises:
        FreightwatchError: no image could be evaluated (each image's problem is named).
    """
    from freightwatch.evaluation import report
    from freightwatch.evaluation.sweep import run_sweep

    cfg = config or BenchmarkConfig()
    t0 = time.time()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    warnings = list(models.warnings)
    records: list[ImageRecord] = []
    failed: list[tuple[str, str]] = []
    zone_cache = _ZoneCache()
    with progress(disable=None if cfg.show_progress is None else not cfg.show_progress) as bar:
        task = bar.add_task("benchmark", total=len(dataset.samples))
        for i, s in enumerate(dataset.samples):
            try:
                records.append(evaluate_image(s, models, cfg, zone_cache, i))
            except (FreightwatchError, OSError, ValueError) as exc:
                # One bad image must not cost the rest of the run: note it and go on.
                log.warning("%s: left out (%s)", s.name, exc)
                failed.append((s.name, str(exc)))
            bar.advance(task)
    if not records:
        raise FreightwatchError(f"{dataset.path}: no image could be evaluated; first problem: "
                                f"{failed[0][0]}: {failed[0][1]}" if failed else f"{dataset.path}: no image")
    notes = Counter(n for r in records for n in r.notes)
    warnings += [f"{n} ({k} image{'s' if k > 1 else ''})" for n, k in notes.most_common()]

    # Detection: COCO AP, PR curves, thresholds.
    detection = None
    # the user's thresholds: --conf for every class, else those `freightwatch detect` would use
    user = class_thresholds(models.detector.card, cfg.conf) if models.detector is not None \
        else dict.fromkeys(CLASSES, 0.25 if cfg.conf is None else cfg.conf)
    thresholds = dict(user)
    curves: dict[str, tuple[PRCurve, np.ndarray, np.ndarray]] = {}
    if models.detector is not None:
        with_pred = [r for r in records if r.pred is not None]
        max_dets = max([len(r.pred) for r in with_pred] + [100])
        coco = coco_metrics([r.gt for r in with_pred], [r.pred for r in with_pred], max_dets=max_dets)
        curves = _pr_curves(with_pred)
        pr: dict[str, Any] = {}
        for c, (curve, s, t) in curves.items():
            thr = best_f1(curve)
            note = None
            if thr is None:
                note = "no ground truth" if curve.n_gt == 0 else "no correct detection"
                note += f": counts use the user threshold {user[c]:g}"
            thresholds[c] = thr if thr is not None else user[c]
            pr[c] = {"n_gt": curve.n_gt, "n_det": len(s), "best_f1": f1_at(s, t, curve.n_gt, thresholds[c]),
                     "at_conf": f1_at(s, t, curve.n_gt, user[c]), "note": note}
        detection = {"coco": coco, "pr": pr, "thresholds": thresholds, "user_thresholds": user, "iou_match": cfg.iou,
                     "min_score": cfg.min_score, "max_dets": max_dets,
                     "size_buckets_px2": {k: list(v) for k, v in AREA_BUCKETS.items() if k != "all"}}

    per_image, per_zone = _count_rows(records, thresholds, user)
    methods = [m for m in COUNT_METHODS if len(per_image) and per_image[m].notna().any()]
    counting = {
        "methods": methods,
        "per_image": count_table(per_image, methods, CLASSES, cfg.tolerance) if methods else {},
        "per_zone": count_table(per_zone, [m for m in methods if per_zone[m].notna().any()], CLASSES, cfg.tolerance)
        if len(per_zone) else None,
        "per_zone_note": None if len(per_zone) else "no zones (needs georeferenced images and a zones file)",
    }
    density = None
    if models.density is not None:
        runs = [r.density for r in records if r.density is not None]
        density = {"gsd_m": _summary_stats([d.gsd for d in runs]), "modes": dict(Counter(d.mode for d in runs)),
                   "in_range": sum(d.in_range for d in runs), "images": len(runs), "coverage_nominal": cfg.coverage,
                   "sensor": "system MTF 0.1 at Nyquist and 2.5 DN correlated noise, the SensorModel defaults"}

    sweep = None
    sweep_result = None
    if cfg.sweep and models.detector is not None and not models.detector.card.gsd:
        warnings.append("the detector's card states no training GSD: in the sweep it sees the degraded images at "
                        "their coarse size, not resampled back")
    if cfg.sweep:
        image_gsd = {str(r.image): r.gsd for r in records}
        ok_samples = [s for s in dataset.samples if str(s.image) in image_gsd]
        pcfg = PredictConfig(min_score=cfg.min_score, batch=cfg.batch, device=cfg.device, bands=cfg.bands,
                             coverage=cfg.coverage)
        sweep_result = run_sweep(ok_samples, cfg.sweep, models.detector, models.density, thresholds, user, pcfg,
                                 image_gsd, cfg.max_pixels, cfg.seed, cfg.show_progress)
        sweep = {"gsds": list(cfg.sweep), "rows": sweep_result.rows,
                 "skipped": [{"image": n, "gsd": g, "reason": why} for n, g, why in sweep_result.skipped[:100]],
                 "n_skipped": len(sweep_result.skipped),
                 "density_range_m": list(sweep_result.density_range) if sweep_result.density_range else None,
                 "detector_gsd_m": sweep_result.detector_gsd,
                 "sensor": "system MTF 0.1 at Nyquist and 2.5 DN correlated noise, the SensorModel defaults",
                 "data_gsd_m": list(sweep_result.data_gsd) if sweep_result.data_gsd else None}

    files: dict[str, Path] = {}
    per_image.to_csv(out / "counts_per_image.csv", index=False)
    files["counts_per_image"] = out / "counts_per_image.csv"
    if len(per_zone):
        per_zone.to_csv(out / "counts_per_zone.csv", index=False)
        files["counts_per_zone"] = out / "counts_per_zone.csv"
    if sweep_result is not None and len(sweep_result.counts):
        sweep_result.counts.to_csv(out / "sweep_counts.csv", index=False)
        files["sweep_counts"] = out / "sweep_counts.csv"
    if curves:
        files["pr_curves"] = report.plot_pr_curves(curves, detection, out / "pr_curves.png")
    files["count_scatter"] = report.plot_count_scatter(per_image, methods, out / "count_scatter.png", "image")
    if len(per_zone):
        files["count_scatter_zones"] = report.plot_count_scatter(per_zone, methods, out / "count_scatter_zones.png",
                                                                 "zone")
    examples: list[dict[str, Any]] = []
    if models.detector is not None and cfg.examples > 0:
        examples, ex_files = report.draw_examples(records, thresholds, out, cfg.examples, cfg.bands, cfg.max_pixels)
        files.update(ex_files)
    if sweep_result is not None and sweep_result.rows:
        files["gsd_sweep"] = report.plot_sweep(sweep_result, out / "gsd_sweep.png")

    metrics = {
        "schema": SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": None,
        "command": command,
        "versions": versions(),
        "models": model_cards(models),
        "data": data_summary(dataset, records, failed),
        "settings": {**{k: v for k, v in asdict(cfg).items() if k != "show_progress"},
                     "sweep": list(cfg.sweep), "count_methods": list(COUNT_METHODS)},
        "detection": detection,
        "counting": counting,
        "density": density,
        "sweep": sweep,
        "examples": examples,
        "files": {},
        "warnings": warnings,
    }
    files["report"] = out / "report.md"
    files["metrics"] = out / "metrics.json"
    metrics["files"] = {k: p.relative_to(out).as_posix() for k, p in files.items()}
    metrics["seconds"] = round(time.time() - t0, 2)
    metrics = nan_to_none(metrics)
    report.write_report(metrics, out / "report.md")
    atomic_write_bytes(out / "metrics.json", json.dumps(metrics, indent=2, allow_nan=False).encode())
    return BenchmarkResult(metrics, files, records, per_image, per_zone)


def benchmark(
    data: str | Path,
    format: str,
    out_dir: str | Path,
    weights: str | Path | None = None,
    density_weights: str | Path | None = None,
    config: BenchmarkConfig | None = None,
    mapping: str | Path | None = None,
    images: str | Path | None = None,
    zones: str | Path | None = None,
    use_detector: bool = True,
    use_density: bool = True,
    lenient: bool = False,
    split: str | None = None,
    max_images: int | None = None,
    command: list[str] | None = None,
) -> BenchmarkResult:
    """Read a labeled dataset, load the models and run :func:`run_benchmark` (the CLI command).

    Args:
        data: Labels (see :mod:`~freightwatch.evaluation.samples`).
        format: ``coco``, ``yolo``, ``dota`` or ``xview``.
        out_dir: Output folder.
        weights: Detector weights (default: bundled, when they exist).
        density_weights: Density weights (default: bundled).
        config: Settings.
        mapping: Built-in mapping name (``builtin``, ``dota``, ``xview``, ``freightwatch``) or a YAML file.
        images: Image folder, where the format does not say.
        zones: Zones GeoJSON for every image (default: ``zones.geojson`` beside each image).
        use_detector: Evaluate the detector.
        use_density: Evaluate the density model.
        lenient: Skip malformed label records.
        split: YOLO split to read.
        max_images: Evaluate at most this many images (the first ones).
        command: The command line, recorded in ``metrics.json``.
    """
    from freightwatch.evaluation.samples import load_dataset, resolve_mapping

    cfg = config or BenchmarkConfig()
    ds = load_dataset(data, format, resolve_mapping(mapping), images, zones, lenient, split, max_images)
    if mapping is not None:
        ds.mapping = str(mapping)
    models = load_models(weights, density_weights, use_detector, use_density)
    return run_benchmark(ds, out_dir, models, replace(cfg), command)
