"""Real-transfer density recipe: fine-tune the density model on synthetic sites + real ship tiles.

The real "Ships in Google Earth" training tiles (640 px at ~0.4 m) are too small to simulate a
3-5 m sensor from (a 128 px coarse crop needs >= 960 source pixels), so they are laid out 4 x 4
into 2560 px mosaics (the same 90 % train split by source tile as the detector recipe: the
``valid`` split is never used). Training then draws crops from synthetic sites and mosaics alike,
each through a random 3-5 m sensor, starting from a trained density model (``--init``, default
the recipe's synthetic weights). Calibration and held-out evaluation are those of
``train_density_weights.py`` (synthetic calibration/test seeds), run on the result.

Usage::

    python benchmarks/train_real_density.py --out runs/real/dens [--epochs 4] [--init PATH]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_density_weights  # noqa: E402
from train_real_detector import SHIPS  # noqa: E402

from freightwatch.datasets.annotations import Annotation, ImageLabels  # noqa: E402
from freightwatch.datasets.formats.coco import write_coco  # noqa: E402
from freightwatch.training.density import DensityTrainConfig, train_density  # noqa: E402
from freightwatch.training.mixing import label_path, list_images, one_per_group, split_groups  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def build_mosaics(ships: Path, out: Path, gsd: float = 0.4, n: int = 4, seed: int = 0) -> list[Path]:
    """Write ``n x n`` mosaics of the real training tiles as scene folders (PNG + COCO labels)."""
    train, _ = split_groups(list_images(ships / "train" / "images"), 0.1)
    tiles = one_per_group(train)
    order = np.random.default_rng(seed).permutation(len(tiles))
    dirs = []
    for m, start in enumerate(range(0, len(order) - n * n + 1, n * n)):
        d = out / f"mosaic_{m:03d}"
        dirs.append(d)
        if (d / "labels.json").is_file():
            continue
        d.mkdir(parents=True, exist_ok=True)
        size = 640
        canvas = np.zeros((n * size, n * size, 3), np.uint8)
        anns = []
        for k, idx in enumerate(order[start:start + n * n]):
            img = cv2.imread(str(tiles[idx]), cv2.IMREAD_COLOR)
            img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA) if img.shape[:2] != (size, size) else img
            oy, ox = (k // n) * size, (k % n) * size
            canvas[oy:oy + size, ox:ox + size] = img
            lp = label_path(tiles[idx])
            for line in (lp.read_text().splitlines() if lp.is_file() else []):
                _, cx, cy, w, h = (float(v) for v in line.split())
                x0, y0 = ox + (cx - w / 2) * size, oy + (cy - h / 2) * size
                anns.append(Annotation.from_bbox("boat", (x0, y0, x0 + w * size, y0 + h * size)))
        cv2.imwrite(str(d / "scene.png"), canvas)
        write_coco([ImageLabels("scene.png", n * size, n * size, anns, gsd=gsd, scene_id=d.name)], d / "labels.json")
    return dirs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "real" / "dens")
    ap.add_argument("--synthetic", type=Path, default=ROOT / "runs" / "density-weights" / "data",
                    help="the synthetic recipe's training sites")
    ap.add_argument("--init", type=Path, default=ROOT / "runs" / "density-weights" / "train" / "density.safetensors")
    ap.add_argument("--ships", type=Path, default=SHIPS)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--skip-train", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(1)
    if not args.skip_train:
        mosaics = build_mosaics(args.ships, args.out / "mosaics")
        synthetic = sorted(args.synthetic.glob("site_*"))
        if not synthetic:
            raise SystemExit(f"{args.synthetic}: no synthetic sites (run benchmarks/train_density_weights.py first)")
        scenes = [d / "scene.tif" for d in synthetic] + [d / "scene.png" for d in mosaics]
        print(f"training on {len(synthetic)} synthetic sites + {len(mosaics)} real mosaics from {args.init}",
              flush=True)
        cfg = DensityTrainConfig(epochs=args.epochs, steps_per_epoch=args.steps, batch=8, crop=128, lr=args.lr,
                                 threads=1, init=args.init)
        train_density(scenes, args.out / "train", cfg)
    train_density_weights.main(["--out", str(args.out), "--skip-train", "--data", str(args.synthetic)])


if __name__ == "__main__":
    main()
