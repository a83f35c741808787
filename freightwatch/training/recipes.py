"""Reproducible recipes behind the bundled demo weights (``make weights``).

Training and evaluation sites come from disjoint seed ranges, so the accuracy reported in the
README is measured on sites the model never saw.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from freightwatch.datasets.chips import ChipConfig
from freightwatch.datasets.synthetic import SiteConfig, generate_site, write_site
from freightwatch.evaluation.detection import coco_metrics, nan_to_none
from freightwatch.taxonomy import CLASSES

if TYPE_CHECKING:
    from freightwatch.training.detector import DetectorTrainConfig

log = logging.getLogger(__name__)

TRAIN_SEEDS = range(1000, 2000)
"""Seeds used for training sites; evaluation uses :data:`TEST_SEEDS`."""
TEST_SEEDS = range(9000, 10000)
CALIB_SEEDS = range(8000, 9000)
"""Seeds of the sites the per-class counting thresholds are chosen on (never trained or tested on)."""


def synth_sites(out_dir: str | Path, seeds: Sequence[int], gsd: float = 0.5, size_m: float = 800.0,
                activity: tuple[float, float] = (0.2, 1.0)) -> list[Path]:
    """Write one scene folder per seed (activity drawn per seed); reuse folders already written."""
    out = Path(out_dir)
    dirs = []
    for seed in seeds:
        d = out / f"site_{seed}"
        if not (d / "labels.json").is_file():
            act = float(np.random.default_rng(seed).uniform(*activity))
            write_site(generate_site(SiteConfig(size_m=size_m, gsd=gsd, seed=seed, activity=act)), d)
        dirs.append(d)
    return dirs


@dataclass
class DetectorRecipe:
    """The bundled detector's recipe: about 100 minutes on a 2-core CPU (40 + 30 epochs)."""

    n_train: int = 28
    n_val: int = 2
    n_test: int = 16
    n_calib: int = 8
    size_m: float = 800.0
    gsd: float = 0.5
    epochs: int = 40
    imgsz: int = 512
    batch: int = 8
    model: str = "yolo11n.yaml"
    seed: int = 0
    finetune_epochs: int = 30
    """Second stage: epochs continuing from the first stage's last checkpoint (fresh warm-up and
    learning-rate schedule; more steps at a useful rate than one long schedule gives on a CPU)."""
    boat_sites: int = 60
    """Third stage: further training sites (next seeds of :data:`TRAIN_SEEDS`) whose chips holding
    a boat are added to the training chips. Boats are ~3 % of the objects of a site, and the
    small ones were the detector's misses."""
    boat_epochs: int = 0
    """Third stage epochs (0: no third stage), from the second stage's weights at ``boat_lr0``.
    The bundled recipe (``make weights``) runs 20 (with 24 calibration sites): on the 16 test sites
    AP50 truck 0.97 -> 0.98, railcar 0.92 -> 0.94, boat 0.79 -> 0.90, zone count error truck
    5.5 -> 3.2 %, boat 10.7 -> 7.9 %, railcar 10.0 -> 12.6 % (7.5 % once railcars get NMS IoU 0.4
    from :func:`calibrate_counting`). 10 epochs gave boat AP50 0.84."""
    boat_lr0: float = 5e-4


def detect_sites(det: Any, site_dirs: Sequence[Path], iou: float | None = None
                 ) -> list[tuple[Path, Any, list[Any], Any]]:
    """Sliced detection at score 0.001 on labelled scene folders, for threshold sweeps.

    Args:
        det: A loaded :class:`~freightwatch.models.detector.Detector`.
        site_dirs: Folders holding ``scene.tif``, ``labels.json`` (COCO) and ``zones.geojson``.
        iou: NMS IoU threshold for every class (``None``: the detector card's, 0.5 by default).

    Returns:
        ``(site folder, true labels, zones, detections)`` per site.
    """
    from freightwatch.datasets.formats.coco import read_coco
    from freightwatch.datasets.geo import read_zones
    from freightwatch.inference.detect import DetectConfig, detect_scene

    out = []
    for d in site_dirs:
        gt = read_coco(d / "labels.json").images[0]
        zones, _ = read_zones(d / "zones.geojson")
        cfg = DetectConfig(conf=0.001) if iou is None else DetectConfig(conf=0.001, iou=iou, class_iou={})
        res = detect_scene(d / "scene.tif", det, cfg, zones_path=d / "zones.geojson", show_progress=False)
        out.append((d, gt, zones, res.labels))
    return out


def _zone_errors(runs: Sequence[tuple[Path, Any, list[Any], Any]], thresholds: dict[str, float]
                 ) -> list[dict[str, Any]]:
    from freightwatch.datasets.annotations import ImageLabels
    from freightwatch.datasets.geo import count_by_zone

    rows = []
    for d, gt, zones, pred in runs:
        kept = [a for a in pred.annotations if (a.score or 0) >= thresholds.get(a.cls, 0.25)]
        pred_counts = count_by_zone(ImageLabels(gt.file_name, gt.width, gt.height, kept, transform=gt.transform), zones)
        true_counts = count_by_zone(gt, zones)
        for z in zones:
            for c in CLASSES:
                t, p = true_counts.get((z.name, c), 0), pred_counts.get((z.name, c), 0)
                if t or p:
                    rows.append({"site": d.name, "zone": z.name, "kind": z.kind, "class": c, "true": t, "pred": p})
    return rows


def class_count_errors(runs: Sequence[tuple[Path, Any, list[Any], Any]], cls: str,
                       grid: Sequence[float]) -> dict[float, float]:
    """``sum |pred - true|`` over the (site, zone) counts of ``cls`` at each score threshold.

    ``runs`` come from detecting once at a low threshold (:func:`detect_sites`), so a whole grid
    of thresholds costs no further detection.
    """
    return {t: float(sum(abs(r["pred"] - r["true"]) for r in _zone_errors(runs, {cls: t}) if r["class"] == cls))
            for t in grid}


def calibrate_count_thresholds(weights: str | Path, site_dirs: Sequence[Path],
                               grid: Sequence[float] | None = None, write: bool = True,
                               default: float = 0.25, min_gain: float = 0.1,
                               runs: Sequence[tuple[Path, Any, list[Any], Any]] | None = None) -> dict[str, float]:
    """Per-class score thresholds that minimise the zone count error on calibration sites.

    Counting wants the threshold where misses and false alarms cancel, which is not the
    best-F1 or a fixed 0.25. The sites must be disjoint from training and test sites. A class
    keeps ``default`` unless another threshold cuts its calibration error by at least
    ``min_gain`` (a fraction): a few sites make the error curve noisy, and a low threshold that
    wins there by a little can double-count elsewhere. With ``write`` the thresholds go into the
    model card (``count_conf``), which ``freightwatch detect`` uses by default. ``runs`` (from
    :func:`detect_sites` on ``site_dirs``) skips detecting the sites again.
    """
    from freightwatch.models.detector import Detector

    det = Detector.load(weights) if runs is None or write else None
    if runs is None:
        runs = detect_sites(det, site_dirs)
    grid = list(grid) if grid is not None else [round(float(t), 3) for t in np.arange(0.15, 0.601, 0.025)]

    best: dict[str, float] = {}
    for c in CLASSES:
        err = class_count_errors(runs, c, [*grid, default])
        errs = [err[t] for t in grid]
        k = int(np.argmin(errs))  # first minimum: the lowest threshold among ties
        base = err[default]
        best[c] = grid[k] if errs[k] < base and errs[k] <= (1 - min_gain) * base else default
        log.info("count threshold %s: %.3f (calibration error %.0f vs %.0f at %.2f)",
                 c, best[c], errs[k], base, default)
    if det is not None and write:
        det.card.count_conf = best
        det.card.save(Path(weights).with_suffix(".json"))
    return best


def calibrate_counting(weights: str | Path, site_dirs: Sequence[Path], ious: Sequence[float] = (0.5, 0.4, 0.3),
                       default_iou: float = 0.5, min_gain: float = 0.1, write: bool = True,
                       grid: Sequence[float] | None = None,
                       runs_at: dict[float, Sequence[tuple[Path, Any, list[Any], Any]]] | None = None,
                       ) -> tuple[dict[str, float], dict[str, float]]:
    """Per-class score thresholds and NMS IoU thresholds that minimise the zone count error.

    For each IoU in ``ious`` the calibration sites are detected once and each class gets its best
    score threshold (:func:`calibrate_count_thresholds`); a class keeps ``default_iou`` unless
    another IoU cuts its calibration error by at least ``min_gain``. Objects that never overlap in
    nadir imagery but whose neighbours' boxes (or shadows) overlap theirs, such as railcars on
    adjacent tracks, can count better with a lower IoU; trucks packed at angles in lots count
    worse. With ``write`` both go into the model card (``count_conf``, ``class_iou``).
    ``runs_at`` maps an IoU to :func:`detect_sites` results at it: those present are reused,
    missing ones are filled in, so a caller can calibrate further on the same detections.

    Returns:
        ``(count_conf, class_iou)``; ``class_iou`` holds only classes whose IoU is not the default.
    """
    from freightwatch.models.detector import Detector

    det = Detector.load(weights)
    ious = sorted({float(default_iou), *map(float, ious)}, reverse=True)
    thr_at: dict[float, dict[str, float]] = {}
    err_at: dict[float, dict[str, float]] = {}
    runs_at = {} if runs_at is None else runs_at
    for iou in ious:
        if iou not in runs_at:
            runs_at[iou] = detect_sites(det, site_dirs, iou=iou)
        runs = runs_at[iou]
        thr_at[iou] = calibrate_count_thresholds(weights, site_dirs, grid=grid, write=False, runs=runs)
        err_at[iou] = {c: class_count_errors(runs, c, [thr_at[iou][c]])[thr_at[iou][c]] for c in CLASSES}
    count_conf: dict[str, float] = {}
    class_iou: dict[str, float] = {}
    for c in CLASSES:
        base = err_at[default_iou][c]
        best = min(ious, key=lambda i: (err_at[i][c], i != default_iou))
        chosen = best if err_at[best][c] <= (1 - min_gain) * base else default_iou
        count_conf[c] = thr_at[chosen][c]
        if chosen != default_iou:
            class_iou[c] = chosen
        log.info("counting %s: IoU %.2f, score %.3f (calibration error %s)", c, chosen, count_conf[c],
                 ", ".join(f"{err_at[i][c]:.0f} at IoU {i:.2f}" for i in ious))
    if write:
        det.card.count_conf, det.card.class_iou = count_conf, class_iou
        det.card.extra["count_calibration"] = {
            "sites": [Path(d).name for d in site_dirs],
            "abs_error": {str(i): err_at[i] for i in ious}, "min_gain": min_gain}
        det.card.save(Path(weights).with_suffix(".json"))
    return count_conf, class_iou


def evaluate_detector_on_sites(weights: str | Path, site_dirs: Sequence[Path], conf: float | None = None
                               ) -> dict[str, Any]:
    """Sliced detection on whole held-out sites: COCO AP per class and per-zone count errors.

    Count error per class is ``sum |pred - true| / sum true`` over (site, zone) pairs of that
    class's zones, with detections at ``conf`` (default: the card's per-class counting
    thresholds, else 0.25).
    """
    from freightwatch.inference.detect import class_ious, class_thresholds
    from freightwatch.models.detector import Detector

    det = Detector.load(weights)
    t0 = time.time()
    runs = detect_sites(det, site_dirs)
    thresholds = class_thresholds(det.card, conf)
    per_zone = _zone_errors(runs, thresholds)
    abs_err: Counter[str] = Counter()
    true_tot: Counter[str] = Counter()
    for r in per_zone:
        abs_err[r["class"]] += abs(r["pred"] - r["true"])
        true_tot[r["class"]] += r["true"]
    gts, preds = [r[1] for r in runs], [r[3] for r in runs]
    ap = coco_metrics(gts, preds)
    count_err = {c: (abs_err[c] / true_tot[c] if true_tot[c] else None) for c in CLASSES}
    return nan_to_none({"coco": ap, "zone_count_rel_error": count_err, "conf": thresholds,
                        "iou": class_ious(det.card),
                        "sites": [d.name for d in site_dirs], "per_zone": per_zone, "seconds": time.time() - t0})


def boat_chip_dataset(work_dir: str | Path, base: str | Path, recipe: DetectorRecipe) -> tuple[Path, dict[str, Any]]:
    """The third stage's data: ``base`` (a chip dataset) plus chips holding a boat from further sites.

    Returns the mixed ``data.yaml`` and a summary (images and boxes per part).
    """
    from freightwatch.datasets.chips import export_chips
    from freightwatch.training.detector import scene_folder_pairs
    from freightwatch.training.mixing import MixPart, label_path, list_images, mix_yolo

    work, base = Path(work_dir), Path(base)
    first = recipe.n_train + recipe.n_val
    sites = synth_sites(work / "boat_sites", list(TRAIN_SEEDS)[first: first + recipe.boat_sites],
                        gsd=recipe.gsd, size_m=recipe.size_m)
    chips = work / "boat_chips"
    if not (chips / "images" / "train").is_dir():
        export_chips(scene_folder_pairs(sites), chips, ChipConfig(size=recipe.imgsz, overlap=0.2, keep_empty=0.0,
                                                                  fractions=(1.0, 0.0, 0.0), seed=recipe.seed))
    boat = str(CLASSES.index("boat"))

    def has_boat(im: Path) -> bool:
        lp = label_path(im)
        return lp.is_file() and any(ln.split()[:1] == [boat] for ln in lp.read_text().splitlines())

    with_boats = [p for p in list_images(chips / "images" / "train") if has_boat(p)]
    ident = dict(enumerate(CLASSES))
    return mix_yolo(work / "mix3", [
        MixPart("syn", list_images(base / "images" / "train"), "train", ident),
        MixPart("boats", with_boats, "train", ident),
        MixPart("synval", list_images(base / "images" / "val"), "val", ident),
    ])


def _finished_run(run_dir: Path) -> Any:
    """The :class:`DetectorTrainResult` of a stage already trained in ``run_dir``, else ``None``."""
    from freightwatch.training.detector import DetectorTrainResult

    if not (run_dir / "detector.safetensors").is_file():
        return None
    return DetectorTrainResult(weights=run_dir / "detector.safetensors", card=run_dir / "detector.json",
                               metrics=run_dir / "metrics.json", run_dir=run_dir / "ultralytics")


@dataclass
class RecipeSites:
    """The synthetic sites of a :class:`DetectorRecipe` and the first stage's training config."""

    train: list[Path]
    test: list[Path]
    calib: list[Path]
    train_scenes: Path
    """A folder of links to exactly the training sites (the sites cache may hold more)."""
    config: DetectorTrainConfig
    """The first stage's training config (its ``chip`` settings make the chip dataset)."""


def detector_recipe_sites(work_dir: str | Path, recipe: DetectorRecipe | None = None) -> RecipeSites:
    """Write (or reuse) a recipe's training, test and calibration sites under ``work_dir``."""
    import shutil

    from freightwatch.training.detector import DetectorTrainConfig

    r = recipe or DetectorRecipe()
    work = Path(work_dir)
    train_sites = synth_sites(work / "sites", list(TRAIN_SEEDS)[: r.n_train + r.n_val], gsd=r.gsd, size_m=r.size_m)
    test_sites = synth_sites(work / "test_sites", list(TEST_SEEDS)[: r.n_test], gsd=r.gsd, size_m=r.size_m)
    calib_sites = synth_sites(work / "calib_sites", list(CALIB_SEEDS)[: r.n_calib], gsd=r.gsd, size_m=r.size_m)
    frac_val = r.n_val / (r.n_train + r.n_val)
    cfg = DetectorTrainConfig(
        model=r.model, epochs=r.epochs, imgsz=r.imgsz, batch=r.batch, seed=r.seed, gsd=r.gsd,
        chip=ChipConfig(size=r.imgsz, overlap=0.2, keep_empty=0.1, fractions=(1 - frac_val, frac_val, 0.0),
                        seed=r.seed),
    )
    chosen = work / "train_scenes"
    if chosen.exists():
        shutil.rmtree(chosen)
    chosen.mkdir(parents=True)
    for site in train_sites:
        (chosen / site.name).symlink_to(site.resolve(), target_is_directory=True)
    return RecipeSites(train_sites, test_sites, calib_sites, chosen, cfg)


def prepare_recipe_chips(work_dir: str | Path, recipe: DetectorRecipe | None = None) -> Path:
    """The recipe's first-stage chip dataset (``WORK/run/dataset``) without training; returns its folder.

    Other recipes (the real-transfer detector) mix these chips and use the same calibration and
    test sites, so they can start from a clean checkout without the synthetic training run.
    """
    from freightwatch.training.detector import prepare_dataset

    sites = detector_recipe_sites(work_dir, recipe)
    data_yaml, _, _ = prepare_dataset(sites.train_scenes, Path(work_dir).resolve() / "run", sites.config.chip)
    return data_yaml.parent


def train_bundled_detector(
    work_dir: str | Path, dest: str | Path, recipe: DetectorRecipe | None = None, reuse_stage1: bool = False,
    reuse_stage2: bool = False,
) -> dict[str, Any]:
    """Generate sites, train, evaluate on held-out sites, copy weights to ``dest``; return the report.

    With ``reuse_stage1`` a first stage already finished in ``work_dir/run`` is kept and only the
    second stage (``recipe.finetune_epochs``) runs; ``reuse_stage2`` also keeps ``work_dir/run2``
    and runs only the boat stage (``recipe.boat_epochs``).
    """
    import shutil

    from freightwatch.models.detector import DetectorCard
    from freightwatch.training.detector import train_detector

    r = recipe or DetectorRecipe()
    work = Path(work_dir)
    sites = detector_recipe_sites(work, r)
    train_sites, test_sites, calib_sites = sites.train, sites.test, sites.calib
    cfg, chosen = sites.config, sites.train_scenes
    t0 = time.time()
    stage1 = work / "run"
    res = _finished_run(stage1) if reuse_stage1 or reuse_stage2 else None
    res = res or train_detector(chosen, stage1, cfg)
    stages: list[dict[str, Any]] = [{"epochs": r.epochs, "from": r.model}]
    reused2 = _finished_run(work / "run2") if reuse_stage2 else None
    if reused2 is not None:
        res = reused2
        stages.append({"epochs": r.finetune_epochs, "from": "stage 1 last checkpoint"})
    elif r.finetune_epochs > 0:
        cfg2 = replace(cfg, weights=res.run_dir / "weights" / "last.pt", epochs=r.finetune_epochs)
        res = train_detector(chosen, work / "run2", cfg2)
        card = DetectorCard.load(res.card)
        card.base_weights = f"recipe stage 1 ({r.epochs} epochs from {r.model}, same data)"
        stages.append({"epochs": r.finetune_epochs, "from": "stage 1 last checkpoint"})
        card.extra["recipe"] = {"stages": stages}
        card.save(res.card)
    if r.boat_epochs > 0:
        data3, mix = boat_chip_dataset(work, stage1 / "dataset", r)
        log.info("boat stage data: %s", mix)
        cfg3 = replace(cfg, weights=res.weights, epochs=r.boat_epochs,
                       extra={"optimizer": "AdamW", "lr0": r.boat_lr0, "warmup_epochs": 1})
        res = train_detector(data3, work / "run3", cfg3)
        card = DetectorCard.load(res.card)
        stages.append({"epochs": r.boat_epochs, "from": "stage 2 weights",
                       "data": f"stage 1 chips + chips holding a boat from {r.boat_sites} further sites",
                       "mix": mix, "lr0": r.boat_lr0})
        card.base_weights = "recipe stage 2"
        card.extra["recipe"] = {"stages": stages}
        card.save(res.card)
    train_s = time.time() - t0
    count_conf, class_iou = calibrate_counting(res.weights, calib_sites) if calib_sites else ({}, {})
    report = evaluate_detector_on_sites(res.weights, test_sites)
    report.update({"recipe": r.__dict__, "train_seconds": train_s, "train_sites": [p.name for p in train_sites],
                   "calibration_sites": [p.name for p in calib_sites], "count_conf": count_conf,
                   "class_iou": class_iou})
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for src in (res.weights, res.card):
        shutil.copy2(src, dest / src.name)
    (dest / "detector_accuracy.json").write_text(json.dumps(report, indent=2))
    return report
