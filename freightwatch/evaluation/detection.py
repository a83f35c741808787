"""Detection metrics: COCO AP/AR with pycocotools, and greedy matching for PR curves and F1.

Overhead objects are small: a truck at 0.5 m covers about 32 x 5 px. COCO's default size buckets
(small < 32^2 px) would put nearly everything in "small", so freightwatch uses its own buckets,
stated in every report: tiny < 16^2, small 16^2-48^2, medium 48^2-128^2, large >= 128^2 px
(areas of the axis-aligned ground-truth box, in the image's own pixels).

:func:`coco_metrics` gives the COCO figures. :func:`match_image` pairs detections with ground
truth greedily by score at one IoU threshold (as COCO does per image and class, without its
area ranges and crowd regions); :func:`pr_curve` and :func:`f1_at` turn the matches into
precision-recall curves, the best-F1 score threshold and the figures at any other threshold.
Greedy matching in descending score order makes every threshold's matches a prefix of the
full list: a detection's match never depends on detections scored below it.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
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


@dataclass
class BoxSet:
    """Axis-aligned boxes of one image in compact arrays (for thousands of tiles in memory).

    Attributes:
        boxes: ``(N, 4)`` ``xmin, ymin, xmax, ymax`` in pixels.
        classes: ``(N,)`` 0-based class ids (index into :data:`CLASSES`).
        scores: ``(N,)`` confidences; ``None`` for ground truth.
    """

    boxes: np.ndarray
    classes: np.ndarray
    scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.classes = np.asarray(self.classes, dtype=np.int64).reshape(-1)
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float64).reshape(-1)
            if len(self.scores) != len(self.boxes):
                raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores")
        if len(self.classes) != len(self.boxes):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.classes)} classes")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls, with_scores: bool = True) -> BoxSet:
        """No boxes."""
        return cls(np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0) if with_scores else None)

    @classmethod
    def from_labels(cls, labels: ImageLabels, with_scores: bool | None = None) -> BoxSet:
        """Boxes of an :class:`ImageLabels`; scores kept when any annotation has one (missing = 1)."""
        anns = labels.annotations
        if with_scores is None:
            with_scores = any(a.score is not None for a in anns)
        boxes = np.array([a.bbox for a in anns], dtype=np.float64).reshape(-1, 4)
        classes = np.array([CLASSES.index(a.cls) for a in anns], dtype=np.int64)
        scores = np.array([1.0 if a.score is None else float(a.score) for a in anns]) if with_scores else None
        return cls(boxes, classes, scores)

    def areas(self) -> np.ndarray:
        """Box areas in square pixels."""
        return (self.boxes[:, 2] - self.boxes[:, 0]) * (self.boxes[:, 3] - self.boxes[:, 1])

    def of_class(self, k: int) -> BoxSet:
        """The boxes of class id ``k``."""
        sel = self.classes == k
        return BoxSet(self.boxes[sel], self.classes[sel], None if self.scores is None else self.scores[sel])

    def top(self, n: int) -> BoxSet:
        """The ``n`` highest-scored boxes (all of them when fewer)."""
        if self.scores is None or len(self) <= n:
            return self
        keep = np.sort(np.argsort(-self.scores, kind="stable")[:n])
        return BoxSet(self.boxes[keep], self.classes[keep], self.scores[keep])


def _as_boxes(x: ImageLabels | BoxSet, with_scores: bool) -> BoxSet:
    return x if isinstance(x, BoxSet) else BoxSet.from_labels(x, with_scores=with_scores)


def _to_coco(
    gt: Sequence[ImageLabels | BoxSet], pred: Sequence[ImageLabels | BoxSet]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    images, anns, dets = [], [], []
    for img_id, (g, p) in enumerate(zip(gt, pred, strict=True), start=1):
        if isinstance(g, ImageLabels):
            images.append({"id": img_id, "width": g.width, "height": g.height, "file_name": g.file_name})
        else:
            images.append({"id": img_id})
        gb, pb = _as_boxes(g, False), _as_boxes(p, True)
        for (x0, y0, x1, y1), k in zip(gb.boxes.tolist(), gb.classes.tolist(), strict=True):
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": k + 1,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": 0})
        scores = pb.scores if pb.scores is not None else np.ones(len(pb))
        for (x0, y0, x1, y1), k, s in zip(pb.boxes.tolist(), pb.classes.tolist(), scores.tolist(), strict=True):
            dets.append({"image_id": img_id, "category_id": k + 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": s})
    cats = [{"id": i + 1, "name": c} for i, c in enumerate(CLASSES)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def coco_metrics(
    gt: Sequence[ImageLabels | BoxSet], pred: Sequence[ImageLabels | BoxSet], max_dets: int = 3000
) -> dict[str, dict[str, float]]:
    """AP, AP50, AP75 and AR per class and overall (box IoU), with overhead size buckets.

    Args:
        gt: Ground truth per image (:class:`ImageLabels` or :class:`BoxSet`).
        pred: Predictions per image (same order), with scores.
        max_dets: Detections per image considered (COCO's 100 is far too few for dense lots).

    Returns:
        ``{"overall": {...}, "truck": {...}, ...}``, each with ``AP``, ``AP50``, ``AP75``, ``AR``,
        ``n_gt``, ``AP_<bucket>`` and ``AR_<bucket>`` for the buckets of :data:`AREA_BUCKETS`;
        ``nan`` where a class (or bucket) has no ground truth. ``overall`` averages over the
        classes that have ground truth, as COCO does.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt_json, dets = _to_coco(gt, pred)
    n_gt = {k + 1: 0 for k in range(len(CLASSES))}
    for a in gt_json["annotations"]:
        n_gt[a["category_id"]] += 1
    buckets = [b for b in AREA_BUCKETS if b != "all"]
    out: dict[str, dict[str, float]] = {}
    groups = [("overall", list(n_gt))] + [(c, [k + 1]) for k, c in enumerate(CLASSES)]
    if not dets:
        # Nothing detected: 0 wherever there is something to find, NaN where there is not.
        for name, ids in groups:
            n = sum(n_gt[i] for i in ids)
            out[name] = {k: (0.0 if n else float("nan")) for k in ("AP", "AP50", "AP75", "AR")}
            out[name]["n_gt"] = n
            for p in ("AP", "AR"):
                for b in buckets:
                    lo, hi = AREA_BUCKETS[b]
                    nb = sum(1 for a in gt_json["annotations"] if a["category_id"] in ids and lo <= a["area"] < hi)
                    out[name][f"{p}_{b}"] = 0.0 if nb else float("nan")
        return out
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt_json
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        # One evaluation for all classes: per-class figures are slices of its K axis.
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.catIds = list(n_gt)
        ev.params.maxDets = [1, 100, max_dets]
        ev.params.areaRng = [list(v) for v in AREA_BUCKETS.values()]
        ev.params.areaRngLbl = list(AREA_BUCKETS)
        ev.evaluate()
        ev.accumulate()
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    rec = ev.eval["recall"]  # [T, K, A, M]

    def mean_valid(a: np.ndarray) -> float:
        a = a[a > -1]
        return float(a.mean()) if a.size else float("nan")

    for name, ids in groups:
        ks = [i - 1 for i in ids]
        n = sum(n_gt[i] for i in ids)
        if n == 0:
            out[name] = {k: float("nan") for k in ("AP", "AP50", "AP75", "AR")}
            out[name]["n_gt"] = 0
            out[name].update({f"{p}_{b}": float("nan") for p in ("AP", "AR") for b in buckets})
            continue
        p = prec[:, :, ks]
        r = rec[:, ks]
        res = {"AP": mean_valid(p[..., 0, -1]), "AP50": mean_valid(p[0, :, :, 0, -1]),
               "AP75": mean_valid(p[5, :, :, 0, -1]), "AR": mean_valid(r[:, :, 0, -1]), "n_gt": n}
        for a, lbl in enumerate(AREA_BUCKETS):
            if lbl != "all":
                res[f"AP_{lbl}"] = mean_valid(p[..., a, -1])
        for a, lbl in enumerate(AREA_BUCKETS):
            if lbl != "all":
                res[f"AR_{lbl}"] = mean_valid(r[:, :, a, -1])
        out[name] = res
    return out


def nan_to_none(d: Any) -> Any:
    """Replace NaN with None recursively (for JSON)."""
    if isinstance(d, dict):
        return {k: nan_to_none(v) for k, v in d.items()}
    if isinstance(d, list | tuple):
        return [nan_to_none(v) for v in d]
    if isinstance(d, float | np.floating) and np.isnan(d):
        return None
    if isinstance(d, np.floating):
        return float(d)
    if isinstance(d, np.integer):
        return int(d)
    return d


# -- greedy matching, PR curves, F1 ----------------------------------------------------------------
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(N, M)`` IoU of two sets of ``xyxy`` boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


@dataclass
class ImageMatch:
    """Greedy matches of one image's detections to its ground truth, per class.

    Attributes:
        pred_tp: ``(N,)`` whether each detection (in the order given) matched a ground-truth box.
        gt_score: ``(M,)`` score of the detection that matched each ground-truth box (0 when none):
            at a threshold ``t`` a ground-truth box is found iff ``gt_score >= t`` and > 0.
    """

    pred_tp: np.ndarray
    gt_score: np.ndarray

    def counts_at(self, pred: BoxSet, gt: BoxSet, k: int, threshold: float) -> tuple[int, int, int]:
        """``(TP, FP, FN)`` of class id ``k`` at a score threshold."""
        ps = pred.classes == k
        above = ps & (pred.scores >= threshold)
        tp = int((above & self.pred_tp).sum())
        fp = int(above.sum()) - tp
        gs = gt.classes == k
        fn = int(gs.sum()) - int((gs & (self.gt_score >= threshold) & (self.gt_score > 0)).sum())
        return tp, fp, fn


def match_image(gt: BoxSet, pred: BoxSet, iou_threshold: float = 0.5) -> ImageMatch:
    """Match detections to ground truth of the same class, greedily in descending score order.

    Each detection takes the unmatched ground-truth box of its class with the highest IoU, if that
    IoU is at least ``iou_threshold`` (ties in score keep the given order).
    """
    if pred.scores is None:
        raise ValueError("detections need scores")
    tp = np.zeros(len(pred), dtype=bool)
    gt_score = np.zeros(len(gt), dtype=np.float64)
    for k in np.unique(pred.classes):
        pi = np.flatnonzero(pred.classes == k)
        gi = np.flatnonzero(gt.classes == k)
        if not len(gi):
            continue
        pi = pi[np.argsort(-pred.scores[pi], kind="stable")]
        iou = box_iou(pred.boxes[pi], gt.boxes[gi])
        taken = np.zeros(len(gi), dtype=bool)
        for row, p in enumerate(pi):
            cand = np.where(taken, -1.0, iou[row])
            j = int(np.argmax(cand))
            if cand[j] >= iou_threshold:
                taken[j] = True
                tp[p] = True
                gt_score[gi[j]] = pred.scores[p]
    return ImageMatch(tp, gt_score)


@dataclass
class PRCurve:
    """Precision and recall of one class as the score threshold falls.

    Attributes:
        thresholds: Distinct detection scores, descending; point ``i`` keeps detections scored
            ``>= thresholds[i]``.
        precision: Precision at each threshold.
        recall: Recall at each threshold.
        n_gt: Ground-truth objects.
    """

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    n_gt: int

    @property
    def f1(self) -> np.ndarray:
        """F1 at each threshold."""
        s = self.precision + self.recall
        return np.where(s > 0, 2 * self.precision * self.recall / np.where(s > 0, s, 1), 0.0)


def pr_curve(scores: np.ndarray, tp: np.ndarray, n_gt: int) -> PRCurve:
    """PR curve from all detections of a class (their scores and whether each matched)."""
    scores = np.asarray(scores, dtype=np.float64)
    tp = np.asarray(tp, dtype=bool)
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], tp[order]
    ctp = np.cumsum(t)
    cfp = np.cumsum(~t)
    # Keep the last detection of each run of equal scores: a threshold keeps all or none of them.
    last = np.r_[s[1:] != s[:-1], True] if len(s) else np.zeros(0, dtype=bool)
    ctp, cfp, s = ctp[last], cfp[last], s[last]
    precision = ctp / np.maximum(ctp + cfp, 1)
    recall = ctp / n_gt if n_gt else np.zeros(len(ctp))
    return PRCurve(s, precision.astype(np.float64), recall.astype(np.float64), int(n_gt))


def f1_at(scores: np.ndarray, tp: np.ndarray, n_gt: int, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 keeping detections scored ``>= threshold``."""
    keep = np.asarray(scores) >= threshold
    n_tp = int(np.asarray(tp, dtype=bool)[keep].sum())
    n_det = int(keep.sum())
    p = n_tp / n_det if n_det else float("nan")
    r = n_tp / n_gt if n_gt else float("nan")
    f1 = 2 * p * r / (p + r) if n_det and n_gt and (p + r) > 0 else (0.0 if n_gt else float("nan"))
    return {"threshold": float(threshold), "precision": p, "recall": r, "f1": f1, "tp": n_tp,
            "fp": n_det - n_tp, "fn": int(n_gt) - n_tp}


def best_f1(curve: PRCurve) -> float | None:
    """Score threshold with the highest F1 (the highest such threshold on ties); ``None`` without
    ground truth or detections."""
    if curve.n_gt == 0 or not len(curve.thresholds):
        return None
    f1 = curve.f1
    if f1.max() <= 0:
        return None
    return float(curve.thresholds[int(np.argmax(f1))])
