"""Train the bundled demo detector (``make weights``) and measure it on held-out synthetic sites.

Usage: python benchmarks/train_detector_weights.py [--work runs/weights/detector] [--epochs 30]
Writes freightwatch/weights/detector.safetensors, detector.json and detector_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from freightwatch.models.detector import BUNDLED_DIR
from freightwatch.training.recipes import DetectorRecipe, train_bundled_detector


def main() -> None:
    r = DetectorRecipe()
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", type=Path, default=Path("runs/weights/detector"))
    ap.add_argument("--dest", type=Path, default=BUNDLED_DIR)
    ap.add_argument("--reuse-stage1", action="store_true", help="keep a finished first stage in WORK/run")
    ap.add_argument("--reuse-stage2", action="store_true",
                    help="keep finished first and second stages (WORK/run, WORK/run2): run the boat stage only")
    for name in ("n_train", "n_val", "n_test", "n_calib", "epochs", "finetune_epochs", "imgsz", "batch", "seed",
                 "boat_sites", "boat_epochs"):
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(r, name))
    ap.add_argument("--size-m", type=float, default=r.size_m)
    ap.add_argument("--model", default=r.model)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    recipe = DetectorRecipe(n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, n_calib=args.n_calib,
                            size_m=args.size_m,
                            epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, model=args.model, seed=args.seed,
                            finetune_epochs=args.finetune_epochs, boat_sites=args.boat_sites,
                            boat_epochs=args.boat_epochs)
    report = train_bundled_detector(args.work, args.dest, recipe, reuse_stage1=args.reuse_stage1,
                                    reuse_stage2=args.reuse_stage2)
    summary = {"coco": {k: {m: v.get(m) for m in ("AP50", "AP", "n_gt")} for k, v in report["coco"].items()},
               "zone_count_rel_error": report["zone_count_rel_error"], "train_seconds": report["train_seconds"]}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
