"""Accuracy of the density model on held-out synthetic sites: zone-count relative MAE and interval coverage.

Each held-out site (seeds the training and calibration never used) is generated at 0.5 m, seen
through a random coarse sensor (``SensorModel.random``: PSF, noise, radiometry, JPEG) at each GSD,
written as a GeoTIFF and counted with the full ``freightwatch density`` pipeline (tiled inference,
zone integration, intervals). Figures:

* relative MAE = sum |pred - true| / sum true over the zones of each class's headline kind
  (trucks in ``lot`` zones, railcars in the ``rail_yard``, boats in the ``river``), per GSD;
* coverage = fraction of relevant zone counts (each zone's own classes, plus the whole scene)
  inside their interval.

Usage::

    .venv/bin/python benchmarks/density_accuracy.py                      # bundled weights
    .venv/bin/python benchmarks/density_accuracy.py --weights runs/density/density.safetensors \\
        --seeds 3000:3048 --gsds 3,4,5 --json runs/density_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from freightwatch.models.density import DensityModel
from freightwatch.taxonomy import CLASSES
from freightwatch.training.density import ZoneCount, evaluate_site, summarise

TEST_SEEDS = range(3000, 3048)
"""Held-out evaluation seeds (training uses 1000+, calibration 2000+)."""

GSDS = (3.0, 4.0, 5.0)


def site_activity(seed: int) -> float:
    """Activity (lot occupancy etc.) of a recipe site: uniform 0.2-1.0, fixed by the seed."""
    return float(np.random.default_rng(seed).uniform(0.2, 1.0))


def generate(seed: int, size_m: float = 1000.0, gsd: float = 0.5) -> Any:
    """The recipe's synthetic site for ``seed`` (0.5 m, 1 km, activity from :func:`site_activity`)."""
    from freightwatch.datasets.synthetic import SiteConfig, generate_site

    return generate_site(SiteConfig(size_m=size_m, gsd=gsd, seed=seed, activity=site_activity(seed)))


def evaluate_seeds(
    model: DensityModel,
    seeds: Sequence[int],
    gsds: Sequence[float],
    work_dir: str | Path | None = None,
    coverage: float = 0.9,
    sensor: str = "random",
    log: bool = True,
    tta: bool | None = None,
) -> list[ZoneCount]:
    """Zone counts of ``model`` on the sites of ``seeds`` at each GSD (see the module notes).

    Args:
        model: The model (its calibration, if any, is applied by the pipeline).
        seeds: Site seeds.
        gsds: Coarse GSDs in metres.
        work_dir: Scratch folder (a temporary one by default).
        coverage: Interval coverage.
        sensor: ``random`` (``SensorModel.random`` per site and GSD) or ``default`` (the tuned
            PlanetScope-like defaults).
        log: Print progress to stderr.
        tta: Test-time augmentation (``None``: as the model's calibration says).
    """
    from freightwatch.datasets.coarse import SensorModel

    counts: list[ZoneCount] = []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        for seed in seeds:
            t0 = time.time()
            site = generate(seed)
            for g in gsds:
                rng = np.random.default_rng([seed, int(round(g * 1000))])
                sens = SensorModel(gsd=g) if sensor == "default" else None
                counts += evaluate_site(model, site.image, site.labels, site.zones, g, Path(tmp) / "w", rng,
                                        sensor=sens, site=f"s{seed}", coverage=coverage, tta=tta)
            if log:
                print(f"  site {seed}: {time.time() - t0:.1f} s", file=sys.stderr, flush=True)
    return counts


def format_table(summary: dict[str, Any]) -> str:
    """The headline figures as a text table."""
    gsds = list(next(iter(summary["rel_mae"].values())).keys())
    lines = ["relative MAE of zone counts (sum|err| / sum true)", f"{'class (zones)':<22}" +
             "".join(f"{g + ' m':>10}" for g in gsds)]
    names = {"truck": "truck (lots)", "railcar": "railcar (rail_yard)", "boat": "boat (river)"}
    for cls in CLASSES:
        vals = summary["rel_mae"][cls]
        lines.append(f"{names[cls]:<22}" + "".join(f"{'-' if vals[g] is None else f'{vals[g]:.1%}':>10}"
                                                  for g in gsds))
    lines.append("")
    lines.append("interval coverage (relevant zone counts incl. whole scene)")
    for cls in CLASSES:
        vals = summary["coverage"][cls]
        lines.append(f"{cls:<22}" + "".join(f"{'-' if vals[g] is None else f'{vals[g]:.1%}':>10}" for g in gsds))
    ov = summary["coverage"]["overall"]
    lines.append(f"{'overall':<22}{'-' if ov is None else f'{ov:.1%}':>10}")
    lines.append("")
    lines.append("median interval half-width / count (headline zones)")
    for cls in CLASSES:
        vals = summary["interval_rel_halfwidth"][cls]
        lines.append(f"{names[cls]:<22}" + "".join(f"{'-' if vals[g] is None else f'{vals[g]:.1%}':>10}"
                                                  for g in gsds))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", type=Path, default=None, help="density weights (default: bundled)")
    ap.add_argument("--seeds", default=f"{TEST_SEEDS.start}:{TEST_SEEDS.stop}", help="held-out seeds a:b")
    ap.add_argument("--gsds", default="3,4,5", help="coarse GSDs in metres")
    ap.add_argument("--coverage", type=float, default=0.9)
    ap.add_argument("--sensor", choices=("random", "default"), default="random")
    ap.add_argument("--tta", choices=("auto", "on", "off"), default="auto",
                    help="test-time augmentation (auto: as the weights were calibrated)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    a, b = (int(v) for v in args.seeds.split(":"))
    gsds = [float(g) for g in args.gsds.split(",")]
    model = DensityModel.load(args.weights)
    t0 = time.time()
    tta = {"auto": None, "on": True, "off": False}[args.tta]
    counts = evaluate_seeds(model, range(a, b), gsds, coverage=args.coverage, sensor=args.sensor, tta=tta)
    summary = summarise(counts, gsds)
    summary.update({"seeds": [a, b], "gsds": gsds, "sensor": args.sensor, "coverage_nominal": args.coverage,
                    "tta": args.tta, "weights": str(args.weights or "bundled"),
                    "seconds": round(time.time() - t0, 1)})
    print(format_table(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
