"""Sliced inference: freightwatch vs SAHI's get_sliced_prediction, same weights, slices and overlap.

Builds large synthetic scenes by tiling synthetic sites into one GeoTIFF (window by window, so
building them needs little memory), then for each scene size runs, each in a fresh process:
freightwatch's ``detect_scene`` and SAHI's ``get_sliced_prediction`` (SAHI only up to
``--sahi-max`` px: it decodes the whole image into memory). Reports seconds, scenes per second,
peak RSS, and the agreement of the two detection sets as AP50 of freightwatch's boxes scored
against SAHI's as reference.

Usage:
    python benchmarks/sliced_vs_sahi.py [--weights W] [--sizes 8000,12000,20000] [--sahi-max 12000]
Needs the ``bench`` extra (``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

from freightwatch.datasets.synthetic import SiteConfig, generate_site

TILE_M = 1000.0
GSD = 0.5


def build_scene(path: Path, size_px: int, seed: int = 0) -> Path:
    """A size_px x size_px GeoTIFF tiled from a few synthetic sites (written window by window)."""
    if path.is_file():
        return path
    sites = [generate_site(SiteConfig(size_m=TILE_M, gsd=GSD, seed=seed + k, activity=0.8)).image for k in range(4)]
    t = sites[0].shape[0]
    profile = {"driver": "GTiff", "width": size_px, "height": size_px, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32651", "transform": Affine(GSD, 0, 600000, 0, -GSD, 4450000), "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER", "photometric": "RGB"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size_px, t):
            for c in range(0, size_px, t):
                img = sites[(r // t + c // t) % 4]
                h, w = min(t, size_px - r), min(t, size_px - c)
                dst.write(img[:h, :w].transpose(2, 0, 1), window=Window(c, r, w, h))
    return path


def _child(mode: str, scene: str, weights: str | None, out: str, slice_size: int, overlap: float, conf: float) -> None:
    """Run one method in this (fresh) process and dump its boxes and timings."""
    from freightwatch.models.detector import Detector

    det = Detector.load(weights)
    t0 = time.perf_counter()
    if mode == "freightwatch":
        from freightwatch.inference.detect import DetectConfig, detect_scene

        res = detect_scene(scene, det, DetectConfig(slice_size=slice_size, overlap=overlap, conf=conf),
                           show_progress=False)
        boxes = [[*a.bbox, a.score, a.cls] for a in res.labels.annotations]
    else:
        import cv2
        from sahi import AutoDetectionModel
        from sahi.predict import get_sliced_prediction

        model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model=det.yolo, confidence_threshold=conf,
                                                   image_size=slice_size, device="cpu")
        img = cv2.cvtColor(cv2.imread(scene, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        pred = get_sliced_prediction(img, model, slice_height=slice_size, slice_width=slice_size,
                                     overlap_height_ratio=overlap, overlap_width_ratio=overlap, verbose=0)
        boxes = [[*map(float, p.bbox.to_xyxy()), float(p.score.value), p.category.name]
                 for p in pred.object_prediction_list]
    seconds = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out).write_text(json.dumps({"seconds": seconds, "peak_rss_mb": rss_mb, "boxes": boxes}))


def run(mode: str, scene: Path, weights: str | None, slice_size: int, overlap: float, conf: float,
        reuse: bool = False) -> dict:
    out = scene.with_suffix(f".{mode}.json")
    if reuse and out.is_file() and out.stat().st_mtime > scene.stat().st_mtime:
        return json.loads(out.read_text())
    cmd = [sys.executable, __file__, "--child", mode, "--scene", str(scene), "--out", str(out),
           "--slice", str(slice_size), "--overlap", str(overlap), "--conf", str(conf)]
    if weights:
        cmd += ["--weights", weights]
    subprocess.run(cmd, check=True)
    return json.loads(out.read_text())


def agreement(ours: list, ref: list, size: int, cell: int = 1000) -> float:
    """AP50 of our detections scored against SAHI's as ground truth (1.0 = same boxes).

    pycocotools matches in Python per image, quadratic in the boxes: ten thousand boxes in one
    image would take hours. The scene is cut into ``cell``-pixel cells, each box going to the
    cell of its centre, and the cells are scored as images (two matching boxes have nearly the
    same centre; a pair split by a cell line is rare and counts against agreement).
    """
    from freightwatch.datasets.annotations import Annotation, ImageLabels
    from freightwatch.evaluation.detection import coco_metrics

    def by_cell(boxes: list, scored: bool) -> dict[tuple[int, int], list[Annotation]]:
        cells: dict[tuple[int, int], list[Annotation]] = {}
        for b in boxes:
            key = (int((b[0] + b[2]) / 2) // cell, int((b[1] + b[3]) / 2) // cell)
            cells.setdefault(key, []).append(Annotation.from_bbox(b[5], b[:4], score=b[4] if scored else None))
        return cells

    g, p = by_cell(ref, False), by_cell(ours, True)
    keys = sorted(set(g) | set(p))
    gts = [ImageLabels(f"c{k}", size, size, g.get(k, [])) for k in keys]
    prs = [ImageLabels(f"c{k}", size, size, p.get(k, [])) for k in keys]
    most = max([len(v) for v in p.values()] + [100])
    return coco_metrics(gts, prs, max_dets=most + 1)["overall"]["AP50"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--sizes", default="8000,20000")
    ap.add_argument("--sahi-max", type=int, default=12000)
    ap.add_argument("--work", type=Path, default=Path("runs/bench/sahi"))
    ap.add_argument("--slice", type=int, default=640)
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--reuse", action="store_true", help="reuse per-method results already written")
    ap.add_argument("--child", default=None)
    ap.add_argument("--scene", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.child:
        _child(a.child, a.scene, a.weights, a.out, a.slice, a.overlap, a.conf)
        return
    rows = []
    for size in (int(s) for s in a.sizes.split(",")):
        scene = build_scene(a.work / f"scene_{size}.tif", size)
        ours = run("freightwatch", scene, a.weights, a.slice, a.overlap, a.conf, a.reuse)
        row = {"size_px": size, "fw_seconds": ours["seconds"], "fw_peak_rss_mb": ours["peak_rss_mb"],
               "fw_detections": len(ours["boxes"])}
        if size <= a.sahi_max:
            sahi = run("sahi", scene, a.weights, a.slice, a.overlap, a.conf, a.reuse)
            row.update({"sahi_seconds": sahi["seconds"], "sahi_peak_rss_mb": sahi["peak_rss_mb"],
                        "sahi_detections": len(sahi["boxes"]), "speedup": sahi["seconds"] / ours["seconds"],
                        "agreement_ap50": agreement(ours["boxes"], sahi["boxes"], size)})
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'size':>7} {'fw s':>8} {'fw MB':>8} {'sahi s':>8} {'sahi MB':>8} {'speedup':>8} {'AP50 agr':>9}")
    for r in rows:
        print(f"{r['size_px']:>7} {r['fw_seconds']:>8.1f} {r['fw_peak_rss_mb']:>8.0f} "
              f"{r.get('sahi_seconds', np.nan):>8.1f} {r.get('sahi_peak_rss_mb', np.nan):>8.0f} "
              f"{r.get('speedup', np.nan):>8.2f} {r.get('agreement_ap50', np.nan):>9.3f}")


if __name__ == "__main__":
    main()
