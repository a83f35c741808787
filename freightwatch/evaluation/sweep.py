"""GSD sweep: where the detector's counts break down and the density model takes over.

Each labeled high-resolution image is degraded to every GSD of the sweep with the coarse-sensor
simulation (:class:`~freightwatch.datasets.coarse.SensorModel` defaults: system MTF 0.1 at
Nyquist, 2.5 DN correlated noise, the look of a 3 m PlanetScope product). At each GSD:

* the detector sees the degraded image resampled back to its training GSD (so objects have
  their trained size in pixels, with only the detail the coarse sensor kept) and counts at the
  best-F1 score thresholds of the full-resolution evaluation (and at the user threshold);
* the density model sees the degraded image itself. Outside its trained GSD range it is run
  anyway and flagged (``in_range: false``): a number to read with that caveat.

GSDs finer than an image's own are skipped for that image (nothing to degrade); a GSD equal to it
uses the image as it is. Errors are per image and class against the image's true counts
(:mod:`freightwatch.evaluation.counting`).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from freightwatch._progress import progress
from freightwatch.datasets.coarse import SensorModel, coarse_valid, degrade_image, degrade_scene
from freightwatch.datasets.raster import Scene
from freightwatch.errors import FreightwatchError
from freightwatch.evaluation.counting import count_table
from freightwatch.evaluation.detection import BoxSet
from freightwatch.evaluation.predict import PredictConfig, density_array, density_file, detect_array, detect_file
from freightwatch.evaluation.samples import Sample
from freightwatch.models.density import DensityModel
from freightwatch.models.detector import Detector
from freightwatch.taxonomy import CLASSES

log = logging.getLogger(__name__)

SWEEP_METHODS: tuple[str, ...] = ("detector_best_f1", "detector_conf", "density")
"""Methods reported by the sweep (detector at its best-F1 thresholds, at the user threshold; density)."""

ROW_KEYS: tuple[str, ...] = (
    "gsd", "method", "class", "n", "true_total", "pred_total", "mae", "rmse", "rel_mae", "bias", "within_10pct",
    "coverage", "mean_interval_width", "in_range",
)
"""Keys of each row of :attr:`SweepResult.rows` (the sweep table)."""


def parse_gsds(text: str) -> tuple[float, ...]:
    """``"0.3,0.5,1"`` -> ``(0.3, 0.5, 1.0)``, sorted and unique.

    Raises:
        FreightwatchError: not a comma-separated list of positive numbers.
    """
    try:
        vals = sorted({float(v) for v in str(text).split(",") if v.strip()})
    except ValueError:
        raise FreightwatchError(f"--gsd-sweep expects comma-separated GSDs in metres like 0.5,1,3, "
                                f"got {text!r}") from None
    if not vals or any(not v > 0 for v in vals):
        raise FreightwatchError(f"--gsd-sweep expects positive GSDs in metres, got {text!r}")
    return tuple(vals)


@dataclass
class SweepResult:
    """Counts and errors of the sweep.

    Attributes:
        gsds: The GSDs swept.
        rows: One row per GSD, method and class (and ``all``) with :data:`ROW_KEYS`.
        counts: Long table: image, gsd, class, true, one column per method (+ density interval).
        skipped: ``(image, gsd, reason)`` for what was not run.
        density_range: The density model's accepted GSD range, or ``None``.
        detector_gsd: The detector's training GSD, or ``None``.
        data_gsd: Finest and coarsest GSD of the images, or ``None``.
    """

    gsds: tuple[float, ...]
    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: pd.DataFrame = field(default_factory=pd.DataFrame)
    skipped: list[tuple[str, float | None, str]] = field(default_factory=list)
    density_range: tuple[float, float] | None = None
    detector_gsd: float | None = None
    data_gsd: tuple[float, float] | None = None


def _det_counts(pred: BoxSet, thresholds: dict[str, float]) -> dict[str, int]:
    return {c: int(((pred.classes == k) & (pred.scores >= thresholds[c])).sum()) for k, c in enumerate(CLASSES)}


def run_sweep(
    samples: Sequence[Sample],
    gsds: Sequence[float],
    detector: Detector | None,
    density: DensityModel | None,
    thresholds: dict[str, float],
    conf: float | Mapping[str, float],
    cfg: PredictConfig,
    image_gsd: dict[str, float | None],
    max_pixels: int = 6000 * 6000,
    seed: int = 0,
    show_progress: bool | None = None,
) -> SweepResult:
    """Degrade every image to each GSD and count with the detector and the density model.

    Args:
        samples: Labeled images (at their own, high resolution).
        gsds: GSDs in metres.
        detector: Detector, or ``None`` to leave it out.
        density: Density model, or ``None``.
        thresholds: Per-class detector score thresholds (best F1 at full resolution).
        conf: The user's score threshold, for every class or per class.
        cfg: How the models run.
        image_gsd: GSD of each sample's image (by image path), as the benchmark resolved it.
        max_pixels: Images larger than this are streamed from file.
        seed: Seed of the sensor noise (per image and GSD).
        show_progress: Progress bar (``None``: on a terminal).
    """
    res = SweepResult(tuple(gsds), density_range=None, detector_gsd=detector.card.gsd if detector else None)
    if density is not None:
        lo, hi = density.config.gsd_range
        tol = density.config.gsd_tolerance
        res.density_range = (lo / (1 + tol), hi * (1 + tol))
    known = [g for g in image_gsd.values() if g is not None]
    res.data_gsd = (min(known), max(known)) if known else None
    user = dict(conf) if isinstance(conf, Mapping) else dict.fromkeys(CLASSES, conf)
    records: list[dict[str, Any]] = []
    with progress(disable=None if show_progress is None else not show_progress) as bar:
        task = bar.add_task("GSD sweep", total=len(samples))
        for i, s in enumerate(samples):
            name = s.name
            src = image_gsd.get(str(s.image))
            try:
                if src is None:
                    res.skipped.append((name, None, "GSD unknown (pass --gsd)"))
                    continue
                truth = s.labels.counts()
                with Scene(s.image, bands=cfg.bands) as scene:
                    big = scene.info.width * scene.info.height > max_pixels
                    rgb, valid = (None, None) if big else scene.read_rgb()
                    georef = scene.info.crs is not None
                for j, g in enumerate(gsds):
                    if g < src * (1 - 1e-6):
                        res.skipped.append((name, g, f"finer than the image's {src:g} m"))
                        continue
                    rng = np.random.default_rng([seed, i, j])
                    row: dict[str, Any] = {"image": name, "gsd": g}
                    dens = None
                    if rgb is not None:
                        same = abs(g / src - 1) < 1e-6
                        img = rgb if same else degrade_image(rgb, src, SensorModel(gsd=g), rng, valid=valid)
                        vmask = None if valid is None or valid.all() else (
                            valid if same else coarse_valid(valid, img.shape[:2]))
                        if detector is not None:
                            pred = detect_array(detector, img, g, cfg)
                            row["best"], row["conf"] = _det_counts(pred, thresholds), _det_counts(pred, user)
                        if density is not None:
                            dens = density_array(density, img, vmask, g, g, "sweep", cfg.coverage)
                    else:
                        if not georef:
                            res.skipped.append((name, g, "too large to hold and not georeferenced"))
                            continue
                        with tempfile.TemporaryDirectory(prefix="fw-sweep-") as tmp:
                            coarse = degrade_scene(s.image, s.labels, g, tmp, seed=seed + i, bands=cfg.bands)["scene"]
                            if detector is not None:
                                pred, _ = detect_file(detector, coarse, replace(cfg, bands=None))
                                row["best"], row["conf"] = _det_counts(pred, thresholds), _det_counts(pred, user)
                            if density is not None:
                                dens = density_file(density, coarse, s.labels, g, g, "sweep", cfg.coverage)
                    for c in CLASSES:
                        rec = {"image": name, "gsd": g, "class": c, "true": float(truth.get(c, 0))}
                        if "best" in row:
                            rec["detector_best_f1"] = float(row["best"][c])
                            rec["detector_conf"] = float(row["conf"][c])
                        if dens is not None and c in dens.counts:
                            v, lo, hi = dens.counts[c]
                            rec.update(density=v, density_lower=lo, density_upper=hi, density_in_range=dens.in_range)
                        records.append(rec)
            except (FreightwatchError, OSError, ValueError) as exc:
                log.warning("%s: sweep skipped (%s)", name, exc)
                res.skipped.append((name, None, str(exc)))
            finally:
                bar.advance(task)
    df = pd.DataFrame.from_records(records)
    for m in SWEEP_METHODS:
        if len(df) and m not in df:
            df[m] = np.nan
    res.counts = df
    if not len(df):
        return res
    for g in gsds:
        part = df[df["gsd"] == g]
        if not len(part):
            continue
        table = count_table(part, SWEEP_METHODS, CLASSES)
        for m in SWEEP_METHODS:
            for c, vals in table[m].items():
                if vals["n"] == 0:
                    continue
                in_range = None
                if m == "density" and res.density_range is not None:
                    in_range = bool(res.density_range[0] <= g <= res.density_range[1])
                res.rows.append({"gsd": g, "method": m, "class": c, **vals, "in_range": in_range})
    return res
