"""Reproducible recipe of the bundled density weights (``make weights`` calls it).

1. Generate synthetic training sites (0.5 m, 1 km, seeds 1000-1039) as scene folders.
2. Train (``freightwatch.training.density.train_density``): 16 epochs x 250 batches of 8 crops of
   128 x 128 coarse pixels, each through a random 3-5 m sensor; ImageNet encoder init when
   ``../shared/weights/mobilenet_v2_imagenet_features.safetensors`` exists (``--pretrained``).
3. Calibrate the count scale and split-conformal intervals on calibration sites (seeds
   2000-2047) at GSDs 3, 3.5, 4, 4.5 and 5 m.
4. Evaluate on held-out test sites (seeds 3000-3047) at 3, 4 and 5 m.
5. Write ``density.safetensors`` + ``density.json`` (with the calibration and the measured
   accuracy) + ``density_accuracy.json`` to ``--out`` and, with ``--bundle``, to
   ``freightwatch/weights/``.

Training, calibration and test seeds are disjoint. CPU only, one torch thread (fastest on a
shared machine): about 28 minutes of training and 7 of data generation, calibration and
evaluation. Same seed, same weights on the same machine. Usage::

    .venv/bin/python benchmarks/train_density_weights.py --bundle
    .venv/bin/python benchmarks/train_density_weights.py --skip-train --bundle   # recalibrate only
    .venv/bin/python benchmarks/train_density_weights.py --recalibrate W.safetensors --tta --out DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from density_accuracy import GSDS, evaluate_seeds, format_table, generate  # noqa: E402

from freightwatch.models.density import DensityModel, bundled_density  # noqa: E402
from freightwatch.training.density import (  # noqa: E402
    DensityTrainConfig,
    apply_calibration,
    calibrate_intervals,
    summarise,
    train_density,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED_ENCODER = ROOT.parent / "shared" / "weights" / "mobilenet_v2_imagenet_features.safetensors"
CALIB_GSDS = (3.0, 3.5, 4.0, 4.5, 5.0)


def _range(text: str) -> range:
    a, b = (int(v) for v in text.split(":"))
    return range(a, b)


def make_sites(data_dir: Path, seeds: range) -> list[Path]:
    """Write the recipe's synthetic sites as scene folders (kept when already there)."""
    from freightwatch.datasets.synthetic import write_site

    dirs = []
    for s in seeds:
        d = data_dir / f"site_{s:05d}"
        if not (d / "scene.tif").is_file() or not (d / "labels.json").is_file():
            write_site(generate(s), d)
        dirs.append(d)
    return dirs


def _focus(text: str | None) -> dict[str, float] | None:
    """``railcar=3,boat=2`` -> ``{"railcar": 3.0, "boat": 2.0}``."""
    if not text:
        return None
    return {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(","))}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "density-weights")
    ap.add_argument("--data", type=Path, default=None, help="synthetic training sites (default: OUT/data)")
    ap.add_argument("--train-seeds", default="1000:1040")
    ap.add_argument("--calib-seeds", default="2000:2048")
    ap.add_argument("--test-seeds", default="3000:3048")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=250, help="batches per epoch")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    ap.add_argument("--pretrained", default="auto",
                    help="MobileNetV2 ImageNet features (safetensors), 'none', or 'auto' (../shared if present)")
    ap.add_argument("--init", type=Path, default=None,
                    help="continue from these density weights (a fresh one-cycle schedule) instead of a new network")
    ap.add_argument("--class-focus", default=None,
                    help="crop-centring weights per class, e.g. railcar=3 (others 1; default: uniform)")
    ap.add_argument("--tta", action="store_true", help="calibrate (and so run) with 8-fold test-time augmentation")
    ap.add_argument("--skip-train", action="store_true", help="reuse OUT/train/density.safetensors")
    ap.add_argument("--recalibrate", type=Path, default=None,
                    help="calibrate and evaluate these weights instead of training (implies --skip-train)")
    ap.add_argument("--bundle", action="store_true", help="copy the results into freightwatch/weights/")
    args = ap.parse_args(argv)
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    t_start = time.time()
    out: Path = args.out
    data = args.data or out / "data"
    train_seeds, calib_seeds, test_seeds = _range(args.train_seeds), _range(args.calib_seeds), _range(args.test_seeds)
    if set(train_seeds) & set(calib_seeds) or set(train_seeds) & set(test_seeds) or set(calib_seeds) & set(test_seeds):
        raise SystemExit("training, calibration and test seeds must be disjoint")
    pretrained = None
    if args.pretrained == "auto":
        pretrained = SHARED_ENCODER if SHARED_ENCODER.is_file() else None
    elif args.pretrained != "none":
        pretrained = Path(args.pretrained)
    timings: dict[str, float] = {}

    t = time.time()
    train_dir = out / "train"
    if args.recalibrate:  # an existing model, calibrated anew (the training sites are not needed)
        train_dir.mkdir(parents=True, exist_ok=True)
        for src in (args.recalibrate, args.recalibrate.with_suffix(".json")):
            shutil.copyfile(src, train_dir / f"density{src.suffix}")
        args.skip_train = True
    if not args.skip_train:
        print(f"[1/4] synthetic training sites {train_seeds.start}-{train_seeds.stop - 1} -> {data}", flush=True)
        scenes = make_sites(data, train_seeds)
    timings["generate_s"] = round(time.time() - t, 1)

    t = time.time()
    if not args.skip_train:
        print(f"[2/4] training {args.epochs} x {args.steps} steps of {args.batch} x {args.crop}^2 "
              f"(init: {args.init or pretrained or 'scratch'})", flush=True)
        cfg = DensityTrainConfig(epochs=args.epochs, steps_per_epoch=args.steps, batch=args.batch, crop=args.crop,
                                 lr=args.lr, seed=args.seed, threads=args.threads,
                                 pretrained=None if args.init else pretrained, init=args.init,
                                 class_focus=_focus(args.class_focus))
        train_density(scenes, train_dir, cfg)
    model = DensityModel.load(train_dir / "density.safetensors")
    # With --skip-train, report the time the reused training took.
    timings["train_s"] = float(model.config.training.get("seconds", 0.0)) if args.skip_train \
        else round(time.time() - t, 1)
    model.config.interval = None

    t = time.time()
    print(f"[3/4] calibrating on sites {calib_seeds.start}-{calib_seeds.stop - 1} at {CALIB_GSDS} m", flush=True)
    raw = evaluate_seeds(model, calib_seeds, CALIB_GSDS, work_dir=out, tta=args.tta)
    interval = calibrate_intervals(raw, CALIB_GSDS, tta=args.tta)
    calib_summary = summarise(apply_calibration(raw, interval), CALIB_GSDS)  # in-sample, for reference only
    model.config.interval = interval
    timings["calibrate_s"] = round(time.time() - t, 1)

    t = time.time()
    print(f"[4/4] evaluating on held-out sites {test_seeds.start}-{test_seeds.stop - 1} at {GSDS} m", flush=True)
    test = evaluate_seeds(model, test_seeds, GSDS, work_dir=out)
    summary = summarise(test, GSDS)
    timings["evaluate_s"] = round(time.time() - t, 1)
    timings["total_s"] = round(time.time() - t_start, 1)
    uncal = summarise(raw, CALIB_GSDS)
    accuracy = {
        "what": "zone counts on held-out synthetic sites (never seen in training or calibration), random coarse "
                "sensors, full `freightwatch density` pipeline",
        "test_seeds": [test_seeds.start, test_seeds.stop], "calibration_seeds": [calib_seeds.start, calib_seeds.stop],
        "train_seeds": [train_seeds.start, train_seeds.stop], "gsds": list(GSDS),
        "coverage_nominal": interval["coverage"], **summary,
        "calibration_in_sample": {"rel_mae": calib_summary["rel_mae"], "coverage": calib_summary["coverage"]},
        "calibration_uncorrected_rel_mae": uncal["rel_mae"],
        "timings": timings,
        "command": "python benchmarks/train_density_weights.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    model.config.metrics = {"heldout": {"rel_mae": summary["rel_mae"], "coverage": summary["coverage"],
                                        "seeds": [test_seeds.start, test_seeds.stop]}}
    trained_by = {"trained_by": model.config.training.get("recipe")} if args.skip_train else {}
    model.config.training = {**model.config.training, **trained_by, "recipe": accuracy["command"],
                             "timings": timings}
    weights = model.save(out / "density.safetensors")
    (out / "density_accuracy.json").write_text(json.dumps(accuracy, indent=2))
    print(format_table(summary))
    print(json.dumps(timings))
    if args.bundle:
        dst = bundled_density().parent
        dst.mkdir(parents=True, exist_ok=True)
        for src in (weights, weights.with_suffix(".json"), out / "density_accuracy.json"):
            shutil.copyfile(src, dst / src.name)
        print(f"bundled into {dst}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
