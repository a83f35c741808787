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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from freightwatch.datasets.chips import ChipConfig
from freightwatch.datasets.synthetic import SiteConfig, generate_site, write_site
from freightwatch.evaluation.detection import coco_metrics, nan_to_none
from freightwatch.taxonomy import CLASSES

log = logging.getLogger(__name__)

TRAIN_SEEDS = range(1000, 2000)
"""Seeds used for training sites; evaluation uses :data:`TEST_SEEDS`."""
TEST_SEEDS = range(9000, 10000)


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
    """The bundled detector's recipe. Defaults fit a 2-core CPU in about an hour."""

    n_train: int = 14
    n_val: int = 2
    n_test: int = 4
    size_m: float = 800.0
    gsd: float = 0.5
    epochs: int = 24
    imgsz: int = 512
    batch: int = 8
    model: str = "yolo11n.yaml"
    seed: int = 0


def evaluate_detector_on_sites(weights: str | Path, site_dirs: Sequence[Path], conf: float = 0.25) -> dict[str, Any]:
    """Sliced detection on whole held-out sites: COCO AP per class and per-zone count errors.

    Count error per class is ``sum |pred - true| / sum true`` over (site, zone) pairs of that
    class's zones, with detections at ``conf``.
    """
    from freightwatch.datasets.annotations import ImageLabels
    from freightwatch.datasets.formats.coco import read_coco
    from freightwatch.datasets.geo import count_by_zone, read_zones
    from freightwatch.inference.detect import DetectConfig, detect_scene
    from freightwatch.models.detector import Detector

    det = Detector.load(weights)
    gts, preds = [], []
    abs_err: Counter[str] = Counter()
    true_tot: Counter[str] = Counter()
    per_zone: list[dict[str, Any]] = []
    t0 = time.time()
    for d in site_dirs:
        gt = read_coco(d / "labels.json").images[0]
        zones, _ = read_zones(d / "zones.geojson")
        res = detect_scene(d / "scene.tif", det, DetectConfig(conf=0.001), zones_path=d / "zones.geojson")
        gts.append(gt)
        preds.append(res.labels)
        kept = [a for a in res.labels.annotations if (a.score or 0) >= conf]
        pred_counts = count_by_zone(ImageLabels(gt.file_name, gt.width, gt.height, kept, transform=gt.transform), zones)
        true_counts = count_by_zone(gt, zones)
        for z in zones:
            for c in CLASSES:
                t, p = true_counts.get((z.name, c), 0), pred_counts.get((z.name, c), 0)
                if t == 0 and p == 0:
                    continue
                abs_err[c] += abs(p - t)
                true_tot[c] += t
                per_zone.append({"site": d.name, "zone": z.name, "kind": z.kind, "class": c, "true": t, "pred": p})
    ap = coco_metrics(gts, preds)
    count_err = {c: (abs_err[c] / true_tot[c] if true_tot[c] else None) for c in CLASSES}
    return nan_to_none({"coco": ap, "zone_count_rel_error": count_err, "conf": conf,
                        "sites": [d.name for d in site_dirs], "per_zone": per_zone, "seconds": time.time() - t0})


def train_bundled_detector(
    work_dir: str | Path, dest: str | Path, recipe: DetectorRecipe | None = None
) -> dict[str, Any]:
    """Generate sites, train, evaluate on held-out sites, copy weights to ``dest``; return the report."""
    import shutil

    from freightwatch.training.detector import DetectorTrainConfig, train_detector

    r = recipe or DetectorRecipe()
    work = Path(work_dir)
    train_sites = synth_sites(work / "sites", list(TRAIN_SEEDS)[: r.n_train + r.n_val], gsd=r.gsd, size_m=r.size_m)
    test_sites = synth_sites(work / "test_sites", list(TEST_SEEDS)[: r.n_test], gsd=r.gsd, size_m=r.size_m)
    frac_val = r.n_val / (r.n_train + r.n_val)
    cfg = DetectorTrainConfig(
        model=r.model, epochs=r.epochs, imgsz=r.imgsz, batch=r.batch, seed=r.seed, gsd=r.gsd,
        chip=ChipConfig(size=r.imgsz, overlap=0.2, keep_empty=0.1, fractions=(1 - frac_val, frac_val, 0.0),
                        seed=r.seed),
    )
    # a folder holding exactly this recipe's scene folders (the sites cache may hold more)
    chosen = work / "train_scenes"
    if chosen.exists():
        shutil.rmtree(chosen)
    chosen.mkdir(parents=True)
    for site in train_sites:
        (chosen / site.name).symlink_to(site.resolve(), target_is_directory=True)
    t0 = time.time()
    res = train_detector(chosen, work / "run", cfg)
    train_s = time.time() - t0
    report = evaluate_detector_on_sites(res.weights, test_sites)
    report.update({"recipe": r.__dict__, "train_seconds": train_s, "train_sites": [p.name for p in train_sites]})
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for src in (res.weights, res.card):
        shutil.copy2(src, dest / src.name)
    (dest / "detector_accuracy.json").write_text(json.dumps(report, indent=2))
    return report
