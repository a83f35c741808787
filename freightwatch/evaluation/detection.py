"""COCO-style detection metrics with pycocotools, per class and overall.

Overhead objects are small: a truck at 0.5 m covers about 32 x 5 px. COCO's default size buckets
(small < 32^2 px) would put nearly everything in "small", so freightwatch uses its own buckets,
stated in every report: tiny < 16^2, small 16^2-48^2, medium 48^2-128^2, large >= 128^2 px.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from freightwatch.datasets.annotations import ImageLabels
from freightwatch.taxonomy import CLASSES

AREA_BUCKETS: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e10),
    "tiny": (0.0, 16.0**2),
    "small": (16.0**2, 48.0**2),
    "medium": (48.0**2, 128.0**2),
    "large": (128.0**2, 1e10),
}
"""Area ranges in square pixels used for AP/AR by size."""


def _to_coco(gt: Sequence[ImageLabels], pred: Sequence[ImageLabels]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    images, anns, dets = [], [], []
    for img_id, (g, p) in enumerate(zip(gt, pred, strict=True), start=1):
        images.append({"id": img_id, "width": g.width, "height": g.height, "file_name": g.file_name})
        for a in g.annotations:
            x0, y0, x1, y1 = a.bbox
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": CLASSES.index(a.cls) + 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        for a in p.annotations:
            x0, y0, x1, y1 = a.bbox
            dets.append({"image_id": img_id, "category_id": CLASSES.index(a.cls) + 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(a.score if a.score is not None else 1.0)})
    cats = [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def coco_metrics(
    gt: Sequence[ImageLabels], pred: Sequence[ImageLabels], max_dets: int = 3000
) -> dict[str, dict[str, float]]:
    """AP, AP50, AP75 and AR per class and overall (box IoU), with overhead size buckets.

    Args:
        gt: Ground truth per image.
        pred: Predictions per image (same order), with scores.
        max_dets: Detections per image considered (COCO's 100 is far too few for dense lots).

    Returns:
        ``{"overall": {...}, "truck": {...}, ...}``, each with ``AP``, ``AP50``, ``AP75``, ``AR``
        and ``AP_<bucket>``; ``nan`` where a class has no ground truth.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_json, dets = _to_coco(gt, pred)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_json
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets) if dets else None
    out: dict[str, dict[str, float]] = {}
    groups = [("overall", [i + 1 for i in range(len(CLASSES))])] + [(c, [i + 1]) for i, c in enumerate(CLASSES)]
    for name, cat_ids in groups:
        n_gt = sum(1 for a in gt_json["annotations"] if a["category_id"] in cat_ids)
        if coco_dt is None or n_gt == 0:
            out[name] = {k: (0.0 if n_gt else float("nan")) for k in ("AP", "AP50", "AP75", "AR")}
            out[name]["n_gt"] = n_gt
            continue
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.catIds = cat_ids
        ev.params.maxDets = [1, 100, max_dets]
        ev.params.areaRng = list(AREA_BUCKETS.values())
        ev.params.areaRngLbl = list(AREA_BUCKETS)
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
        prec = ev.eval["precision"]  # [T, R, K, A, M]
        rec = ev.eval["recall"]  # [T, K, A, M]

        def ap(t: slice | int, a: int = 0, prec=prec) -> float:
            p = prec[t, :, :, a, -1]
            p = p[p > -1]
            return float(p.mean()) if p.size else float("nan")

        r = rec[:, :, 0, -1]
        r = r[r > -1]
        res = {"AP": ap(slice(None)), "AP50": ap(0), "AP75": ap(5), "AR": float(r.mean()) if r.size else float("nan"),
               "n_gt": n_gt}
        for k, lbl in enumerate(AREA_BUCKETS):
            if lbl != "all":
                res[f"AP_{lbl}"] = ap(slice(None), k)
        out[name] = res
    return out


def nan_to_none(d: Any) -> Any:
    """Replace NaN with None recursively (for JSON)."""
    if isinstance(d, dict):
        return {k: nan_to_none(v) for k, v in d.items()}
    if isinstance(d, list):
        return [nan_to_none(v) for v in d]
    if isinstance(d, float) and np.isnan(d):
        return None
    return d
