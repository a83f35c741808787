"""Sliced inference: freightwatch vs SAHI's get_sliced_prediction, same weights, slices and overlap.

Builds large synthetic scenes by tiling synthetic sites into one GeoTIFF (window by window, so
building them needs little memory), then for each scene size runs each method in a fresh process
(SAHI only up to ``--sahi-max`` px: it decodes the whole image into memory):

- ``freightwatch``: ``detect_scene`` (fp32), ``freightwatch-bf16``: the same with ``precision=bf16``;
  ``freightwatch-nms`` / ``freightwatch-nms-bf16``: with ``merge="nms-ios"`` (plain NMS on
  intersection-over-smaller 0.7, SAHI's ``NMS`` postprocess) instead of the partial-view merge;
  an ``-ort`` or ``-ov`` part runs the forward pass in ONNX Runtime or OpenVINO
  (``freightwatch-nms-ov``, ``freightwatch-nms-ov-bf16``). The ONNX export is kept on disk
  between runs (``freightwatch.models.runtimes.onnx_export``), so these time a warm start, as
  every run after a detector's first; a ``-cold`` suffix (``freightwatch-nms-ov-cold``) starts
  without it and times the export (about a second) too;
- ``sahi``: ``get_sliced_prediction`` with SAHI's defaults (greedy NMM on IOS 0.5, plus a
  full-image standard prediction merged in); ``sahi-nms``: NMS on IoU 0.5, slices only;
  ``sahi-ios``: NMS on intersection-over-smaller 0.7, slices only (suppresses partial views
  inside whole ones, as freightwatch's merge does). A ``-b8`` suffix (``sahi-ios-b8``) sends SAHI's
  slices in batches of 8 as freightwatch does (SAHI's default is one at a time).

Every method runs the same per-slice NMS (IoU 0.5 for every class, so not the card's per-class
IoU; up to 2000 boxes per slice: freightwatch's
defaults, set on the ultralytics model SAHI calls). Reports seconds, peak RSS (the process's
high-water mark, VmHWM), each method's AP50 against the true boxes of the scene, and the
agreement of the detection sets as AP50 of freightwatch's boxes scored against SAHI's as reference.

Usage:
    python benchmarks/sliced_vs_sahi.py [--weights W] [--sizes 8000,20000] [--sahi-max 12000]
        [--modes freightwatch,freightwatch-bf16,freightwatch-nms,freightwatch-nms-bf16,sahi,sahi-nms,sahi-ios]
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

import rasterio
from affine import Affine
from rasterio.windows import Window

from freightwatch.datasets.synthetic import SiteConfig, generate_site
from freightwatch.inference.detect import DetectConfig

TILE_M = 1000.0
GSD = 0.5
SLICE_IOU = DetectConfig.iou
"""Per-slice NMS IoU of every method (freightwatch's default)."""
SLICE_MAX_DET = DetectConfig.max_det
"""Per-slice detection cap of every method (freightwatch's default)."""


def build_scene(path: Path, size_px: int, seed: int = 0) -> Path:
    """A size_px x size_px GeoTIFF tiled from a few synthetic sites (written window by window), with
    its true boxes beside it (``<scene>.truth.json``: objects wholly inside the scene)."""
    truth_path = path.with_suffix(".truth.json")
    if path.is_file() and truth_path.is_file():
        return path
    sites = [generate_site(SiteConfig(size_m=TILE_M, gsd=GSD, seed=seed + k, activity=0.8)) for k in range(4)]
    t = sites[0].image.shape[0]
    profile = {"driver": "GTiff", "width": size_px, "height": size_px, "count": 3, "dtype": "uint8",
               "crs": "EPSG:32651", "transform": Affine(GSD, 0, 600000, 0, -GSD, 4450000), "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate", "BIGTIFF": "IF_SAFER", "photometric": "RGB"}
    path.parent.mkdir(parents=True, exist_ok=True)
    truth = []
    with rasterio.open(path, "w", **profile) as dst:
        for r in range(0, size_px, t):
            for c in range(0, size_px, t):
                site = sites[(r // t + c // t) % 4]
                h, w = min(t, size_px - r), min(t, size_px - c)
                dst.write(site.image[:h, :w].transpose(2, 0, 1), window=Window(c, r, w, h))
                for a in site.labels.annotations:
                    x0, y0, x1, y1 = a.bbox
                    if x1 <= w and y1 <= h:
                        truth.append([x0 + c, y0 + r, x1 + c, y1 + r, 1.0, a.cls])
    truth_path.write_text(json.dumps(truth))
    return path


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; ru_maxrss would carry a parent's peak over fork)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(mode: str, scene: str, weights: str | None, out: str, slice_size: int, overlap: float, conf: float) -> None:
    """Run one method in this (fresh) process and dump its boxes and timings."""
    if mode.endswith("-cold"):  # no ONNX export kept from an earlier run: the export is timed too
        import os
        import tempfile

        os.environ["FREIGHTWATCH_HOME"] = tempfile.mkdtemp(prefix="fw-cold-")
        mode = mode.removesuffix("-cold")
    from freightwatch.models.detector import Detector

    det = Detector.load(weights)
    t0 = time.perf_counter()
    if mode.startswith("freightwatch"):
        from freightwatch.inference.detect import detect_scene

        precision = "bf16" if mode.endswith("bf16") else "fp32"
        merge = "nms-ios" if "-nms" in mode else "partial"
        runtime = "onnxruntime" if "-ort" in mode else "openvino" if "-ov" in mode else "torch"
        res = detect_scene(scene, det, DetectConfig(slice_size=slice_size, overlap=overlap, conf=conf, iou=SLICE_IOU,
                                                    max_det=SLICE_MAX_DET, precision=precision, merge=merge,
                                                    runtime=runtime, class_iou={}),
                           show_progress=False)
        boxes = [[*a.bbox, a.score, a.cls] for a in res.labels.annotations]
    else:
        import cv2
        from sahi import AutoDetectionModel
        from sahi.predict import get_sliced_prediction

        # the per-slice NMS SAHI's ultralytics wrapper leaves to ultralytics' defaults (IoU 0.7, 300
        # boxes), set as freightwatch's: the engines then differ only in slicing and merging
        det.yolo.overrides.update(iou=SLICE_IOU, max_det=SLICE_MAX_DET)
        model = AutoDetectionModel.from_pretrained(model_type="ultralytics", model=det.yolo, confidence_threshold=conf,
                                                   image_size=slice_size, device="cpu")
        img = cv2.cvtColor(cv2.imread(scene, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        base = mode.removesuffix("-b8")
        like_ours = {
            "sahi-nms": {"perform_standard_pred": False, "postprocess_type": "NMS", "postprocess_match_metric": "IOU",
                         "postprocess_match_threshold": 0.5},
            "sahi-ios": {"perform_standard_pred": False, "postprocess_type": "NMS", "postprocess_match_metric": "IOS",
                         "postprocess_match_threshold": 0.7},
        }.get(base, {})
        pred = get_sliced_prediction(img, model, slice_height=slice_size, slice_width=slice_size,
                                     overlap_height_ratio=overlap, overlap_width_ratio=overlap, verbose=0,
                                     batch_size=8 if mode.endswith("-b8") else 1, **like_ours)
        boxes = [[*map(float, p.bbox.to_xyxy()), float(p.score.value), p.category.name]
                 for p in pred.object_prediction_list]
    seconds = time.perf_counter() - t0
    rss_mb = peak_rss_mb()
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
    ap.add_argument("--weights", default="bundled-synthetic",
                    help="detector (default: the synthetic-only YOLO11n the README figures were measured with)")
    ap.add_argument("--sizes", default="8000,20000")
    ap.add_argument("--sahi-max", type=int, default=12000)
    ap.add_argument("--work", type=Path, default=Path("runs/bench/sahi"))
    ap.add_argument("--slice", type=int, default=512)
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--reuse", action="store_true", help="reuse per-method results already written")
    ap.add_argument("--modes", default="freightwatch,freightwatch-bf16,freightwatch-nms,freightwatch-nms-bf16,"
                    "sahi,sahi-nms,sahi-ios", help="methods to run (see above)")
    ap.add_argument("--child", default=None)
    ap.add_argument("--scene", default=None)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.child:
        _child(a.child, a.scene, a.weights, a.out, a.slice, a.overlap, a.conf)
        return
    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    ours_modes = [m for m in modes if m.startswith("freightwatch")]
    sahi_modes = [m for m in modes if m.startswith("sahi")]
    rows = []
    for size in (int(s) for s in a.sizes.split(",")):
        scene = build_scene(a.work / f"scene_{size}.tif", size)
        res = {m: run(m, scene, a.weights, a.slice, a.overlap, a.conf, a.reuse)
               for m in ours_modes + (sahi_modes if size <= a.sahi_max else [])}
        row: dict = {"size_px": size}
        for m, r in res.items():
            row[m] = {"seconds": round(r["seconds"], 2), "peak_rss_mb": round(r["peak_rss_mb"]),
                      "detections": len(r["boxes"])}
        truth = json.loads(scene.with_suffix(".truth.json").read_text())
        row["true_objects"] = len(truth)
        for m, r in res.items():
            row[m]["ap50_vs_truth"] = round(agreement(r["boxes"], truth, size), 4)
        for o in ours_modes:
            for sm in sahi_modes:
                if sm in res:
                    row[f"{o}_vs_{sm}"] = {"speedup": round(res[sm]["seconds"] / res[o]["seconds"], 2),
                                           "agreement_ap50": round(agreement(res[o]["boxes"], res[sm]["boxes"],
                                                                             size), 4)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'size':>7} {'method':<18} {'seconds':>8} {'peak MB':>8} {'boxes':>7} {'AP50 vs truth':>14}")
    for r in rows:
        for m in modes:
            if m in r:
                print(f"{r['size_px']:>7} {m:<18} {r[m]['seconds']:>8.1f} {r[m]['peak_rss_mb']:>8.0f} "
                      f"{r[m]['detections']:>7} {r[m]['ap50_vs_truth']:>14.3f}")
    print(f"\n{'size':>7} {'ours':<18} {'SAHI':<10} {'speedup':>8} {'AP50 agreement':>15}")
    for r in rows:
        for o in ours_modes:
            for sm in sahi_modes:
                k = f"{o}_vs_{sm}"
                if k in r:
                    print(f"{r['size_px']:>7} {o:<18} {sm:<10} {r[k]['speedup']:>8.2f} {r[k]['agreement_ap50']:>15.3f}")
    a.work.mkdir(parents=True, exist_ok=True)
    (a.work / "results.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
